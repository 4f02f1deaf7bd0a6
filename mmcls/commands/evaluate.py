"""Score a submission CSV against a truth CSV with the WBDC 2022 mean-F1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmcls.data.categories import CategorySpace, read_category_file, read_hierarchy
from mmcls.errors import DataError
from mmcls.io import atomic_write_text
from mmcls.metrics import (
    format_report,
    format_scores,
    mean_f1_from_ids,
    per_class_report,
    read_submission,
)

EXAMPLE = """\
example:
  python tools/evaluate.py --pred result.csv --truth truth.csv
  python tools/evaluate.py --pred result.csv --truth truth.csv --categories runs/demo/best/categories.json \\
      --report --json score.json

Both files: no header, one 'id,category_id' per line. The truth file defines the ids; the prediction must hold
exactly those ids (any order). Level 1 is the first --lv1-prefix-len characters of a category id, unless
--hierarchy (lines 'lv2_id lv1_id') or a categories.json (its saved level-1 parents) says otherwise.

Without --categories, the truth file's categories are the known ones: predictions of other category ids count as
wrong answers and are counted in a warning on stderr; a prediction file in which no category id is known (say
'101' for '0101') is an error, not a score of 0.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="submission CSV to score (id,category_id; no header)")
    parser.add_argument("--truth", required=True, help="truth CSV in the same format; defines the expected ids")
    parser.add_argument("--categories", help="category_ids.txt (one id per line) or categories.json; "
                                             "categories outside it are errors")
    parser.add_argument("--hierarchy", help="file of 'lv2_id lv1_id' lines giving each category's level-1 parent")
    parser.add_argument("--lv1-prefix-len", type=int, default=None,
                        help="level 1 = first N characters of the category id (default 2)")
    parser.add_argument("--report", action="store_true", help="also print per-class tables (level 1 and level 2)")
    parser.add_argument("--json", dest="json_out", help="also write the scores (and per-class rows) to this JSON file")
    return parser


def load_categories(path: str) -> tuple[list[str], dict[str, str] | None]:
    """Category ids and, for a categories.json, its level-1 parents."""
    if Path(path).suffix.lower() == ".json" or Path(path).is_dir():
        space = CategorySpace.load(path)
        return space.lv2_ids, dict(space.lv1_of)
    return read_category_file(path), None


def check_parents(path: str, labels: Mapping[str, str], parents: Mapping[str, str], source: str) -> None:
    """Every category in ``labels`` (a file read by read_submission) must have a level-1 parent."""
    for line_no, (sample_id, category) in enumerate(labels.items(), start=1):
        if category not in parents:
            raise DataError(f"category {category!r} of id {sample_id!r} has no level-1 parent in {source}",
                            path=path, record=f"line {line_no}", field="category_id")


def check_predicted_categories(pred_path: str, truth_path: str, truth: Mapping[str, str],
                               pred: Mapping[str, str]) -> None:
    """Without a categories file: warn (stderr) with the count of predictions whose category id the truth file does
    not have; DataError when no prediction has a category id of the truth file."""
    known = set(truth.values())
    unknown = [category for category in pred.values() if category not in known]
    if not unknown:
        return
    distinct = sorted(set(unknown))
    shown = ", ".join(map(repr, distinct[:3])) + (f" and {len(distinct) - 3} more" if len(distinct) > 3 else "")
    width = max(map(len, known))
    padded = next((c for c in distinct if c.isdigit() and len(c) < width and c.zfill(width) in known), None)
    hint = f"; category ids are compared as written: {padded!r} is not {padded.zfill(width)!r}" if padded else ""
    if len(unknown) == len(pred):
        raise DataError(f"none of its {len(pred)} predictions is a category id of {truth_path} ({shown}){hint}",
                        path=pred_path)
    print(f"warning: {pred_path}: {len(unknown)} of {len(pred)} predictions are category ids {truth_path} does not "
          f"have ({shown}); they count as wrong answers (--categories makes them errors){hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lv1_prefix_len is not None and args.lv1_prefix_len < 1:
        raise DataError(f"--lv1-prefix-len must be >= 1, got {args.lv1_prefix_len}")
    known, saved_parents = load_categories(args.categories) if args.categories else (None, None)
    truth = read_submission(args.truth, known_categories=known)
    pred = read_submission(args.pred, expected_ids=list(truth), known_categories=known)
    if known is None:
        check_predicted_categories(args.pred, args.truth, truth, pred)

    parents, source = None, f"prefix of {args.lv1_prefix_len or 2} characters"
    if args.hierarchy:
        parents, source = read_hierarchy(args.hierarchy), f"hierarchy file {args.hierarchy}"
    elif args.lv1_prefix_len is None and saved_parents is not None:
        parents, source = saved_parents, f"categories file {args.categories}"
    if parents is not None:
        check_parents(args.truth, truth, parents, source)
        check_parents(args.pred, pred, parents, source)

    ids = list(truth)
    truth_labels, pred_labels = [truth[i] for i in ids], [pred[i] for i in ids]
    level_kw = {"lv1_of": parents, "lv1_prefix_len": args.lv1_prefix_len or 2}
    scores = mean_f1_from_ids(truth_labels, pred_labels, **level_kw)
    print(format_scores(scores))

    reports = {}
    if args.report or args.json_out:
        reports = {f"lv{level}": per_class_report(truth_labels, pred_labels, level=level, **level_kw)
                   for level in (1, 2)}
    if args.report:
        for level in ("lv1", "lv2"):
            print(f"\nper-class ({level}, {len(reports[level])} classes):")
            print(format_report(reports[level]))
    if args.json_out:
        payload = {**scores, "num_samples": len(ids), "pred": args.pred, "truth": args.truth, "lv1_source": source,
                   "per_class": reports}
        atomic_write_text(args.json_out, json.dumps(payload, ensure_ascii=False, indent=1) + "\n")
    return 0
