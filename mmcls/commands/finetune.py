"""Finetune the multimodal classifier (single process, or any number under `accelerate launch`).

Examples:
    python finetune/train.py --config configs/demo.yaml
    accelerate launch finetune/train.py --config configs/base.yaml data.root=/data/wbdc output_dir=runs/base
    python finetune/train.py --config configs/demo.yaml model.mode=text output_dir=runs/demo_text
    python -m mmcls finetune --config my.yaml output_dir=runs/x              # installed, from any folder
    accelerate launch -m mmcls finetune --config my.yaml output_dir=runs/x   # installed, several processes
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from mmcls.accelerators import out_of_memory_message
from mmcls.config import add_config_arguments, config_from_args
from mmcls.errors import UserError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, required=True)
    args = parser.parse_intermixed_args(argv)
    cfg = config_from_args(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from mmcls.engine.finetune import finetune

    try:
        scores = finetune(cfg)
    except torch.OutOfMemoryError as exc:
        raise UserError(out_of_memory_message(exc, cfg)) from None
    print(f"best validation mean_f1 {scores.get('mean_f1', float('nan')):.4f} -> {Path(cfg.output_dir) / 'best'} "
          f"({scores['train_videos_per_s']:.1f} training videos/s)")
    return 0
