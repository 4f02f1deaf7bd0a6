"""Frame encoders: one embedding per frame from an open_clip CLIP ViT or any timm backbone.

Both families are wrapped in :class:`VisionTower`, so the classifier sees one interface: normalised float pixels
``[N, 3, H, W]`` in, ``[N, out_dim]`` out, plus the pixel ``mean``/``std`` the tower expects (the classifier
normalises uint8 frames on the device with them).

CLIP towers return the CLIP image embedding, i.e. the pooled token *after* the visual projection (``embed_dim``,
512 for ViT-B/16 and B/32): it is the representation CLIP was trained to align with text, it is what the WBDC
rank-8 solution fed its fusion BERT, and it exists for every open_clip vision tower (ViT, ModifiedResNet, timm).

Builders are plain functions in :data:`VISION_BUILDERS`, keyed by ``model.vision.kind``; each gives its tower the
depth of every parameter (layer-wise decay, ``train.freeze.layers``): 0 = stem / embeddings, 1..L = the blocks, and
L + 1 for parameters after the last block (CLIP's ``ln_post`` and ``proj``). timm backbones (also inside open_clip
towers such as SigLIP) follow timm's own fine-grained grouping, which puts the final norm with the last block and
pooling / projection layers after it; a timm model without that grouping is refused at build time.

To add a kind, see :mod:`mmcls.models.towers` (a builder here, registered in :data:`VISION_BUILDERS`, and the kind's
name in ``mmcls/config.py``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmcls.config import VisionConfig
from mmcls.errors import ConfigError
from mmcls.models.hf_vision import build_hf_tower
from mmcls.models.pixels import NORMALIZATIONS, Stats
from mmcls.models.towers import VisionTower, check_vision_tower, top_of
from mmcls.models.weights import load_exact, read_state_dict, strip_prefix, weights_in_folder

__all__ = ["VISION_BUILDERS", "VisionTower", "build_clip_tower", "build_timm_tower", "build_vision_tower"]


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


def _named_clip_cfg(cfg: VisionConfig) -> dict[str, Any]:
    """The open_clip model config of ``model.vision.name``."""
    from open_clip import get_model_config

    if cfg.name.startswith("hf-hub:"):
        raise ConfigError(f"model.vision.name: {cfg.name!r} needs the network; use a built-in open_clip model name "
                          "(ViT-B-16 ...) or a local open_clip folder as model.vision.pretrained")
    try:
        model_cfg = get_model_config(cfg.name)
    except (OSError, ValueError) as exc:  # 'local-dir:PATH' without a readable open_clip_config.json
        raise ConfigError(f"model.vision.name: cannot read the open_clip config of {cfg.name!r}: {exc}") from None
    if model_cfg is None or "vision_cfg" not in model_cfg:
        raise ConfigError(f"model.vision.name: unknown open_clip model {cfg.name!r} (see open_clip.list_models())")
    return model_cfg


# open_clip folders as distributed (the hub's laion/* and timm/* open_clip repositories): config, then weights
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                     "pytorch_model.bin")


@dataclasses.dataclass
class _ClipSource:
    """Where a CLIP tower's architecture and weights come from: the named model (+ a weights file), an open_clip
    folder, or the architecture a model folder stored (``VisionTower.config``)."""

    model_cfg: dict[str, Any]
    weights: str | None
    stats: tuple[Stats, Stats]
    stored: dict[str, Any] | None  # the tower's config when the architecture is not the named model's


def _clip_source(cfg: VisionConfig, config: dict[str, Any] | None) -> _ClipSource:
    clip_stats = NORMALIZATIONS["clip"]
    if config is not None:
        return _ClipSource(config["model_cfg"], None, (tuple(config["mean"]), tuple(config["std"])), config)
    if not cfg.pretrained or not Path(cfg.pretrained).is_dir():
        return _ClipSource(_named_clip_cfg(cfg), cfg.pretrained, clip_stats, None)
    folder = Path(cfg.pretrained)
    key = "model.vision.pretrained"
    if not (folder / OPEN_CLIP_CONFIG).is_file():
        hint = (" (a transformers model folder: use model.vision.kind=hf)" if (folder / "config.json").is_file()
                else "")
        raise ConfigError(f"{key}: {folder} is a folder without {OPEN_CLIP_CONFIG}{hint}; give an open_clip folder "
                          "or a weights file")
    try:
        spec = json.loads((folder / OPEN_CLIP_CONFIG).read_text())
        model_cfg, preprocess = spec["model_cfg"], spec.get("preprocess_cfg") or {}
        if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg:
            raise ValueError("no model_cfg.vision_cfg")
        stats = (tuple(preprocess.get("mean", clip_stats[0])), tuple(preprocess.get("std", clip_stats[1])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{key}: {folder / OPEN_CLIP_CONFIG} is not an open_clip config: {exc}") from None
    weights = weights_in_folder(folder, key, OPEN_CLIP_WEIGHTS)
    stored = {"model_cfg": model_cfg, "mean": list(stats[0]), "std": list(stats[1])}
    return _ClipSource(model_cfg, str(weights), stats, stored)


def _clip_vision_cfg(cfg: VisionConfig, frame_size: int, model_cfg: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
    """``model_cfg``'s ``vision_cfg`` with ``model.vision.overrides`` merged in, its embed_dim and quick_gelu."""
    from open_clip.model import CLIPVisionCfg

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


def build_clip_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True,
                     config: dict[str, Any] | None = None) -> VisionTower:
    """open_clip vision tower at ``frame_size`` px; visual weights from ``cfg.pretrained`` if set.

    ``cfg.pretrained`` is a weights file of the model named ``cfg.name``: a whole CLIP model (its ``visual.*``
    entries are used; open_clip checkpoints, or OpenAI's TorchScript ``.pt`` files) or a vision-only state dict. Or
    it is an open_clip folder as distributed (``open_clip_config.json`` + ``open_clip_model.safetensors`` or
    ``open_clip_pytorch_model.bin``): the architecture and pixel statistics then come from the folder's config
    (``cfg.name`` is not used) and travel with a trained model (``config``). Position embeddings are resized when
    the checkpoint was trained at another image size. OpenAI's weights (``pretrained='openai'`` in open_clip) were
    trained with QuickGELU: use the ``-quickgelu`` model name (``ViT-B-16-quickgelu``) or
    ``overrides.quick_gelu: true`` with them, or the activations differ.
    """
    from open_clip.model import resize_pos_embed

    source = _clip_source(cfg, config)
    vision_cfg, embed_dim, quick_gelu = _clip_vision_cfg(cfg, frame_size, source.model_cfg)
    try:
        visual = _open_clip_visual(embed_dim, vision_cfg, quick_gelu)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"model.vision.overrides: cannot build open_clip {cfg.name} with {cfg.overrides}: "
                          f"{exc}") from None
    if load_weights and source.weights:
        state = read_state_dict(source.weights, "model.vision.pretrained", cfg.trust_torchscript)
        if any(k.startswith("visual.") for k in state):
            state = strip_prefix(state, "visual.")
        elif any(k.startswith("backbone.") for k in state):  # saved from a VisionTower
            state = strip_prefix(state, "backbone.")
        holder = {f"visual.{k}": v for k, v in state.items()}
        resize_pos_embed(holder, types.SimpleNamespace(visual=visual))  # no-op at the trained size
        load_exact(visual, strip_prefix(holder, "visual."), "model.vision.pretrained", source.weights)
    mean, std = _stats(cfg, source.stats)
    name = cfg.name if source.stored is None else Path(cfg.pretrained or "stored").name
    return VisionTower(visual, embed_dim, mean, std, kind="clip", name=name, depths=_clip_depths(visual, cfg),
                       config=source.stored)


# A text tower as small as open_clip builds: the CLIP model is only a way to build its vision tower.
_UNUSED_TEXT = {"context_length": 1, "vocab_size": 1, "width": 8, "heads": 1, "layers": 1}


def _open_clip_visual(embed_dim: int, vision_cfg: dict[str, Any], quick_gelu: bool) -> nn.Module:
    """open_clip's vision tower for ``vision_cfg``, built through the public ``open_clip.CLIP`` (with a tiny unused
    text tower) and taken as its ``visual``: the same modules and state-dict keys as open_clip's own models.

    The random-number stream is left where building the vision tower alone leaves it (the text tower's draws are
    undone), so the seeded initialisation of the layers built after it does not depend on how it was built.
    """
    import open_clip

    after_visual: list[torch.Tensor] = []

    def on_register(module: nn.Module, name: str, submodule: nn.Module) -> None:
        if name == "visual" and isinstance(module, open_clip.CLIP) and not after_visual:
            after_visual.append(torch.get_rng_state())

    hook = nn.modules.module.register_module_module_registration_hook(on_register)
    try:
        model = open_clip.CLIP(embed_dim, vision_cfg, dict(_UNUSED_TEXT), quick_gelu=quick_gelu)
    finally:
        hook.remove()
    if after_visual:
        torch.set_rng_state(after_visual[0])
    return model.visual


# open_clip vision towers: parameters after the last block (ViT: ln_post, proj, attentional pooler; ResNet: attnpool)
_CLIP_POST = ("ln_post", "proj", "attn_pool", "attn_pool_contrastive", "ln_pool", "attnpool")
_CLIP_BLOCK = re.compile(r"^(?:transformer\.resblocks\.(\d+)|layer(\d+))\.")


def _clip_depths(backbone: nn.Module, cfg: VisionConfig) -> dict[str, int]:
    """ViT: patch embedding 0, block i at i + 1, then the post-block layers; ModifiedResNet: stem 0, stage i at i;
    timm-backed towers (SigLIP ...): the trunk grouped by timm, its head above."""
    from open_clip.timm_model import TimmModel

    if isinstance(backbone, TimmModel):
        depths = {f"trunk.{name}": layer for name, layer in _timm_depths(backbone.trunk, cfg).items()}
        top = top_of(depths) + 1
        depths.update({name: top for name, _ in backbone.named_parameters() if name not in depths})
        return depths
    depths: dict[str, int] = {}
    post: list[str] = []
    for name, _ in backbone.named_parameters():
        match = _CLIP_BLOCK.match(name)
        if match:
            resblock, resnet_layer = match.groups()
            depths[name] = int(resblock) + 1 if resblock is not None else int(resnet_layer)
        elif name.split(".", 1)[0] in _CLIP_POST:
            post.append(name)
        else:
            depths[name] = 0
    top = top_of(depths) + 1
    depths.update({name: top for name in post})
    return depths


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


def _load_timm_weights(model: nn.Module, path: str, trust_torchscript: bool = False) -> None:
    """Strictly load a local timm weights file; classifier weights in the file are dropped (the tower has none)."""
    key = "model.vision.pretrained"
    state = read_state_dict(path, key, trust_torchscript)
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


# timm folders as distributed (the hub's timm/* repositories): config.json naming the architecture, then weights
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _timm_folder(cfg: VisionConfig) -> tuple[str, tuple[Stats, Stats] | None]:
    """The weights file in a timm folder and the pixel statistics its config.json gives (None: timm's own).
    ConfigError when the folder's config names another architecture than ``model.vision.name``."""
    key, folder = "model.vision.pretrained", Path(cfg.pretrained)
    spec: dict[str, Any] = {}
    if (folder / "config.json").is_file():
        try:
            spec = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}: cannot read {folder / 'config.json'}: {exc}") from None
        if not isinstance(spec, dict):
            raise ConfigError(f"{key}: {folder / 'config.json'} does not hold a JSON object")
        architecture = spec.get("architecture")
        if architecture is None and "model_type" in spec:
            raise ConfigError(f"{key}: {folder} holds a transformers {spec['model_type']!r} model; use "
                              "model.vision.kind=hf for it")
        if architecture is not None and architecture != cfg.name:
            raise ConfigError(f"{key}: {folder} holds timm weights of {architecture!r}, not of model.vision.name="
                              f"{cfg.name!r}; set model.vision.name={architecture}")
    weights = weights_in_folder(folder, key, TIMM_WEIGHTS)
    own = spec.get("pretrained_cfg") or {}
    if "mean" in own and "std" in own:
        return str(weights), (tuple(own["mean"]), tuple(own["std"]))
    return str(weights), None


def build_timm_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True,
                     config: dict[str, Any] | None = None) -> VisionTower:
    """timm backbone ``cfg.name`` without its classifier (pooled features); local weights from ``cfg.pretrained``:
    a weights file (safetensors, or ``pytorch_model.bin`` / ``.pth`` read with ``weights_only=True``) or a timm
    folder as distributed (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``), whose pixel statistics
    then replace the registry's and travel with a trained model (``config``)."""
    import timm

    if not timm.is_model(cfg.name):
        raise ConfigError(f"model.vision.name: unknown timm model {cfg.name!r} (see timm.list_models())")
    _check_image_size(cfg, "img_size", frame_size)
    overrides = {k: v for k, v in cfg.overrides.items() if k != "img_size"}
    model = _create_timm(cfg.name, frame_size, overrides)
    weights, folder_stats = cfg.pretrained, None
    if config is None and cfg.pretrained and Path(cfg.pretrained).is_dir():
        weights, folder_stats = _timm_folder(cfg)
    elif config is not None:
        folder_stats = (tuple(config["mean"]), tuple(config["std"]))
    if load_weights and weights and config is None:
        _load_timm_weights(model, weights, cfg.trust_torchscript)
    out_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    own = folder_stats or (tuple(model.pretrained_cfg.get("mean", NORMALIZATIONS["imagenet"][0])),
                           tuple(model.pretrained_cfg.get("std", NORMALIZATIONS["imagenet"][1])))
    mean, std = _stats(cfg, own)
    stored = None if folder_stats is None else {"mean": list(folder_stats[0]), "std": list(folder_stats[1])}
    return VisionTower(model, out_dim, mean, std, kind="timm", name=cfg.name, depths=_timm_depths(model, cfg),
                       config=stored)


def _timm_depths(model: nn.Module, cfg: VisionConfig) -> dict[str, int]:
    """timm's own grouping (``group_matcher``, fine-grained): stem 0, one id per block (the final norm joins the
    last one), then unmatched layers such as attention pools. ConfigError for a model without it."""
    from timm.models import group_parameters

    if not hasattr(model, "group_matcher"):
        raise ConfigError(f"model.vision.name: the timm model {type(model).__name__} of {cfg.name!r} (kind "
                          f"{cfg.kind}) has no group_matcher, so the depths of its layers (train.layer_decay, "
                          "train.freeze.layers) are unknown; choose a timm model that has one")
    groups = group_parameters(model, model.group_matcher(coarse=False))
    return {name: layer for layer, names in groups.items() for name in names}


VisionBuilder = Callable[[VisionConfig, int, bool, "dict[str, Any] | None"], VisionTower]

VISION_BUILDERS: dict[str, VisionBuilder] = {
    "clip": build_clip_tower,
    "timm": build_timm_tower,
    "hf": build_hf_tower,
}


def build_vision_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True,
                       config: dict[str, Any] | None = None) -> VisionTower:
    """The frame encoder of ``model.vision`` for square frames of ``frame_size`` px.

    ``load_weights=False`` skips the weights of ``cfg.pretrained`` (a trained model is rebuilt, then its own
    weights are loaded); ``config`` is the :attr:`VisionTower.config` a model folder stored, which rebuilds the
    architecture without ``cfg.pretrained``'s folder. ConfigError when the kind is unknown or its tower breaks the
    contract of :mod:`mmcls.models.towers`.
    """
    if cfg.kind not in VISION_BUILDERS:
        raise ConfigError(f"model.vision.kind: expected one of {sorted(VISION_BUILDERS)}, got {cfg.kind!r}")
    return check_vision_tower(VISION_BUILDERS[cfg.kind](cfg, frame_size, load_weights, config), cfg)
