"""The multimodal encoder: VisualBERT-style single-stream fusion of text tokens and frame embeddings.

::

    input_ids ──► text tower embeddings (word + position + type 0) ──────────┐
    frames ─► normalise (device) ─► vision tower (valid frames only) ─►      ├─► concat ─► text tower layers ─► fused
              frame_embedder: projection ─► + frame position + type 1 ─► LayerNorm
                   └─► (projected frames: the classifier's auxiliary video head)

One module, composed by the classifier (:class:`mmcls.models.classifier.MultimodalClassifier`, adds the heads), the
pretrainer (:class:`mmcls.models.pretrainer.MultimodalPretrainer`, adds the task heads) and used alone to extract
frame features (:mod:`mmcls.workflow.features`). Its parts: ``text`` (a :class:`~mmcls.models.towers.TextTower`),
``vision`` (a :class:`~mmcls.models.towers.VisionTower`; None in text mode and when it reads cached features) and
``frame_embedder`` (None in text mode). Time reaches the tower through ``model.temporal`` (frame differences as
extra stem channels, a temporal shift inside its blocks: :mod:`mmcls.models.temporal`), computed on the flat batch
of valid frames, within each video.

``mode`` selects the inputs of the same architecture: ``fusion`` (both), ``text`` (frames ignored; no vision tower,
no frame layers) or ``video`` (the text is reduced to ``[CLS] [SEP]``). ``reads_features`` says what ``frames``
are: pixels ``[B, T, 3, S, S]`` for the vision tower, or cached features ``[B, T, D]`` (set when built for
``data.frame_source=feats``; a model with a tower can be switched to features with :meth:`set_reads_features`).
Callers that already hold the features of a batch (adversarial passes, pretraining tasks) pass ``features=``.

Adding a tower kind touches the tower's module and the config, never this one (see :mod:`mmcls.models.towers`).
Parameter groups come from the parts: the text tower is ``text``, the vision tower ``vision``, every other part of
the encoder (the frame layers, any block added later) ``fusion``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmcls.models.fusion import FRAME_TOKEN_TYPE, FrameEmbedder
from mmcls.models.pixels import normalize_frames
from mmcls.models.temporal import FrameLayout
from mmcls.models.towers import TextTower, VisionTower

MODES = ("fusion", "text", "video")
# The encoder's parts (its direct submodules): what pretraining hands to finetuning (model.init_parts).
ENCODER_PARTS = ("text", "vision", "frame_embedder")
PARAM_GROUPS = ("vision", "text", "fusion", "heads")


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


class MultimodalEncoder(nn.Module):
    """Text tower + vision tower + frame layers, fused by the text tower's transformer.

    ``vision`` None with frames (``mode != "text"``) means cached features of width ``frame_dim``
    (``reads_features``); with a tower, ``frame_dim`` is its ``out_dim``.
    """

    def __init__(self, text: TextTower, vision: VisionTower | None, *, mode: str = "fusion", max_frames: int = 8,
                 frame_dim: int | None = None, cls_id: int = 2, sep_id: int = 3) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.cls_id, self.sep_id = cls_id, sep_id
        self.text = text
        uses_frames = mode != "text"
        if uses_frames and vision is not None:
            frame_dim = vision.out_dim
        if uses_frames and frame_dim is None:
            raise ValueError("frame_dim is needed without a vision tower (frame features)")
        if uses_frames and text.num_token_types <= FRAME_TOKEN_TYPE:
            raise ValueError(f"the text tower has {text.num_token_types} token type(s); frames need type "
                             f"{FRAME_TOKEN_TYPE}")
        self.vision = vision if uses_frames else None
        config = text.config
        self.frame_embedder = (FrameEmbedder(frame_dim, text.hidden_size, max_frames, config.hidden_dropout_prob,
                                             config.layer_norm_eps) if uses_frames else None)
        self.reads_features = uses_frames and self.vision is None

    @property
    def hidden_size(self) -> int:
        return self.text.hidden_size

    @property
    def frame_dim(self) -> int | None:
        """Width of the per-frame features (the tower's output or the cached features); None in text mode."""
        return None if self.frame_embedder is None else int(self.frame_embedder.proj.in_features)

    @property
    def max_frames(self) -> int | None:
        return None if self.frame_embedder is None else self.frame_embedder.max_frames

    def set_reads_features(self, enable: bool) -> None:
        """Take ``frames`` as cached features ``[B, T, D]`` (True) or pixels (False: needs a vision tower)."""
        if not enable and self.vision is None and self.frame_embedder is not None:
            raise ValueError("this encoder has no vision tower: it reads frame features only")
        self.reads_features = bool(enable) and self.frame_embedder is not None

    # ------------------------------------------------------------------------------------------------------------
    # frames

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        weight = self.frame_embedder.proj.weight
        return torch.zeros(shape, dtype=weight.dtype, device=weight.device)

    def _given_features(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3:
            raise ValueError(f"frame features must be [B, T, D], got {tuple(features.shape)}")
        weight = self.frame_embedder.proj.weight
        feats = features.to(device=weight.device, dtype=weight.dtype)
        return torch.where(frame_mask.unsqueeze(-1), feats, torch.zeros((), dtype=feats.dtype, device=feats.device))

    def frame_features(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[B, T, D]``; zeros at masked frames.

        Reading pixels, ``frames`` ``[B, T, 3, S, S]`` (uint8, normalised here on their device with the tower's
        statistics; float = already normalised) go through the vision tower as one flat batch of the valid frames
        only; a temporal tower (``model.temporal``) is told which of them are neighbouring frames of one video
        (:class:`~mmcls.models.temporal.FrameLayout`). Reading features, ``frames`` ``[B, T, D]`` are used as they
        are.
        """
        if self.frame_embedder is None:
            raise ValueError("a text-mode encoder has no frame layers")
        if self.reads_features:
            return self._given_features(frames, frame_mask)
        if frames.ndim != 5:
            raise ValueError(f"this encoder reads pixel frames [B, T, 3, S, S], got {tuple(frames.shape)} (pass "
                             "cached features as features=, or build it for data.frame_source=feats)")
        vision = self.vision
        b, t = frame_mask.shape
        flat = frames.reshape(b * t, *frames.shape[2:])  # [B*T, 3, S, S]
        index = frame_mask.reshape(-1).nonzero().squeeze(1)  # [n] positions of the valid frames
        # A traced graph (ONNX export) runs without this Python: it must take a batch without any valid frame too,
        # which a tower's reshapes of zero rows cannot. It encodes one blank frame more, a video of its own, and
        # drops it: every other row is computed exactly as here.
        blank = torch.jit.is_tracing()
        if index.numel() == 0 and not blank:  # no valid frame in the whole batch: nothing to encode
            return self._zeros((b, t, vision.out_dim))
        pixels = flat.index_select(0, index)  # [n, 3, S, S]
        if blank:
            pixels = torch.cat([pixels, torch.zeros_like(flat[:1])])  # [n + 1, 3, S, S]
        if pixels.dtype == torch.uint8:
            pixels = normalize_frames(pixels, vision.mean, vision.std, self.frame_embedder.proj.weight.dtype)
        layout = None
        if vision.temporal:  # neighbours among the n (the blank frame has none)
            layout = FrameLayout.of_positions(index, t, blank_tail=blank)
        embedded = vision(pixels, layout) if layout is not None else vision(pixels)  # [n, D]
        if blank:
            embedded = embedded[:-1]
        out = embedded.new_zeros((b * t, embedded.shape[-1])).index_copy(0, index, embedded)  # [B*T, D]
        return out.view(b, t, -1)  # [B, T, D]

    def _video_text(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Video mode: every sample's text becomes ``[CLS] [SEP]`` (``[B, 2]``), so only frames carry information."""
        device = self.text.word_embeddings.device
        ids = torch.tensor([[self.cls_id, self.sep_id]], dtype=torch.long, device=device).expand(batch_size, 2)
        return ids, torch.ones_like(ids)

    # ------------------------------------------------------------------------------------------------------------
    # forward

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor | None = None,
               frame_mask: torch.Tensor | None = None, repeats: int = 1, features: torch.Tensor | None = None
               ) -> FusedSequence:
        """Embed text and frames, concatenate ``[text, frames]`` and run the fusion transformer over the valid
        positions.

        ``frames``: read as :attr:`reads_features` says; ``features`` ``[B, T, D]`` instead: frame features the
        caller already has (the vision tower does not run). ``repeats`` R > 1 encodes the batch R times in one pass
        (``[R * B, ...]`` outputs, copy r of sample i at row r * B + i) with independent dropout in the fusion, but
        runs the vision tower once: R-Drop's two passes at the cost of one vision pass.
        """
        if self.mode == "video":
            input_ids, attention_mask = self._video_text(input_ids.shape[0])
        if repeats > 1:
            input_ids, attention_mask = input_ids.repeat(repeats, 1), attention_mask.repeat(repeats, 1)  # [R*B, L]
        hidden = self.text.embed(input_ids)  # [B, L, H]
        mask = attention_mask.bool()  # [B, L]
        num_text = hidden.shape[1]
        projected, feats = None, None
        given = features if features is not None else frames
        if self.frame_embedder is not None and given is not None:
            if frame_mask is None:
                frame_mask = torch.ones(given.shape[:2], dtype=torch.bool, device=given.device)
            frame_mask = frame_mask.to(device=hidden.device, dtype=torch.bool)
            feats = (self._given_features(features, frame_mask) if features is not None
                     else self.frame_features(frames, frame_mask))  # [B, T, D]
            if repeats > 1:
                feats, frame_mask = feats.repeat(repeats, 1, 1), frame_mask.repeat(repeats, 1)  # [R*B, T, ...]
            projected = self.frame_embedder.project(feats)  # [B, T, H]
            frame_tokens = self.frame_embedder(projected, self.text.token_type(FRAME_TOKEN_TYPE))  # [B, T, H]
            hidden = torch.cat([hidden, frame_tokens.to(hidden.dtype)], dim=1)  # [B, L + T, H]
            mask = torch.cat([mask, frame_mask], dim=1)  # [B, L + T]
        else:
            frame_mask = None
        hidden = self.text.fuse(hidden, mask)  # [B, L + T, H]
        return FusedSequence(hidden, mask, num_text, projected, frame_mask, feats)

    def encode_frames(self, features: torch.Tensor, frame_mask: torch.Tensor) -> FusedSequence:
        """Frame features ``[B, T, D]`` alone through the encoder, behind an empty ``[CLS] [SEP]`` text as in video
        mode (a caller that has the features does not run the tower again)."""
        empty_ids, empty_mask = self._video_text(frame_mask.shape[0])  # [B, 2]
        return self.encode(empty_ids, empty_mask, frame_mask=frame_mask, features=features)

    forward = encode

    # ------------------------------------------------------------------------------------------------------------
    # switches and groups

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in both towers (recompute activations in the backward pass)."""
        self.text.set_grad_checkpointing(enable)
        if self.vision is not None:
            self.vision.set_grad_checkpointing(enable)

    def set_channels_last(self, enable: bool = True) -> None:
        """channels_last weights and frames for the vision tower (no-op without one)."""
        if self.vision is not None:
            self.vision.set_channels_last(enable)

    def part_of(self, child: nn.Module) -> str:
        """The parameter group of a direct part: ``text``, ``vision`` or ``fusion`` (anything else)."""
        if isinstance(child, TextTower):
            return "text"
        if isinstance(child, VisionTower):
            return "vision"
        return "fusion"

    def named_parameter_groups(self, prefix: str = "") -> dict[str, list[tuple[str, nn.Parameter]]]:
        """``{group: [(name, parameter)]}`` over ``text``, ``vision``, ``fusion`` (names under ``prefix``)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"vision": [], "text": [], "fusion": []}
        for child_name, child in self.named_children():
            groups[self.part_of(child)] += [(f"{prefix}{child_name}.{name}", p)
                                            for name, p in child.named_parameters()]
        return groups


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """All parameters of a model built around an ``encoder`` (frozen ones too), each in exactly one of
    ``vision``, ``text``, ``fusion``, ``heads``: the encoder's parts say their group; every parameter outside the
    encoder belongs to a head.

    ``text`` is the text tower (embeddings and transformer: the transformer is also the fusion, but it is
    pretrained and wants the small text learning rate); ``fusion`` is the new frame layers.
    """
    encoder: MultimodalEncoder = model.encoder
    group_of = {id(p): group for group, named in encoder.named_parameter_groups().items() for _, p in named}
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in PARAM_GROUPS}
    for _, param in model.named_parameters():  # shared parameters are listed once
        groups[group_of.get(id(param), "heads")].append(param)
    return groups
