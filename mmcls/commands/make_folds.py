"""Assign the labelled videos to K stratified folds and write them as an ``id,fold`` CSV.

Then finetune fold k with ``data.folds_file=folds.csv data.fold=k`` (validation = fold k, training = the rest).

Example:
    python tools/make_folds.py --config configs/demo.yaml --k 5 --out data/synthetic/folds.csv
    python finetune/train.py --config configs/demo.yaml data.folds_file=folds.csv data.fold=0 output_dir=runs/f0
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from mmcls.config import add_config_arguments, config_from_args
from mmcls.data.folds import assign_folds, write_folds
from mmcls.data.records import load_records
from mmcls.data.splits import data_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--k", type=int, default=5, help="Number of folds (default 5).")
    parser.add_argument("--out", help="Output CSV (default: data.root/folds.csv).")
    args = parser.parse_intermixed_args(argv)
    if args.k < 2:
        parser.error("--k must be >= 2")
    cfg = config_from_args(args)
    records = load_records(data_path(cfg.data, cfg.data.train), labelled=True)
    folds = assign_folds(records, args.k, cfg.seed)
    out = Path(args.out) if args.out else Path(cfg.data.root) / "folds.csv"
    write_folds(out, folds)
    sizes = Counter(folds.values())
    print(f"{len(folds)} videos in {args.k} folds ({', '.join(str(sizes[f]) for f in range(args.k))}) -> {out}")
    return 0
