"""Pretrain the fusion model on unlabelled videos (MLM, masked frame modelling, video-text matching).

The result, RUN/best, is what finetuning starts from with model.init_from=RUN/best.

Examples:
    python pretrain/train.py --config configs/pretrain_demo.yaml
    accelerate launch pretrain/train.py --config configs/pretrain.yaml data.root=/data/wbdc output_dir=runs/pretrain
    python pretrain/train.py --config configs/pretrain_demo.yaml pretrain.itm_weight=0 pretrain.whole_word=true
    accelerate launch -m mmcls pretrain --config my.yaml output_dir=runs/pre   # installed, several processes
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import run_training
from mmcls.config import Config
from mmcls.errors import UserError


def main(argv: Sequence[str] | None = None) -> int:
    def train(cfg: Config) -> dict[str, float]:
        from mmcls.engine.pretrain import pretrain

        return pretrain(cfg)

    cfg, result = run_training(argv, __doc__, train)
    best = Path(cfg.output_dir) / "best"
    if "update" not in result:
        raise UserError(f"no validation loss was finite: {best} was not written (see {cfg.output_dir}/train.log)")
    print(f"best pretraining loss {result.get('val_loss', float('nan')):.4f} -> {best} "
          f"({result['train_videos_per_s']:.1f} videos/s); finetune with model.init_from={best}")
    return 0
