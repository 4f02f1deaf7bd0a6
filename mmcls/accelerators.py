"""The two ways mmcls builds an ``accelerate.Accelerator``: one for training runs, one for offline inference.

Both resolve ``auto`` precision the same way (:func:`resolve_mixed_precision`) and switch the hub off (models load
from local folders only). Imported late by the tools, so that ``--help`` stays fast.
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs


def resolve_mixed_precision(setting: str) -> str:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, none on CPU."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def training_accelerator(precision: str, grad_accum_steps: int) -> Accelerator:
    """The accelerator of a finetuning or pretraining run (``train.mixed_precision``, ``train.grad_accum_steps``).

    DDP is told that some parameters may get no gradient in a step: a batch whose videos all failed to decode
    skips the vision tower and the video head, and frozen towers get none at all.
    """
    _offline()
    return Accelerator(mixed_precision=resolve_mixed_precision(precision), gradient_accumulation_steps=grad_accum_steps,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def inference_accelerator(precision: str) -> Accelerator:
    """The accelerator of prediction, feature extraction and the other inference tools (``--precision``)."""
    _offline()
    return Accelerator(mixed_precision=resolve_mixed_precision(precision))
