"""Inference engines side by side on this machine: torch eager (fp32, bf16), torch.compile and ONNX Runtime (fp32,
int8) on the same model and batch, with the ratio to torch eager fp32.

The model of each config is built with random weights, saved, and exported (tools/export.py) into --out; one
training batch of the config's data is kept in memory, so the figures are the model's alone (tools/speed_check.py
measures a model end to end, loader included). Prints a markdown table; --json saves the figures.

Examples:
    python tools/benchmark_inference.py       # configs/demo.yaml and configs/bench_base_small.yaml, every engine
    python tools/benchmark_inference.py --config configs/demo.yaml --engines eager onnx --steps 20
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from mmcls.config import load_config
from mmcls.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = ("configs/demo.yaml", "configs/bench_base_small.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    from mmcls.bench.inference import ENGINES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help="Config files, one model each (default: the demo and "
                        "the base-proportioned one).")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES),
                        help="Engines to time (default: all).")
    parser.add_argument("--steps", type=int, default=10, help="Timed forward passes per engine (default 10).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed passes first (default 2).")
    parser.add_argument("--out", default="runs/bench_inference", help="Model and export folders go here.")
    parser.add_argument("--json", help="Write the figures here as JSON.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides for every config, e.g. train.batch_size=8 data.root=...")
    args = parser.parse_intermixed_args(argv)
    from mmcls.accelerators import hub_offline
    from mmcls.bench.inference import engines_markdown, measure_engines

    hub_offline()
    rows = []
    for config in args.config or [str(ROOT / c) for c in DEFAULT_CONFIGS]:
        cfg = load_config(config, list(args.overrides))
        name = Path(config).stem
        for row in measure_engines(name, cfg, Path(args.out), args.engines, args.steps, args.warmup):
            print(f"{name} {row['runtime']} {row['precision']}: {row['videos_per_s']:.2f} videos/s "
                  f"({row['vs_eager']}x eager) {row['note']}", flush=True)
            rows.append(row)
    table = engines_markdown(rows)
    print(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0
