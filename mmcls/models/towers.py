"""The tower contracts: what the rest of mmcls may ask a vision or a text tower, and nothing else.

A tower owns everything that depends on its architecture, so no other module looks inside it:

================  =================================================  =============================================
                  vision tower (:class:`VisionTower`)                text tower (:class:`TextTower`)
================  =================================================  =============================================
width             ``out_dim`` (one embedding per frame)              ``hidden_size`` (also the fusion width)
inputs            ``mean`` / ``std``: the pixel statistics            ``word_embeddings``: the token table (the
                  uint8 frames are normalised with                    parameter FGM / PGD perturb; MLM ties to it)
depths            ``layer_depths()``: ``{parameter name: depth}``     the same
                  (0 = stem .. ``top_depth``), for layer-wise
                  learning-rate decay and ``train.freeze.layers``
memory / speed    ``set_grad_checkpointing``, ``set_channels_last``   ``set_grad_checkpointing``
time              ``set_temporal`` (``model.temporal``), then        --
                  ``forward(pixels, layout)``
================  =================================================  =============================================

Parameter names in a depth map are relative to the tower (``backbone.blocks.0.mlp.fc1.weight``) and must cover
every parameter of the tower: :func:`check_vision_tower` enforces it when the tower is built, so a tower whose
depths are unknown fails at build time, never silently at depth 0.

Adding a vision tower kind (two files)
--------------------------------------

1. ``mmcls/models/vision.py`` (or a module it imports): a builder ``(VisionConfig, frame_size, load_weights,
   config) -> VisionTower`` (``config``: a stored :attr:`VisionTower.config` to rebuild from, else None) that wraps
   the backbone (``backbone(pixels [N, 3, S, S]) -> [N, out_dim]``) with its width, pixel statistics and depth map
   (``VisionTower(backbone, out_dim, mean, std, kind, name, depths=...)``, or a subclass overriding
   :meth:`VisionTower.layer_depths`), registered in ``VISION_BUILDERS`` under the kind's name;
2. ``mmcls/config.py``: the kind in ``VisionConfig.kind``'s choices.

Time (``model.temporal``) needs nothing from a kind: :meth:`VisionTower.set_temporal` widens the backbone's first
3-channel convolution and hooks the shift into blocks it recognises by their layers' names (see
:mod:`mmcls.models.temporal`); a kind without either gets a ConfigError naming the key.

A text tower kind implements :class:`TextTower` (see :class:`mmcls.models.text.BertTower`) and is built in
``mmcls/models/text.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmcls.config import VisionConfig
from mmcls.errors import ConfigError
from mmcls.models.pixels import Stats
from mmcls.models.temporal import (
    FRAME_DIFF_CHANNELS,
    FrameLayout,
    TemporalShift,
    check_shift_width,
    frame_differences,
    widen_stem,
)


def top_of(depths: Mapping[str, int]) -> int:
    """The highest depth of a depth map (0 for an empty one)."""
    return max(depths.values(), default=0)


class VisionTower(nn.Module):
    """A frame encoder: normalised float pixels ``[N, 3, H, W]`` -> ``[N, out_dim]``, with the pixel statistics it
    was (pre)trained with and the depth of every parameter.

    ``depths`` maps the backbone's parameter names to their depth (0 = stem); a subclass may compute them in
    :meth:`layer_depths` instead. The weights live under ``backbone.`` (the state-dict layout of every kind).
    """

    def __init__(self, backbone: nn.Module, out_dim: int, mean: Stats, std: Stats, kind: str, name: str,
                 depths: Mapping[str, int] | None = None, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_dim = int(out_dim)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.kind, self.name = kind, name
        self.channels_last = False
        self._depths = None if depths is None else {f"backbone.{k}": int(v) for k, v in depths.items()}
        #: JSON-able architecture the kind needs, besides the ``model.vision`` keys, to rebuild this tower without
        #: its original files (a model folder stores it as ``vision_config.json``); None when the keys suffice
        self.config = None if config is None else dict(config)
        #: ``model.temporal`` (:meth:`set_temporal`): frame differences as extra stem channels, the shift's hooks
        self.frame_diff = "none"
        self.shift: TemporalShift | None = None

    @property
    def temporal(self) -> bool:
        """Whether the tower looks across frames (it then wants each frame's :class:`FrameLayout`)."""
        return self.frame_diff != "none" or self.shift is not None

    def set_temporal(self, frame_diff: str = "none", shift: float = 0.0) -> None:
        """Switch on ``model.temporal`` once, at build time (see :mod:`mmcls.models.temporal`): widen the stem by
        the difference channels (zero weights: the tower computes what it did) and hook the shift into its blocks.
        ConfigError naming the key when the tower cannot."""
        if self.temporal:
            raise ValueError("the temporal switches of a vision tower are set once")
        what = f"{self.kind} vision tower {self.name}"
        if frame_diff != "none":
            with torch.random.fork_rng(devices=[]):  # the layers built next initialise as without the switch
                widen_stem(self.backbone, FRAME_DIFF_CHANNELS[frame_diff], what)
            self.frame_diff = frame_diff
        if shift > 0:
            self.shift = TemporalShift(self.backbone, shift, what)
            check_shift_width(self, shift)

    def forward(self, pixels: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        """Normalised pixels ``[N, 3, H, W]`` -> frame embeddings ``[N, out_dim]``.

        ``layout``: which rows are neighbouring frames of one video (the encoder's flat batch of valid frames);
        only a :attr:`temporal` tower reads it, and without it every row is a one-frame video.
        """
        if self.temporal:
            if layout is None:
                layout = FrameLayout.single(pixels.shape[0], pixels.device)
            if layout.size != pixels.shape[0]:
                raise ValueError(f"a layout of {layout.size} frames for {pixels.shape[0]} frames")
            if self.frame_diff != "none":
                pixels = torch.cat([pixels, frame_differences(pixels, layout, self.frame_diff)], dim=1)
            if self.shift is not None:
                self.shift.layout = layout  # kept: checkpointed blocks recompute with it in the backward pass
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.backbone(pixels)

    def layer_depths(self) -> dict[str, int]:
        """``{parameter name in this tower: depth}``; NotImplementedError when the kind gave none."""
        if self._depths is None:
            raise NotImplementedError(f"the {self.kind} vision tower {self.name} has no layer depths")
        return dict(self._depths)

    @property
    def top_depth(self) -> int:
        return top_of(self.layer_depths())

    def set_channels_last(self, enable: bool = True) -> None:
        """Weights and input frames in channels_last (NHWC) memory format, which convolution kernels prefer."""
        self.channels_last = enable
        self.backbone.to(memory_format=torch.channels_last if enable else torch.contiguous_format)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass (open_clip and timm backbones support it)."""
        if hasattr(self.backbone, "set_grad_checkpointing"):
            self.backbone.set_grad_checkpointing(enable)

    def extra_repr(self) -> str:
        temporal = ""
        if self.temporal:
            temporal = f", frame_diff={self.frame_diff}, shift={self.shift.fraction if self.shift else 0}"
        return f"kind={self.kind}, name={self.name}, out_dim={self.out_dim}{temporal}"

    def fingerprint(self) -> str:
        """SHA-256 of the tower's weights (names, shapes, float32 values): which tower made a feature cache."""
        digest = hashlib.sha256()
        if self.temporal:  # the shift has no weights: the switches themselves decide the features too
            digest.update(f"temporal frame_diff={self.frame_diff} shift={self.shift.fraction if self.shift else 0}"
                          .encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def set_transformers_checkpointing(model: nn.Module, enable: bool) -> None:
    """Switch a transformers model's own activation checkpointing (non-reentrant) on or off."""
    if enable:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def check_vision_tower(tower: object, cfg: VisionConfig) -> VisionTower:
    """``tower`` if it keeps the contract (a :class:`VisionTower` with a width, pixel statistics and a depth for
    every parameter), else a ConfigError naming ``model.vision.kind`` / ``model.vision.name``."""
    what = f"model.vision.kind={cfg.kind} (model.vision.name={cfg.name})"
    if not isinstance(tower, VisionTower):
        raise ConfigError(f"{what}: the builder returned a {type(tower).__name__}, not a VisionTower")
    if tower.out_dim < 1 or len(tower.mean) != 3 or len(tower.std) != 3:
        raise ConfigError(f"{what}: the tower needs out_dim >= 1 and 3-channel mean / std, got out_dim "
                          f"{tower.out_dim}, mean {tower.mean}, std {tower.std}")
    try:
        depths = tower.layer_depths()
    except NotImplementedError:
        raise ConfigError(f"{what}: the tower gives no layer depths, which train.layer_decay and "
                          "train.freeze.layers need; its builder must pass depths= (see mmcls/models/towers.py)"
                          ) from None
    names = {name for name, _ in tower.named_parameters()}
    missing, unknown = sorted(names - set(depths)), sorted(set(depths) - names)
    if missing or unknown:
        raise ConfigError(f"{what}: the tower's depth map does not match its parameters ({len(missing)} without a "
                          f"depth, e.g. {missing[:2]}; {len(unknown)} unknown, e.g. {unknown[:2]})")
    return tower


class TextTower(nn.Module):
    """The text tower, which is also the fusion transformer (single stream): token embeddings in, fused states out.

    Subclasses implement the methods below; :class:`mmcls.models.text.BertTower` is the one kind.
    """

    #: the architecture's own config object (saved next to the weights, e.g. a ``BertConfig``)
    config: object

    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    @property
    def max_positions(self) -> int:
        """Text positions the tower has (``data.max_text_len`` must fit)."""
        raise NotImplementedError

    @property
    def num_token_types(self) -> int:
        raise NotImplementedError

    @property
    def word_embeddings(self) -> nn.Parameter:
        """The token embedding table ``[V, H]`` (adversarial training perturbs it, MLM decodes with it)."""
        raise NotImplementedError

    @property
    def word_embedding_layer(self) -> nn.Module:
        """The module whose output is the token embeddings (a forward hook there sees them)."""
        raise NotImplementedError

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` -> embeddings ``[B, L, H]`` (token, position and type-0 embeddings)."""
        raise NotImplementedError

    def token_type(self, index: int) -> torch.Tensor:
        """The embedding ``[H]`` of token type ``index`` (frames use type 1)."""
        raise NotImplementedError

    def fuse(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer over embedded positions ``[B, N, H]`` with bool ``mask`` ``[B, N]`` -> ``[B, N, H]``."""
        raise NotImplementedError

    def layer_depths(self) -> dict[str, int]:
        """``{parameter name in this tower: depth}`` (0 = embeddings, 1..L = layers)."""
        raise NotImplementedError

    @property
    def top_depth(self) -> int:
        return top_of(self.layer_depths())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        raise NotImplementedError
