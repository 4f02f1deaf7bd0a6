"""Frame encoders: one embedding per frame from an open_clip CLIP ViT or any timm backbone.

Both families are wrapped in :class:`VisionTower`, so the classifier sees one interface: normalised float pixels
``[N, 3, H, W]`` in, ``[N, out_dim]`` out, plus the pixel ``mean``/``std`` the tower expects (the classifier
normalises uint8 frames on the device with them).

CLIP towers return the CLIP image embedding, i.e. the pooled token *after* the visual projection (``embed_dim``,
512 for ViT-B/16 and B/32): it is the representation CLIP was trained to align with text, it is what the WBDC
rank-8 solution fed its fusion BERT, and it exists for every open_clip vision tower (ViT, ModifiedResNet, timm).

Builders are plain functions in :data:`VISION_BUILDERS`, keyed by ``model.vision.kind``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mmcls.config import VisionConfig
from mmcls.data.transforms import NORMALIZATIONS
from mmcls.errors import ConfigError
from mmcls.models.weights import load_exact, read_state_dict, strip_prefix

Stats = tuple[float, float, float]


class VisionTower(nn.Module):
    """A frame encoder with a fixed output width and the pixel statistics it was (pre)trained with."""

    def __init__(self, backbone: nn.Module, out_dim: int, mean: Stats, std: Stats, kind: str, name: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_dim = out_dim
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.kind, self.name = kind, name
        self.channels_last = False

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[N, 3, H, W]`` -> frame embeddings ``[N, out_dim]``."""
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.backbone(pixels)

    def set_channels_last(self, enable: bool = True) -> None:
        """Weights and input frames in channels_last (NHWC) memory format, which convolution kernels prefer."""
        self.channels_last = enable
        self.backbone.to(memory_format=torch.channels_last if enable else torch.contiguous_format)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass (both open_clip and timm towers support it)."""
        if hasattr(self.backbone, "set_grad_checkpointing"):
            self.backbone.set_grad_checkpointing(enable)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, name={self.name}, out_dim={self.out_dim}"

    def fingerprint(self) -> str:
        """SHA-256 of the tower's weights (names, shapes, float32 values): which tower made a feature cache."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def _stats(cfg: VisionConfig, own: tuple[Stats, Stats]) -> tuple[Stats, Stats]:
    """``model.vision.normalization``: auto = the tower's own statistics, else a named pair."""
    return own if cfg.normalization == "auto" else NORMALIZATIONS[cfg.normalization]


def _check_image_size(cfg: VisionConfig, key: str, frame_size: int) -> None:
    value = cfg.overrides.get(key)
    if value is not None and value != frame_size:
        raise ConfigError(f"model.vision.overrides.{key}: the tower's image size follows data.frame_size "
                          f"({frame_size}); drop the override or set data.frame_size={value}")


# ----------------------------------------------------------------------------------------------------------------
# open_clip


# Override keys that are not vision_cfg fields: the CLIP embedding width, heads (open_clip counts head_width) and
# quick_gelu (the activation OpenAI's CLIP weights were trained with; the ``-quickgelu`` model names set it).
_CLIP_EXTRA_KEYS = ("embed_dim", "heads", "quick_gelu")


def _clip_vision_cfg(cfg: VisionConfig, frame_size: int) -> tuple[dict[str, Any], int, bool]:
    """The named model's ``vision_cfg`` with ``model.vision.overrides`` merged in, its embed_dim and quick_gelu."""
    from open_clip import get_model_config
    from open_clip.model import CLIPVisionCfg

    if cfg.name.startswith("hf-hub:"):
        raise ConfigError(f"model.vision.name: {cfg.name!r} needs the network; use a built-in open_clip model name "
                          "(ViT-B-16 ...) or 'local-dir:PATH', and a local model.vision.pretrained file")
    try:
        model_cfg = get_model_config(cfg.name)
    except (OSError, ValueError) as exc:  # 'local-dir:PATH' without a readable open_clip_config.json
        raise ConfigError(f"model.vision.name: cannot read the open_clip config of {cfg.name!r}: {exc}") from None
    if model_cfg is None or "vision_cfg" not in model_cfg:
        raise ConfigError(f"model.vision.name: unknown open_clip model {cfg.name!r} (see open_clip.list_models())")
    vision_cfg = dict(model_cfg["vision_cfg"])
    overrides = dict(cfg.overrides)
    embed_dim = int(overrides.pop("embed_dim", model_cfg["embed_dim"]))
    heads = overrides.pop("heads", None)
    quick_gelu = overrides.pop("quick_gelu", model_cfg.get("quick_gelu", False))
    if not isinstance(quick_gelu, bool):
        raise ConfigError(f"model.vision.overrides.quick_gelu: expected true or false, got {quick_gelu!r}")
    allowed = {f.name for f in dataclasses.fields(CLIPVisionCfg)}
    for name in overrides:
        if name not in allowed:
            raise ConfigError(f"model.vision.overrides.{name}: not an open_clip vision_cfg key (choose from "
                              f"{sorted(allowed | set(_CLIP_EXTRA_KEYS))})")
    _check_image_size(cfg, "image_size", frame_size)
    vision_cfg.update(overrides)
    vision_cfg["image_size"] = frame_size
    if heads is not None:
        width = int(vision_cfg.get("width", 768))
        if not isinstance(heads, int) or heads < 1 or width % heads:
            raise ConfigError(f"model.vision.overrides.heads: must divide width {width}, got {heads!r}")
        vision_cfg["head_width"] = width // heads
    return vision_cfg, embed_dim, quick_gelu


def build_clip_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True) -> VisionTower:
    """open_clip vision tower ``cfg.name`` at ``frame_size`` px; visual weights from ``cfg.pretrained`` if set.

    The checkpoint may be a whole CLIP model (its ``visual.*`` entries are used; open_clip checkpoints, or OpenAI's
    TorchScript ``.pt`` files) or a
    vision-only state dict. Position embeddings are resized when the checkpoint was trained at another image size.
    OpenAI's weights (``pretrained='openai'`` in open_clip) were trained with QuickGELU: use the ``-quickgelu``
    model name (``ViT-B-16-quickgelu``) or ``overrides.quick_gelu: true`` with them, or the activations differ.
    """
    from open_clip.model import _build_vision_tower, resize_pos_embed

    vision_cfg, embed_dim, quick_gelu = _clip_vision_cfg(cfg, frame_size)
    try:
        visual = _build_vision_tower(embed_dim, vision_cfg, quick_gelu=quick_gelu)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"model.vision.overrides: cannot build open_clip {cfg.name} with {cfg.overrides}: "
                          f"{exc}") from None
    if load_weights and cfg.pretrained:
        state = read_state_dict(cfg.pretrained, "model.vision.pretrained")
        if any(k.startswith("visual.") for k in state):
            state = strip_prefix(state, "visual.")
        elif any(k.startswith("backbone.") for k in state):  # saved from a VisionTower
            state = strip_prefix(state, "backbone.")
        holder = {f"visual.{k}": v for k, v in state.items()}
        resize_pos_embed(holder, types.SimpleNamespace(visual=visual))  # no-op at the trained size
        load_exact(visual, strip_prefix(holder, "visual."), "model.vision.pretrained", cfg.pretrained)
    mean, std = _stats(cfg, NORMALIZATIONS["clip"])
    return VisionTower(visual, embed_dim, mean, std, kind="clip", name=cfg.name)


# ----------------------------------------------------------------------------------------------------------------
# timm


def _create_timm(name: str, frame_size: int, overrides: dict[str, Any]) -> nn.Module:
    """``timm.create_model`` without a classifier; ``img_size=frame_size`` for models that take it (ViT, Swin ...)."""
    import timm

    kwargs = dict(overrides)
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, img_size=frame_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise ConfigError(f"model.vision.overrides: {name} does not take these arguments: {exc}") from None
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.vision.overrides: {name} does not take these arguments: {exc}") from None


def _timm_filter(model: nn.Module) -> Callable[[dict, nn.Module], dict] | None:
    """The model family's checkpoint converter (original formats, position-embedding resizing), when it has one."""
    return getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)


def _load_timm_weights(model: nn.Module, path: str) -> None:
    """Strictly load a local timm weights file; classifier weights in the file are dropped (the tower has none)."""
    key = "model.vision.pretrained"
    state = read_state_dict(path, key)
    if any(k.startswith("backbone.") for k in state):  # saved from a VisionTower
        state = strip_prefix(state, "backbone.")
    filter_fn = _timm_filter(model)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as exc:  # converters fail on foreign checkpoints with arbitrary errors
            raise ConfigError(f"{key}: {path} is not a checkpoint of {type(model).__name__}: {exc!r}") from None
    classifiers = model.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if k in own or not any(k.startswith(f"{c}.") for c in classifiers)}
    load_exact(model, state, key, path)


def build_timm_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True) -> VisionTower:
    """timm backbone ``cfg.name`` without its classifier (pooled features); local weights from ``cfg.pretrained``."""
    import timm

    if not timm.is_model(cfg.name):
        raise ConfigError(f"model.vision.name: unknown timm model {cfg.name!r} (see timm.list_models())")
    _check_image_size(cfg, "img_size", frame_size)
    overrides = {k: v for k, v in cfg.overrides.items() if k != "img_size"}
    model = _create_timm(cfg.name, frame_size, overrides)
    if load_weights and cfg.pretrained:
        _load_timm_weights(model, cfg.pretrained)
    out_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    own = (tuple(model.pretrained_cfg.get("mean", NORMALIZATIONS["imagenet"][0])),
           tuple(model.pretrained_cfg.get("std", NORMALIZATIONS["imagenet"][1])))
    mean, std = _stats(cfg, own)
    return VisionTower(model, out_dim, mean, std, kind="timm", name=cfg.name)


VisionBuilder = Callable[[VisionConfig, int, bool], VisionTower]

VISION_BUILDERS: dict[str, VisionBuilder] = {
    "clip": build_clip_tower,
    "timm": build_timm_tower,
}


def build_vision_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True) -> VisionTower:
    """The frame encoder of ``model.vision`` for square frames of ``frame_size`` px.

    ``load_weights=False`` skips ``cfg.pretrained`` (a trained model is rebuilt, then its own weights are loaded).
    """
    if cfg.kind not in VISION_BUILDERS:
        raise ConfigError(f"model.vision.kind: expected one of {sorted(VISION_BUILDERS)}, got {cfg.kind!r}")
    return VISION_BUILDERS[cfg.kind](cfg, frame_size, load_weights)
