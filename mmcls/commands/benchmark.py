"""The benchmark suite: measured matmul peak, loader throughput, training speed and model FLOP utilisation (MFU),
inference speed (model only and end to end), peak memory, and what each speed switch gains, in one run.

Prints a markdown report and writes DIR/benchmark.json + DIR/benchmark.md. Each --config is measured with its own
batch sizes and precision; key=value overrides apply to every config (e.g. data.root=...). The default configs are
the demo and a base-proportioned model (ViT-B/16 and BERT-base sizes) at 64 px on the synthetic data.

Examples:
    python tools/benchmark.py --out runs/bench                         # demo + base-proportioned (minutes on CPU)
    python tools/benchmark.py --config configs/demo.yaml --quick --out runs/bench_quick
    python tools/benchmark.py --config configs/base.yaml --switches bf16 compile --out runs/bench_gpu \\
        data.root=/data/wbdc model.vision.pretrained=/models/clip.bin model.text.pretrained=/models/macbert
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mmcls.accelerators import hub_offline

ROOT = Path(__file__).resolve().parents[2]  # a source checkout: the bench configs are in its configs/
DEFAULT_CONFIGS = [str(ROOT / "configs" / "demo.yaml"), str(ROOT / "configs" / "bench_base_small.yaml")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help="A config to measure (repeatable; default: demo and "
                        "bench_base_small).")
    parser.add_argument("--out", required=True, help="Folder for benchmark.json and benchmark.md.")
    parser.add_argument("--sources", nargs="+", default=["zip", "mp4"], help="Loader frame sources (default zip mp4).")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="Loader worker counts (default 0 2).")
    parser.add_argument("--steps", type=int, default=5, help="Timed training updates / forwards (default 5).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed ones first (default 2).")
    parser.add_argument("--loader-batches", type=int, default=10, help="Timed loader batches (default 10).")
    parser.add_argument("--e2e-batches", type=int, default=8, help="Timed end-to-end inference batches (default 8).")
    parser.add_argument("--switches", nargs="*", default=None, metavar="NAME",
                        help="Speed switches to measure (default all: eager_attention bf16 compile channels_last "
                        "grad_checkpointing, and the cost of frame_diff and temporal_shift; none with an empty "
                        "list).")
    parser.add_argument("--peak-seconds", type=float, default=1.0, help="Seconds per matmul-peak window.")
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 1 step, 1 batch, no switches unless --switches names some.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="Config overrides for every config.")
    args = parser.parse_intermixed_args(argv)
    hub_offline()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from mmcls.bench.suite import SWITCHES, markdown, run_suite
    from mmcls.config import load_config
    from mmcls.errors import UserError
    from mmcls.io import atomic_write_text

    switches = list(SWITCHES) if args.switches is None else args.switches
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise UserError(f"--switches: unknown {', '.join(unknown)} (known: {', '.join(SWITCHES)})")
    configs = {}
    for path in args.config or DEFAULT_CONFIGS:
        name = Path(path).stem
        name = name if name not in configs else f"{name}_{len(configs) + 1}"  # two files of the same name
        configs[name] = load_config(path, args.overrides)
    if args.quick:
        args.steps, args.warmup, args.loader_batches, args.e2e_batches, args.peak_seconds = 1, 1, 1, 1, 0.2
        switches = switches if args.switches is not None else []
    report = run_suite(configs, args.sources, args.workers, args.steps, args.warmup, args.loader_batches,
                       args.e2e_batches, switches, args.peak_seconds)
    table = markdown(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "benchmark.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "benchmark.md", table)
    print(table)
    print(f"-> {out / 'benchmark.json'}, {out / 'benchmark.md'}")
    return 0
