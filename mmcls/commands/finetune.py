"""Finetune the multimodal classifier (single process, or any number under `accelerate launch`).

Examples:
    python finetune/train.py --config configs/demo.yaml
    accelerate launch finetune/train.py --config configs/base.yaml data.root=/data/wbdc output_dir=runs/base
    python finetune/train.py --config configs/demo.yaml model.mode=text output_dir=runs/demo_text
    python -m mmcls finetune --config my.yaml output_dir=runs/x              # installed, from any folder
    accelerate launch -m mmcls finetune --config my.yaml output_dir=runs/x   # installed, several processes
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import run_training
from mmcls.config import Config


def main(argv: Sequence[str] | None = None) -> int:
    def train(cfg: Config) -> dict[str, float]:
        from mmcls.engine.finetune import finetune

        return finetune(cfg)

    cfg, scores = run_training(argv, __doc__, train)
    print(f"best validation mean_f1 {scores.get('mean_f1', float('nan')):.4f} -> {Path(cfg.output_dir) / 'best'} "
          f"({scores['train_videos_per_s']:.1f} training videos/s)")
    return 0
