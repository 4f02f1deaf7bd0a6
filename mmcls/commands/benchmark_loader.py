"""Loader throughput: frames/s and videos/s delivered by the DataLoader, per frame source and worker count.

Measures the whole path a training step waits on (annotation record -> text ids, frame decode, sampling, train
augmentation, collate) over the training split, after a warm-up batch. Prints a table; --json saves the figures.

Example:
    python tools/benchmark_loader.py --config configs/demo.yaml --sources zip mp4 --workers 0 2
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from mmcls.config import add_config_arguments, config_from_args
from mmcls.io import atomic_write_text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--sources", nargs="+", default=["zip", "mp4"], help="Frame sources (default: zip mp4).")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="Worker counts (default: 0 2).")
    parser.add_argument("--batch-size", type=int, default=32, help="Videos per batch (default 32).")
    parser.add_argument("--batches", type=int, default=20, help="Timed batches per setting (default 20).")
    parser.add_argument("--quick", action="store_true", help="Few batches, for a smoke run.")
    parser.add_argument("--json", help="Write the figures here as JSON.")
    args = parser.parse_intermixed_args(argv)
    from mmcls.bench.loader import loader_markdown, loader_throughput  # torch: after --help

    cfg = config_from_args(args)
    batches = 3 if args.quick else args.batches
    rows = []
    for source in args.sources:
        for workers in args.workers:
            row = loader_throughput(cfg, source, workers, args.batch_size, batches)
            print(f"{source:5s} workers={workers}: {row['videos_per_s']:8.1f} videos/s {row['frames_per_s']:9.1f} "
                  f"frames/s ({row['failed_videos']} failed videos)", flush=True)
            rows.append(row)
    print(f"\nmachine: {os.cpu_count()} CPU cores; max_frames={cfg.data.max_frames}, "
          f"frame_size={cfg.data.frame_size}, batch {args.batch_size}\n")
    print(loader_markdown(rows))
    if args.json:
        atomic_write_text(args.json, json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=1))
    return 0
