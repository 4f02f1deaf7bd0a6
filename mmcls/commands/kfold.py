"""Train K folds in one command: stratified folds, one finetuning run per fold, out-of-fold logits, and the test
split (or others) predicted with all fold models.

Examples:
    python tools/kfold.py --config configs/demo.yaml --k 5 --out runs/kfold --predict test
    python tools/kfold.py --config configs/base.yaml --k 5 --out runs/kfold_base --predict test --predict unlabeled \\
        --launch "accelerate launch --multi_gpu --num_processes 8" data.root=/data/wbdc
    # round 2, self-distillation from round 1's out-of-fold predictions (same folds):
    python tools/kfold.py --config configs/demo.yaml --k 5 --out runs/kfold_distill --folds runs/kfold/folds.csv \\
        --predict test train.distill.teacher=$PWD/runs/kfold/oof_logits.npy train.distill.alpha=0.5

Each fold runs as `LAUNCH -m mmcls finetune ...` (the installed or checked-out package, never a script path).
Writes OUT/folds.csv, OUT/fold{k}/ (run directories), OUT/oof_logits.npy, OUT/{split}_logits.npy + OUT/{split}.csv
and OUT/kfold.json. Rerunning the same command skips finished folds (those with result.json).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import flags
from mmcls.config import add_config_arguments, config_from_args


@flags(folds_file="--folds", launcher="--launch")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, required=True)
    parser.add_argument("--k", type=int, default=5, help="Number of folds (default 5).")
    parser.add_argument("--out", required=True, help="Folder of the K run directories and the combined outputs.")
    parser.add_argument("--folds", help="An existing id,fold CSV (default: OUT/folds.csv, written if missing).")
    parser.add_argument("--predict", action="append", default=[], metavar="SPLIT",
                        choices=["test", "unlabeled", "train"],
                        help="A split (data.<split>) to predict with every fold and their ensemble (repeat).")
    parser.add_argument("--launch", help="Command prefix for each fold and prediction, e.g. \"accelerate launch "
                        "--multi_gpu --num_processes 8\" (default: this Python).")
    parser.add_argument("--tta-offsets", type=int, default=1, help="Passed to the predict command (default 1).")
    parser.add_argument("--tta-hflip", action="store_true", help="Passed to the predict command.")
    args = parser.parse_intermixed_args(argv)
    if args.k < 2:
        parser.error("--k must be >= 2")
    import logging

    from mmcls.workflow.kfold import KFoldPlan, parse_launcher, run_kfold

    logging.basicConfig(level=logging.INFO, format="%(asctime)s kfold: %(message)s")
    cfg = config_from_args(args)
    plan = KFoldPlan(list(args.config), list(args.overrides), cfg, args.k, Path(args.out),
                     Path(args.folds) if args.folds else None, parse_launcher(args.launch))
    predict_args = [f"--tta-offsets={args.tta_offsets}", *(["--tta-hflip"] if args.tta_hflip else [])]
    summary = run_kfold(plan, args.predict, predict_args)
    folds = ", ".join(f"{s:.4f}" for s in summary["fold_mean_f1"])
    print(f"fold mean_f1: {folds}")
    print(f"out-of-fold mean_f1 {summary['oof']['mean_f1']:.4f} -> {Path(args.out) / 'oof_logits.npy'}")
    for split in args.predict:
        print(f"{split}: {summary[split]['csv']} (logits {summary[split]['logits']})")
    return 0
