"""Ensemble saved logits: search the model weights (and optionally a per-class bias) on out-of-fold predictions to
maximise mean-F1, then apply them to the test predictions and write the submission.

Examples:
    # two K-fold runs (tools/kfold.py): weights fitted on their out-of-fold logits, applied to their test logits
    python tools/ensemble.py --oof runs/kfold_a/oof_logits.npy --test runs/kfold_a/test_logits.npy \\
        --oof runs/kfold_b/oof_logits.npy --test runs/kfold_b/test_logits.npy \\
        --truth data/synthetic/annotations/labeled.json --class-bias --output runs/ensemble/result.csv
    # fixed weights, no search
    python tools/ensemble.py --test a.npy --test b.npy --weights 2 1 --output result.csv

--oof and --test are logits bundles (X.npy + X.ids.txt + X.classes.txt) as written by finetuning
(RUN/val_logits.npy), tools/kfold.py and tools/predict.py --logits; the i-th --oof and the i-th --test must come
from the same model. The out-of-fold score of a searched ensemble is optimistic (it was fitted there); the per-class
bias has C free parameters, so use it when the out-of-fold set has many samples per class.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oof", action="append", default=[], help="Out-of-fold logits of one model (repeat).")
    parser.add_argument("--test", action="append", default=[], help="Test logits of the same model (repeat).")
    parser.add_argument("--truth", help="Labels of the out-of-fold ids: a labelled annotation file or an "
                        "'id,category_id' CSV.")
    parser.add_argument("--weights", nargs="+", type=float, help="Fixed weights, one per model (no search).")
    parser.add_argument("--no-search", action="store_true", help="Equal weights instead of searching them.")
    parser.add_argument("--class-bias", action="store_true",
                        help="Also search a per-class bias on the ensemble's log-probabilities (prior adjustment).")
    parser.add_argument("--categories", help="categories.json of one of the models (level-1 parents); default: the "
                        "first --lv1-prefix-len characters of each category id.")
    parser.add_argument("--lv1-prefix-len", type=int, default=2, help="Level-1 prefix length (default 2).")
    parser.add_argument("--output", "--out", help="Submission CSV of the test predictions (needs --test).")
    parser.add_argument("--logits", help="Also save the ensemble's test log-probabilities as a logits bundle.")
    parser.add_argument("--oof-logits", help="Also save the fitted ensemble's out-of-fold log-probabilities (a "
                        "teacher for train.distill.teacher).")
    parser.add_argument("--report", help="Write the fitted weights, bias and scores as JSON.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.output or args.logits) and not args.test:
        parser.error("--output and --logits need --test logits")
    if not args.oof and (args.oof_logits or args.class_bias or args.no_search or args.truth):
        parser.error("--oof-logits, --class-bias, --no-search and --truth work on --oof logits; give them")
    from mmcls.data.categories import CategorySpace
    from mmcls.io import atomic_write_text
    from mmcls.logits import save_logits
    from mmcls.metrics import write_submission
    from mmcls.workflow.ensemble import ensemble_files

    categories = CategorySpace.load(args.categories) if args.categories else None
    result = ensemble_files(args.oof, args.test, args.truth, categories, weights=args.weights,
                            search=not args.no_search, class_bias=args.class_bias,
                            lv1_prefix_len=args.lv1_prefix_len)
    fit = result.fit
    if fit is not None:
        for path, single in zip(args.oof, fit.single_scores, strict=True):
            print(f"out-of-fold mean_f1 {single:.4f}  {path}")
        print(f"out-of-fold mean_f1 {fit.equal_score:.4f}  equal weights ({result.num_oof} videos)")
        print(f"out-of-fold mean_f1 {fit.weighted_score:.4f}  weights {[round(w, 3) for w in fit.weights]}")
        if args.class_bias:
            moved = sum(b != 0 for b in fit.class_bias)
            print(f"out-of-fold mean_f1 {fit.score:.4f}  + class bias ({moved} of {len(fit.class_bias)} classes moved)")
    if args.output:
        write_submission(args.output, result.test_ids, result.test_labels())
        print(f"wrote {len(result.test_ids)} predictions -> {args.output}")
    if args.logits:
        save_logits(args.logits, result.test_ids, result.test_log_probs, result.classes)
    if args.oof_logits:
        save_logits(args.oof_logits, result.oof_ids, result.oof_log_probs, result.classes)
    if args.report:
        payload = {"oof": args.oof, "test": args.test, "classes": result.classes, "num_oof": result.num_oof,
                   **({} if fit is None else {
                       "weights": fit.weights, "class_bias": fit.class_bias, "single_scores": fit.single_scores,
                       "equal_score": fit.equal_score, "weighted_score": fit.weighted_score, "score": fit.score,
                       "history": fit.history})}
        atomic_write_text(args.report, json.dumps(payload, indent=1) + "\n")
    return 0
