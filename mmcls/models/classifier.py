"""The multimodal classifier: the encoder (:mod:`mmcls.models.encoder`) with level-2, level-1 and video-only heads.

::

    text, frames ─► encoder ─► fused sequence ─► pool (CLS or masked mean) ─► heads (level 2, level 1)
                         └─► projected frames ─► masked mean ─► video head (auxiliary)
"""

from __future__ import annotations

import torch
from torch import nn

from mmcls.models.encoder import MODES, FusedSequence, MultimodalEncoder, parameter_groups
from mmcls.models.fusion import POOLERS, masked_mean
from mmcls.models.heads import ClassifierHeads, VideoHead

__all__ = ["MODES", "FusedSequence", "MultimodalClassifier", "parameter_groups"]


class MultimodalClassifier(nn.Module):
    """``encoder`` (:class:`MultimodalEncoder`) + ``heads`` (level 2 and optional level 1) + ``video_head`` (None when
    off, in text mode or without frames)."""

    def __init__(self, encoder: MultimodalEncoder, *, num_lv2: int, num_lv1: int | None = None,
                 pooling: str = "mean", dropout: float = 0.1, video_head: bool = True,
                 dropout_samples: int = 1) -> None:
        super().__init__()
        if pooling not in POOLERS:
            raise ValueError(f"pooling must be one of {sorted(POOLERS)}, got {pooling!r}")
        if num_lv2 < 1:
            raise ValueError(f"num_lv2 must be >= 1, got {num_lv2} (the encoder alone is MultimodalEncoder)")
        self.pooling = pooling
        self.encoder = encoder
        hidden = encoder.hidden_size
        self.heads = ClassifierHeads(hidden, num_lv2, num_lv1, dropout, dropout_samples)
        uses_frames = encoder.frame_embedder is not None
        self.video_head = VideoHead(hidden, num_lv2, dropout) if uses_frames and video_head else None

    @property
    def mode(self) -> str:
        return self.encoder.mode

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None, repeats: int = 1, features: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | None]:
        """Logits of one batch (the collated batch format of the data pipeline).

        ``frames`` as the encoder reads them (pixels, or cached features when it reads features); ``features``
        ``[B, T, D]`` instead: frame features already computed (e.g. an earlier output's ``frame_features``: the
        adversarial passes reuse them and skip the vision tower). Returns ``logits`` ``[B, num_lv2]``,
        ``logits_lv1`` ``[B, num_lv1]`` or None, ``logits_video`` ``[B, num_lv2]`` or None (no frames, text mode,
        or no video head), ``pooled`` ``[B, H]`` and ``frame_features`` ``[B, T, D]`` or None. ``repeats``: see
        :meth:`MultimodalEncoder.encode` (all outputs get ``R * B`` rows). With multi-sample dropout in training,
        ``logits_samples`` ``[K, B, num_lv2]`` and ``logits_lv1_samples`` hold each dropout sample's logits
        (``logits`` is their mean); otherwise they are None.
        """
        fused = self.encoder.encode(input_ids, attention_mask, frames, frame_mask, repeats, features=features)
        return self.classify(fused)

    def classify(self, fused: FusedSequence) -> dict[str, torch.Tensor | None]:
        """The heads on an encoded batch (see :meth:`forward`)."""
        pooled = POOLERS[self.pooling](fused.hidden, fused.mask)  # [B, H]
        samples, samples_lv1 = self.heads(pooled)  # [K, B, C]: K dropout samples in training, else 1
        logits = samples.mean(dim=0)  # [B, num_lv2]
        logits_lv1 = samples_lv1.mean(dim=0) if samples_lv1 is not None else None
        logits_video = None
        if self.video_head is not None and fused.projected_frames is not None:
            logits_video = self.video_head(masked_mean(fused.projected_frames, fused.frame_mask))
        multi = samples.shape[0] > 1
        return {"logits": logits, "logits_lv1": logits_lv1, "logits_video": logits_video, "pooled": pooled,
                "frame_features": fused.frame_features,
                "logits_samples": samples if multi else None,
                "logits_lv1_samples": samples_lv1 if multi else None}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in both towers (recompute activations in the backward pass)."""
        self.encoder.set_grad_checkpointing(enable)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """See :func:`parameter_groups`."""
        return parameter_groups(self)
