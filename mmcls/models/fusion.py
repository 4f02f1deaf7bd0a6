"""Pieces of the single-stream fusion: frame embeddings for the BERT encoder, masked means and pooling."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

FRAME_TOKEN_TYPE = 1  # BERT token type of frame positions (text is type 0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` ``[B, N, D]`` over positions where ``mask`` ``[B, N]`` is true; zeros where none is.

    Masked positions are selected away (not multiplied by zero), so NaN or inf there cannot leak into the result.
    """
    weights = mask.to(x.dtype).unsqueeze(-1)  # [B, N, 1]
    total = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / weights.sum(dim=1).clamp(min=1.0)  # [B, D]


class FrameEmbedder(nn.Module):
    """Per-frame features ``[B, T, D]`` -> BERT-width frame tokens ``[B, T, H]``.

    Linear projection, plus a learned frame-position embedding and the BERT token-type embedding of type 1 (given
    by the caller: the table belongs to the BERT, shared with the text as in VisualBERT), then LayerNorm and
    dropout. :meth:`project` alone gives the plain projected frames that the auxiliary video head averages.
    """

    def __init__(self, feat_dim: int, hidden_size: int, max_frames: int, dropout: float,
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.proj = nn.Linear(feat_dim, hidden_size)
        self.position = nn.Embedding(max_frames, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.max_frames = max_frames

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, T, H]`` (linear projection only)."""
        return self.proj(feats)

    def forward(self, projected: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        """Projected frames ``[B, T, H]`` + token-type vector ``[H]`` -> frame tokens ``[B, T, H]``."""
        t = projected.shape[1]
        if t > self.max_frames:
            raise ValueError(f"{t} frames per video but the frame-position table has {self.max_frames} "
                             "(data.max_frames)")
        positions = self.position.weight[:t].unsqueeze(0)  # [1, T, H]
        x = projected + positions + token_type  # [B, T, H]
        return self.dropout(self.norm(x))


def pool_cls(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state of the first position ([CLS]) ``[B, H]``."""
    return hidden[:, 0]


def pool_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over all valid text and frame positions ``[B, H]``."""
    return masked_mean(hidden, mask)


POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cls": pool_cls,
    "mean": pool_mean,
}
