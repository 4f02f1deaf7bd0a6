"""Cost of one training step with each trick that adds passes (FGM, PGD, R-Drop, SAM, ...), relative to a plain step.

One real batch of the config's training split is loaded once and kept in memory, so the figures measure the model
side only (forward, losses, backward, adversarial passes, optimizer step, EMA) and not the loader. Each variant is
the config plus its overrides; the median of --steps timed steps (after --warmup untimed ones) is reported.

Examples:
    python tools/benchmark_step.py --config configs/demo.yaml
    python tools/benchmark_step.py --config configs/demo.yaml --only plain fgm pgd --steps 20 train.batch_size=16
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from mmcls.config import add_config_arguments, build_config, config_from_args, to_dict

VARIANTS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "fgm": ("train.adversarial.method=fgm",),
    "fgm+frames": ("train.adversarial.method=fgm", "train.adversarial.frames=true"),
    "pgd3": ("train.adversarial.method=pgd", "train.adversarial.steps=3"),
    "rdrop": ("train.loss.rdrop_alpha=1.0",),
    "sam": ("train.sam_rho=0.05",),
    "ema": ("train.ema.decay=0.999",),
    "mixup": ("train.mix.mixup_alpha=0.4",),
    "multi_sample_dropout": ("model.dropout_samples=5",),
    "grad_checkpointing": ("train.grad_checkpointing=true",),
}


def time_variant(base_values: dict, overrides: Sequence[str], batch: dict, tokenizer: Any, categories: Any,
                 steps: int, warmup: int) -> float:
    """Median seconds of one optimizer update with ``overrides`` applied to the base config."""
    from mmcls.bench.model import TrainHarness

    harness = TrainHarness.build(build_config(base_values, list(overrides)), batch, tokenizer, categories)
    return harness.time_updates(steps, warmup)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, required=True)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="NAME",
                        help=f"Variants to time (default all): {', '.join(VARIANTS)}.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per variant (default 10).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first (default 2).")
    args = parser.parse_intermixed_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = config_from_args(args)
    values = to_dict(build_config(to_dict(cfg), ["data.num_workers=0"]))
    from mmcls.bench.model import load_batch

    batch, tokenizer, categories = load_batch(cfg)
    names = args.only or list(VARIANTS)
    if "plain" not in names:
        names = ["plain", *names]
    seconds = {name: time_variant(values, VARIANTS[name], batch, tokenizer, categories, args.steps, args.warmup)
               for name in names}
    size = cfg.train.batch_size
    print(f"| variant | ms / step ({size} videos) | videos/s | cost vs plain |")
    print("|---|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {seconds[name] * 1e3:.1f} | {size / seconds[name]:.1f} | "
              f"{seconds[name] / seconds['plain']:.2f}x |")
    return 0
