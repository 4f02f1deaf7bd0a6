"""How the device side is set up, in one place: the mixed precision ``auto`` resolves to, the ``accelerate``
Accelerator of training runs and the one of the inference commands and library functions, and the one message for
running out of device memory. torch and accelerate are imported inside the functions: a command's ``--help`` stays
fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate import Accelerator


def hub_offline() -> None:
    """Switch the Hugging Face hub off for this process and its children (models load from local folders only),
    unless the user set the variables; call before transformers is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def resolve_mixed_precision(setting: str) -> str:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, none on CPU; anything else as it is."""
    if setting != "auto":
        return setting
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def training_accelerator(precision: str, grad_accum_steps: int) -> Accelerator:
    """The Accelerator of a finetuning or pretraining run (``train.mixed_precision``, ``train.grad_accum_steps``),
    with the hub switched off.

    DDP is told that some parameters may get no gradient in a step: a batch whose videos all failed to decode
    skips the vision tower and the video head, and frozen towers get none at all.
    """
    hub_offline()
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(mixed_precision=resolve_mixed_precision(precision), gradient_accumulation_steps=grad_accum_steps,
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def inference_accelerator(precision: str = "auto") -> Accelerator:
    """The Accelerator of inference (prediction, feature extraction, explanations): autocast ``precision``
    (``auto|no|bf16|fp16``, :func:`resolve_mixed_precision`), with the hub switched off (models load from local
    folders only). Under ``accelerate launch`` every process gets its shard."""
    hub_offline()
    from accelerate import Accelerator

    return Accelerator(mixed_precision=resolve_mixed_precision(precision))


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device out-of-memory error (``torch.OutOfMemoryError``), without importing torch."""
    return type(error).__name__ == "OutOfMemoryError"


def out_of_memory_message(error: BaseException, cfg: Any = None) -> str:
    """The one line every command prints for a device out-of-memory error: what ran out, and the knobs that need
    less memory. With the training ``cfg``: its own values (half the batch with twice the accumulation, ...);
    without (inference): the batch, frame and precision options of the inference commands."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if cfg is not None:
        knobs = [f"train.batch_size={max(1, cfg.train.batch_size // 2)} with "
                 f"train.grad_accum_steps={cfg.train.grad_accum_steps * 2} (same global batch)",
                 f"data.max_frames (now {cfg.data.max_frames})", f"data.frame_size (now {cfg.data.frame_size})"]
        if not cfg.train.grad_checkpointing:
            knobs.append("train.grad_checkpointing=true")
        if cfg.train.mixed_precision in ("auto", "no"):
            knobs.append("train.mixed_precision=bf16")
    else:
        knobs = ["a smaller batch (--batch-size where the command has it, else train.eval_batch_size / "
                 "train.batch_size)", "fewer data.max_frames or a smaller data.frame_size",
                 "bf16 (--precision bf16 or train.mixed_precision=bf16)"]
    return f"out of device memory ({first[:160]}); try {', '.join(knobs)}"
