"""The multimodal classifier: VisualBERT-style single-stream fusion of text tokens and frame embeddings.

::

    input_ids ──► BERT embeddings (word + position + type 0) ─────────────┐
    frames ─► normalise (device) ─► vision tower (valid frames only) ─►   ├─► concat ─► BERT encoder ─► pool ─► heads
              projection ─► + frame position + type 1 ─► LayerNorm ───────┘
                   └─► masked mean ─► video head (auxiliary)

``mode`` selects the inputs of the same architecture: ``fusion`` (both), ``text`` (frames ignored; no vision tower,
no frame layers) or ``video`` (the text is reduced to ``[CLS] [SEP]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertModel
from transformers.masking_utils import create_bidirectional_mask

from mmcls.data.transforms import normalize_frames
from mmcls.models.fusion import FRAME_TOKEN_TYPE, POOLERS, FrameEmbedder, masked_mean
from mmcls.models.heads import ClassifierHeads, VideoHead
from mmcls.models.vision import VisionTower

MODES = ("fusion", "text", "video")


@dataclass
class FusedSequence:
    """What the encoder produced, for the classifier heads and for pretraining heads (MLM / MFM / ITM).

    ``hidden`` ``[B, L + T, H]`` (L text positions, then T frame positions), ``mask`` bool ``[B, L + T]``,
    ``frame_features`` ``[B, T, D]`` (the vision tower's output, or the given features), ``projected_frames``
    ``[B, T, H]`` and ``frame_mask`` ``[B, T]`` (the three None without frames).
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    num_text: int
    projected_frames: torch.Tensor | None
    frame_mask: torch.Tensor | None
    frame_features: torch.Tensor | None = None


class MultimodalClassifier(nn.Module):
    """BERT single-stream fusion of text and frames with level-2, level-1 and video-only heads.

    Submodules: ``bert`` (embeddings + encoder), ``vision`` (None for text mode or frame features),
    ``frame_embedder`` (None in text mode), ``heads``, ``video_head`` (None when off or in text mode).
    ``num_lv2=0`` builds the encoder alone (``heads`` and ``video_head`` None): :meth:`encode` works,
    :meth:`forward` does not; the pretrainer subclass adds its own heads.
    """

    def __init__(self, bert: BertModel, vision: VisionTower | None, *, num_lv2: int, num_lv1: int | None = None,
                 mode: str = "fusion", pooling: str = "mean", dropout: float = 0.1, max_frames: int = 8,
                 frame_dim: int | None = None, video_head: bool = True, cls_id: int = 2, sep_id: int = 3,
                 dropout_samples: int = 1) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if pooling not in POOLERS:
            raise ValueError(f"pooling must be one of {sorted(POOLERS)}, got {pooling!r}")
        hidden = bert.config.hidden_size
        self.mode, self.pooling = mode, pooling
        self.cls_id, self.sep_id = cls_id, sep_id
        self.bert = bert
        uses_frames = mode != "text"
        if uses_frames and vision is not None:
            frame_dim = vision.out_dim
        if uses_frames and frame_dim is None:
            raise ValueError("frame_dim is needed without a vision tower (frame features)")
        if uses_frames and bert.config.type_vocab_size <= FRAME_TOKEN_TYPE:
            raise ValueError(f"the BERT has {bert.config.type_vocab_size} token type(s); frames need type "
                             f"{FRAME_TOKEN_TYPE}")
        self.vision = vision if uses_frames else None
        self.frame_embedder = (FrameEmbedder(frame_dim, hidden, max_frames, bert.config.hidden_dropout_prob,
                                             bert.config.layer_norm_eps) if uses_frames else None)
        classifies = num_lv2 > 0
        self.heads = ClassifierHeads(hidden, num_lv2, num_lv1, dropout, dropout_samples) if classifies else None
        self.video_head = VideoHead(hidden, num_lv2, dropout) if classifies and uses_frames and video_head else None

    # ------------------------------------------------------------------------------------------------------------
    # frames

    def frame_features(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[B, T, D]``; zeros at masked frames.

        Pixels ``[B, T, 3, S, S]`` (uint8, normalised here on their device; float = already normalised) go through
        the vision tower as one flat batch of the valid frames only. Features ``[B, T, D]`` are used as they are.
        """
        if frames.ndim == 3:  # frame features [B, T, D]
            weight = self.frame_embedder.proj.weight
            feats = frames.to(device=weight.device, dtype=weight.dtype)
            return torch.where(frame_mask.unsqueeze(-1), feats, torch.zeros((), dtype=feats.dtype,
                                                                            device=feats.device))
        if frames.ndim != 5:
            raise ValueError(f"frames must be [B, T, 3, S, S] pixels or [B, T, D] features, got {tuple(frames.shape)}")
        if self.vision is None:
            raise ValueError("this model was built for frame features [B, T, D] but got pixels")
        b, t = frame_mask.shape
        flat = frames.reshape(b * t, *frames.shape[2:])  # [B*T, 3, S, S]
        index = frame_mask.reshape(-1).nonzero().squeeze(1)  # [n] positions of the valid frames
        if index.numel() == 0:  # no valid frame in the whole batch: nothing to encode
            weight = self.frame_embedder.proj.weight
            return torch.zeros((b, t, self.vision.out_dim), dtype=weight.dtype, device=weight.device)
        pixels = flat.index_select(0, index)  # [n, 3, S, S]
        if pixels.dtype == torch.uint8:
            pixels = normalize_frames(pixels, self.vision.mean, self.vision.std)
        embedded = self.vision(pixels)  # [n, D]
        out = embedded.new_zeros((b * t, embedded.shape[-1])).index_copy(0, index, embedded)  # [B*T, D]
        return out.view(b, t, -1)  # [B, T, D]

    def _video_text(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Video mode: every sample's text becomes ``[CLS] [SEP]`` (``[B, 2]``), so only frames carry information."""
        device = self.bert.embeddings.word_embeddings.weight.device
        ids = torch.tensor([[self.cls_id, self.sep_id]], dtype=torch.long, device=device).expand(batch_size, 2)
        return ids, torch.ones_like(ids)

    # ------------------------------------------------------------------------------------------------------------
    # forward

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor | None = None,
               frame_mask: torch.Tensor | None = None, repeats: int = 1) -> FusedSequence:
        """Embed text and frames, concatenate ``[text, frames]`` and run the BERT encoder over the valid positions.

        ``repeats`` R > 1 encodes the batch R times in one pass (``[R * B, ...]`` outputs, copy r of sample i at
        row r * B + i) with independent dropout in the fusion, but runs the vision tower once: R-Drop's two passes
        at the cost of one vision pass.
        """
        if self.mode == "video":
            input_ids, attention_mask = self._video_text(input_ids.shape[0])
        if repeats > 1:
            input_ids, attention_mask = input_ids.repeat(repeats, 1), attention_mask.repeat(repeats, 1)  # [R*B, L]
        hidden = self.bert.embeddings(input_ids=input_ids)  # [B, L, H]
        mask = attention_mask.bool()  # [B, L]
        num_text = hidden.shape[1]
        projected, features = None, None
        if self.frame_embedder is not None and frames is not None:
            if frame_mask is None:
                frame_mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
            frame_mask = frame_mask.to(device=hidden.device, dtype=torch.bool)
            features = self.frame_features(frames, frame_mask)  # [B, T, D]
            if repeats > 1:
                features, frame_mask = features.repeat(repeats, 1, 1), frame_mask.repeat(repeats, 1)  # [R*B, T, ...]
            projected = self.frame_embedder.project(features)  # [B, T, H]
            token_type = self.bert.embeddings.token_type_embeddings.weight[FRAME_TOKEN_TYPE]  # [H]
            frame_tokens = self.frame_embedder(projected, token_type)  # [B, T, H]
            hidden = torch.cat([hidden, frame_tokens.to(hidden.dtype)], dim=1)  # [B, L + T, H]
            mask = torch.cat([mask, frame_mask], dim=1)  # [B, L + T]
        else:
            frame_mask = None
        attn = create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden, attention_mask=mask)
        hidden = self.bert.encoder(hidden, attention_mask=attn).last_hidden_state  # [B, L + T, H]
        return FusedSequence(hidden, mask, num_text, projected, frame_mask, features)

    def encode_frames(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> FusedSequence:
        """The frames alone through the encoder, behind an empty ``[CLS] [SEP]`` text as in video mode (frame
        features ``[B, T, D]`` are used as they are, so a caller that has them does not run the tower again)."""
        empty_ids, empty_mask = self._video_text(frame_mask.shape[0])  # [B, 2]
        return self.encode(empty_ids, empty_mask, frames, frame_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None, repeats: int = 1, frame_features: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | None]:
        """Logits of one batch (the collated batch format of :mod:`mmcls.data.dataset`).

        Returns ``logits`` ``[B, num_lv2]``, ``logits_lv1`` ``[B, num_lv1]`` or None, ``logits_video``
        ``[B, num_lv2]`` or None (no frames, text mode, or no video head), ``pooled`` ``[B, H]`` and
        ``frame_features`` ``[B, T, D]`` or None: feeding these back as ``frames`` skips the vision tower (the
        adversarial passes reuse them). ``repeats``: see :meth:`encode` (all outputs get ``R * B`` rows). With
        multi-sample dropout in training, ``logits_samples`` ``[K, B, num_lv2]`` and ``logits_lv1_samples`` hold
        each dropout sample's logits (``logits`` is their mean); otherwise they are None.
        """
        if self.heads is None:
            raise RuntimeError("this model has no classification heads (built with num_lv2=0): use encode()")
        if frame_features is not None:
            frames = frame_features
        fused = self.encode(input_ids, attention_mask, frames, frame_mask, repeats)
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

    @property
    def word_embeddings(self) -> nn.Parameter:
        return self.bert.embeddings.word_embeddings.weight

    def pixel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.vision is None:
            return (0.0,) * 3, (1.0,) * 3
        return self.vision.mean, self.vision.std

    def set_channels_last(self, enable: bool = True) -> None:
        if self.vision is not None:
            self.vision.set_channels_last(enable)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in both towers (recompute activations in the backward pass)."""
        bert = self.bert
        if enable:
            kwargs = {"use_reentrant": False}
            if hasattr(bert, "activation_checkpointing_enable"):  # transformers >= 5.x name
                bert.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        elif hasattr(bert, "activation_checkpointing_disable"):
            bert.activation_checkpointing_disable()
        else:
            bert.gradient_checkpointing_disable()
        if self.vision is not None:
            self.vision.set_grad_checkpointing(enable)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """See :func:`parameter_groups`."""
        return parameter_groups(self)


# The submodules a classifier and a pretrainer share (same names, same shapes): what pretraining hands to finetuning.
ENCODER_PARTS = ("bert", "vision", "frame_embedder")

# Top-level submodule -> parameter group (the trainer gives each group its own learning rate).
PARAM_GROUP_OF: dict[str, str] = {
    "vision": "vision",
    "bert": "text",
    "frame_embedder": "fusion",
    "heads": "heads",
    "video_head": "heads",
    # pretraining heads (mmcls.models.pretrainer)
    "mlm_head": "heads",
    "mfm_head": "heads",
    "itm_head": "heads",
    "itc_text": "heads",
    "itc_video": "heads",
}
PARAM_GROUPS = ("vision", "text", "fusion", "heads")


def parameter_groups(model: MultimodalClassifier) -> dict[str, list[nn.Parameter]]:
    """All parameters (frozen ones too), each in exactly one of ``vision``, ``text``, ``fusion``, ``heads``.

    ``text`` is the BERT (embeddings and encoder: the encoder is also the fusion transformer, but it is pretrained
    and wants the small BERT learning rate); ``fusion`` is the new frame layers (projection, frame positions, norm).
    """
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in PARAM_GROUPS}
    for name, param in model.named_parameters():  # shared parameters are listed once
        top = name.split(".", 1)[0]
        if top not in PARAM_GROUP_OF:
            raise KeyError(f"parameter {name} belongs to no group; add {top!r} to PARAM_GROUP_OF")
        groups[PARAM_GROUP_OF[top]].append(param)
    return groups
