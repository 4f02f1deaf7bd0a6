"""Classifier heads: level 2 (+ optional level 1) on the pooled fused sequence, and the video-only auxiliary head."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHeads(nn.Module):
    """Dropout, then a level-2 linear classifier and an optional level-1 one, on the same pooled vector.

    With ``dropout_samples`` K > 1 (multi-sample dropout, Inoue 2019), training draws K independent dropout masks
    and returns the logits of each, ``[K, B, C]``: the criterion averages the K losses (averaging the logits of a
    linear head would just be a weaker dropout). In evaluation dropout is the identity, so one pass is computed.
    """

    def __init__(self, hidden_size: int, num_lv2: int, num_lv1: int | None, dropout: float,
                 dropout_samples: int = 1) -> None:
        super().__init__()
        if dropout_samples < 1:
            raise ValueError(f"dropout_samples must be >= 1, got {dropout_samples}")
        self.dropout = nn.Dropout(dropout)
        self.dropout_samples = dropout_samples
        self.lv2 = nn.Linear(hidden_size, num_lv2)
        self.lv1 = nn.Linear(hidden_size, num_lv1) if num_lv1 else None

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, H]`` -> level-2 logits ``[K, B, num_lv2]`` and level-1 logits ``[K, B, num_lv1]`` (or None);
        K = ``dropout_samples`` in training, 1 in evaluation."""
        samples = self.dropout_samples if self.training else 1
        x = self.dropout(pooled.unsqueeze(0).expand(samples, *pooled.shape))  # [K, B, H], one mask per sample
        return self.lv2(x), (self.lv1(x) if self.lv1 is not None else None)


class VideoHead(nn.Module):
    """Auxiliary level-2 classifier on the masked mean of the projected frames (before fusion).

    Its loss makes the frame path learn on its own, so the fusion cannot lean on the text alone.
    """

    def __init__(self, hidden_size: int, num_lv2: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size, num_lv2)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, H]`` -> ``[B, num_lv2]``."""
        return self.fc(self.dropout(video))
