"""Batched inference over a prepared DataLoader: logits and labels gathered across processes, in sample order.

Used by validation during finetuning and by ``tools/predict.py``. ``gather_for_metrics`` drops the samples that
the distributed sampler duplicated to even out the last batch, so every sample is counted exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mmcls.config import ModelConfig
from mmcls.engine.losses import validation_loss


@dataclass
class InferenceResult:
    """Per-sample outputs in loader order (on every process)."""

    ids: list[str] = field(default_factory=list)
    logits: np.ndarray | None = None  # float32 [N, num_lv2]
    labels: np.ndarray | None = None  # int64 [N], -100 where unlabelled
    loss: float | None = None
    video_failures: int = 0


def model_inputs(batch: dict[str, Any], hflip: bool = False) -> dict[str, Any]:
    """The tensors the model's forward takes; ``hflip`` mirrors pixel frames ``[B, T, 3, H, W]`` left-right (the
    caller asks for it only for a model that reads pixels: prediction refuses a flip of cached features)."""
    frames = batch.get("frames")
    if hflip and frames is not None:
        frames = frames.flip(-1)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "frames": frames, "frame_mask": batch.get("frame_mask")}


@torch.no_grad()
def run_inference(model: torch.nn.Module, loader: Any, accelerator: Any, model_cfg: ModelConfig | None = None,
                  desc: str = "eval", hflip: bool = False) -> InferenceResult:
    """Run ``model`` over ``loader``; with ``model_cfg`` also the mean validation loss over labelled samples.

    ``hflip`` feeds horizontally mirrored frames (a test-time augmentation view)."""
    was_training = model.training
    model.eval()
    ids: list[str] = []
    logits, labels, failed = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                      disable=not accelerator.is_local_main_process):
        outputs = model(**model_inputs(batch, hflip))
        batch_failed = torch.tensor([error is not None for error in batch["video_errors"]],
                                    device=batch["labels"].device)
        # gather_for_metrics drops the duplicated tail samples, so the loss and counts below see each sample once
        batch_logits, batch_labels, batch_failed = accelerator.gather_for_metrics(
            (outputs["logits"].float(), batch["labels"], batch_failed))
        ids.extend(accelerator.gather_for_metrics(batch["ids"], use_gather_object=True))
        logits.append(batch_logits.cpu())
        labels.append(batch_labels.cpu())
        failed.append(batch_failed.cpu())
    model.train(was_training)
    all_logits = torch.cat(logits) if logits else torch.zeros((0, 0))
    all_labels = torch.cat(labels) if labels else torch.zeros((0,), dtype=torch.long)
    loss = None
    if model_cfg is not None and bool((all_labels >= 0).any()):
        loss = float(validation_loss({"logits": all_logits}, {"labels": all_labels}))
    return InferenceResult(
        ids=ids,
        logits=all_logits.numpy().astype(np.float32, copy=False),
        labels=all_labels.numpy(),
        loss=loss,
        video_failures=int(torch.cat(failed).sum()) if failed else 0,
    )
