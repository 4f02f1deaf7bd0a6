"""Training losses: level-2 cross-entropy, plus the weighted level-1 and auxiliary video-only losses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mmcls.config import ModelConfig
from mmcls.data.dataset import IGNORE_INDEX


def classification_losses(outputs: dict[str, Any], batch: dict[str, Any], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """``loss`` (the sum that is optimised) and its parts ``loss_lv2``, ``loss_lv1``, ``loss_video``.

    Samples without a label (-100) are ignored; the video loss only counts samples that have at least one frame.
    """
    labels = batch["labels"]
    losses = {"loss_lv2": F.cross_entropy(outputs["logits"].float(), labels, ignore_index=IGNORE_INDEX)}
    total = losses["loss_lv2"]
    if outputs.get("logits_lv1") is not None and cfg.lv1_loss_weight > 0:
        losses["loss_lv1"] = F.cross_entropy(outputs["logits_lv1"].float(), batch["labels_lv1"],
                                             ignore_index=IGNORE_INDEX)
        total = total + cfg.lv1_loss_weight * losses["loss_lv1"]
    if outputs.get("logits_video") is not None and cfg.aux_video_weight > 0:
        has_video = batch["frame_mask"].any(dim=1)
        video_labels = torch.where(has_video, labels, torch.full_like(labels, IGNORE_INDEX))
        logits_video = outputs["logits_video"].float()
        if (video_labels != IGNORE_INDEX).any():
            losses["loss_video"] = F.cross_entropy(logits_video, video_labels, ignore_index=IGNORE_INDEX)
        else:  # keep the head in the graph (every process must produce the same gradients' structure)
            losses["loss_video"] = logits_video.sum() * 0.0
        total = total + cfg.aux_video_weight * losses["loss_video"]
    losses["loss"] = total
    return losses
