"""Pretrain the fusion model on unlabelled videos (MLM, masked frame modelling, video-text matching).

The result, RUN/best, is what finetuning starts from with model.init_from=RUN/best.

Examples:
    python pretrain/train.py --config configs/pretrain_demo.yaml
    accelerate launch pretrain/train.py --config configs/pretrain.yaml data.root=/data/wbdc output_dir=runs/pretrain
    python pretrain/train.py --config configs/pretrain_demo.yaml pretrain.itm_weight=0 pretrain.whole_word=true
    accelerate launch -m mmcls pretrain --config my.yaml output_dir=runs/pre   # installed, several processes
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

    from mmcls.engine.pretrain import pretrain

    try:
        result = pretrain(cfg)
    except torch.OutOfMemoryError as exc:
        raise UserError(out_of_memory_message(exc, cfg)) from None
    best = Path(cfg.output_dir) / "best"
    if "update" not in result:
        raise UserError(f"no validation loss was finite: {best} was not written (see {cfg.output_dir}/train.log)")
    print(f"best pretraining loss {result.get('val_loss', float('nan')):.4f} -> {best} "
          f"({result['train_videos_per_s']:.1f} videos/s); finetune with model.init_from={best}")
    return 0
