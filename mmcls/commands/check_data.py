"""Validate a dataset root: annotations, categories, text lengths, and every video of every split.

Prints record counts per split, the class distribution, text length percentiles (tokens per field, with how often
each field is cut), frames per video, and the list of unreadable videos. Exit code 0 when the data is usable,
1 when there are fatal problems (no labelled data; more than --max-bad-fraction of a split's videos unreadable,
which usually means a wrong data.frame_source or data.root), 2 on a malformed file or config (one line naming the
file, record and field; an id that is not valid text, such as a lone "\\ud83d" escape, is one). Text fields with such
characters are cleaned as training cleans them, with one warning per file saying how many.

Example:
    python tools/check_data.py data/synthetic --config configs/demo.yaml
    python tools/check_data.py /data/wbdc data.frame_source=mp4 --max-videos 5000
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmcls.config import add_config_arguments, config_from_args
from mmcls.errors import DataError


def percentile_row(values: Sequence[int]) -> str:
    """p50 / p90 / p99 / max of a list of counts, on one line."""
    if not values:
        return "-"
    p = np.percentile(np.asarray(values), [50, 90, 99])
    return f"p50 {p[0]:6.0f}  p90 {p[1]:6.0f}  p99 {p[2]:6.0f}  max {max(values):6d}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="Dataset root (overrides data.root).")
    add_config_arguments(parser)
    parser.add_argument("--max-videos", type=int, default=0,
                        help="Check at most this many videos per split, spread evenly (0 = all).")
    parser.add_argument("--max-bad-fraction", type=float, default=0.05,
                        help="Fatal when more than this fraction of a split's videos is unreadable (default 0.05).")
    parser.add_argument("--no-videos", action="store_true", help="Skip the video scan.")
    args = parser.parse_intermixed_args(argv)
    from mmcls.data.check import (
        DEFAULT_SPLITS,
        SplitReport,
        category_summary,
        scan_split,
        text_length_summary,
    )
    from mmcls.data.splits import build_categories, data_path, tokenizer_dir
    from mmcls.data.tokenizer import load_tokenizer

    args.overrides = [f"data.root={args.root}", *args.overrides]
    cfg = config_from_args(args).data
    if not Path(cfg.root).is_dir():
        raise DataError("dataset root not found", path=cfg.root)

    fatal: list[str] = []
    reports: list[SplitReport] = []
    print(f"dataset {cfg.root}  (frame source: {cfg.frame_source})\n")
    for which in DEFAULT_SPLITS:
        relative = getattr(cfg, which)
        if not relative:
            continue
        path = data_path(cfg, relative)
        if not path.is_file():
            if which == "train":
                raise DataError("annotation file not found (data.train)", path=str(path))
            print(f"{which:10s} {relative}: not found, skipped")
            continue
        reports.append(SplitReport.load(which, cfg, path))  # warns of text it had to clean (invalid characters)
    logging.getLogger("mmcls.data").setLevel(logging.ERROR)  # unreadable videos are listed below instead
    for report in reports:
        print(f"{report.which:10s} {report.relative:34s} {len(report.records):8d} records "
              f"{report.num_labelled:8d} labelled")

    labelled = [r for rep in reports if rep.which in ("train", "val") for r in rep.records]
    if not any(r.category_id for r in labelled):
        fatal.append("no labelled records (data.train)")
    else:
        categories = build_categories(cfg, labelled)
        print("\n" + category_summary(categories, Counter(r.category_id for r in labelled)))

    tok_path = tokenizer_dir(cfg)
    train = next((rep for rep in reports if rep.which == "train"), None)
    if train is None:
        pass  # no labelled file: already fatal above
    elif tok_path.is_dir():
        tokenizer = load_tokenizer(tok_path)
        print(f"\ntext tokens per field ({train.which}; tokenizer {tok_path}; max_text_len {cfg.max_text_len}):")
        for name, lengths, cut in text_length_summary(cfg, tokenizer, train.records):
            print(f"  {name:9s} {percentile_row(lengths)}   cut in {cut:5.1%}")
    else:
        print(f"\ntext: no tokenizer at {tok_path}; token statistics skipped (data.tokenizer sets one)")

    if not args.no_videos:
        print()
        for report in reports:
            scan = scan_split(cfg, report.split, args.max_videos)
            print(f"{report.which:10s} {scan.checked:7d} videos checked, {len(scan.failures):5d} unreadable; "
                  f"frames per video {percentile_row(scan.frame_counts)}")
            kinds = Counter(reason.split(":", 1)[0] for reason in scan.failures.values())
            if kinds:
                print(f"{'':10s} unreadable by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
            if scan.checked and len(scan.failures) / scan.checked > args.max_bad_fraction:
                fatal.append(f"{report.which}: {len(scan.failures)} of {scan.checked} videos unreadable "
                             f"(> {args.max_bad_fraction:.0%}; check data.root / data.frame_source)")
            for video_id, reason in sorted(scan.failures.items()):
                print(f"  unreadable {report.split.folder}/{video_id}: {reason}")
    if fatal:
        print("\nFATAL:\n" + "\n".join(f"  {line}" for line in fatal), file=sys.stderr)
        return 1
    print("\nOK: the data is usable" + (" (videos not checked)" if args.no_videos else ""))
    return 0
