"""Classifier heads: level 2 (+ optional level 1) on the pooled fused sequence, and the video-only auxiliary head."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHeads(nn.Module):
    """Dropout, then a level-2 linear classifier and an optional level-1 one, on the same pooled vector."""

    def __init__(self, hidden_size: int, num_lv2: int, num_lv1: int | None, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lv2 = nn.Linear(hidden_size, num_lv2)
        self.lv1 = nn.Linear(hidden_size, num_lv1) if num_lv1 else None

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, H]`` -> level-2 logits ``[B, num_lv2]`` and level-1 logits ``[B, num_lv1]`` (or None)."""
        x = self.dropout(pooled)
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
