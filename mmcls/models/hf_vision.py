"""``model.vision.kind=hf``: the vision part of a transformers model folder (saved with ``save_pretrained``).

``model.vision.pretrained`` is the folder (``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, sharded
ones by their ``*.index.json``, and optionally ``preprocessor_config.json``). ``model.vision.name`` is ignored: the
folder's ``config.json`` names the architecture. Families (by the folder's ``model_type``):

- CLIP (``clip``: a whole ``CLIPModel``; ``clip_vision_model``: CLIPVisionModel / CLIPVisionModelWithProjection):
  ``projected`` (default: the CLIP image embedding, ``visual_projection`` of the pooled token, as the WBDC teams
  used it) or ``pooled`` (the post-layernormed CLS token; the only choice of a folder without a projection);
  CLIP statistics by default.
- Chinese-CLIP (``chinese_clip``, ``chinese_clip_vision_model``): as CLIP.
- SigLIP (``siglip``, ``siglip_vision_model``; also the fixed-resolution SigLIP2 checkpoints, which are ``siglip``):
  ``pooled`` (default: the attention-pool head's output, no projection) or ``mean`` (of the final tokens);
  mean / std 0.5 by default.
- SigLIP2 NaFlex (``siglip2``, ``siglip2_vision_model``): as SigLIP; square frames are cut into patches here
  (``pixel_values`` ``[N, patches, 3 * P * P]``, ``pixel_attention_mask``, ``spatial_shapes``).
- DINOv2 (``dinov2``): ``cls`` (default: the final-layernormed CLS token) or ``mean`` (of the patch tokens);
  ImageNet statistics by default.
- ViT (``vit``): ``cls`` (default), ``mean`` or ``pooled`` (ViT's tanh pooler); mean / std 0.5 by default.

``model.vision.overrides`` takes architecture-free keys only: ``pooling`` (above) and ``attn_implementation``
(``sdpa``, the default when the family supports it, or ``eager``); the architecture is the folder's.

Pixel statistics and the model's image size come from the folder's ``preprocessor_config.json`` (or the
``image_processor`` of a ``processor_config.json``): ``image_mean`` / ``image_std``, ``crop_size`` or ``size``;
without one, the defaults above and the config's ``image_size``. ``model.vision.normalization`` (clip / imagenet)
still replaces the statistics. Frames of another size than the model's (``data.frame_size``) get interpolated
position embeddings (one warning line); NaFlex models take any multiple of their patch size.

Loading is strict: the vision module (and the projection, when used) is built from the folder's config and every
tensor of it must come from the weights file with its shape, else one ConfigError naming the keys. The file's other
tensors must be known leftovers, which are ignored: the text tower and its projection, ``logit_scale`` /
``logit_bias`` of a whole model, an unused ``visual_projection`` (``pooling: pooled``), an unused SigLIP pooling
head (``pooling: mean``) or ViT pooler, and the classifier of a ``*ForImageClassification`` folder.

Weights are read with :func:`mmcls.models.weights.read_state_dict` (safetensors, or ``weights_only=True``) and given
to the family's class as ``from_pretrained(None, config=..., state_dict=...)``, so transformers' own renames of
older on-disk names apply (ViT / DINOv2 files keep ``encoder.layer.i.attention.attention.query``); its report of
missing / unexpected / mis-shaped keys becomes the ConfigError. Depths: embeddings (and CLIP's pre-layernorm) 0,
encoder layer i at i + 1, everything after the last layer (post-layernorm, pooling head, pooler, projection) at
L + 1. Gradient checkpointing is transformers' own (non-reentrant).

The tower's :attr:`~mmcls.models.towers.VisionTower.config` holds the family, the vision sub-config, the pooling,
the projection width, the image size and the statistics, so a trained model rebuilds without the folder.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmcls.config import VisionConfig
from mmcls.errors import ConfigError
from mmcls.models.pixels import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS, Stats
from mmcls.models.towers import VisionTower, set_transformers_checkpointing
from mmcls.models.weights import quiet_transformers_load, raise_on_mismatch, read_state_dict, weights_in_folder

__all__ = ["HF_FAMILIES", "HfVisionBackbone", "build_hf_tower"]

KEY = "model.vision.pretrained"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR = "preprocessor_config.json"
PROCESSOR = "processor_config.json"  # transformers >= 5 saves a whole processor here, the image part nested
OVERRIDE_KEYS = ("attn_implementation", "pooling")
ATTENTION = ("sdpa", "eager")
HALF = (0.5, 0.5, 0.5)

# Leftovers of a whole model or a classification model, ignored by prefix (the text tower is never built).
_TEXT_PARTS = ("text_model.", "text_projection.", "logit_scale", "logit_bias")
_CLASSIFIER = ("classifier.",)


@dataclass(frozen=True)
class _Family:
    """A vision architecture of transformers: its classes (by their public names), where its weights sit in the
    folders it comes in, and how its frame embedding is made."""

    title: str
    model_class: str
    config_class: str
    poolings: tuple[str, ...]  # all it offers; the default is the first one available
    stats: tuple[Stats, Stats]
    prefixes: tuple[str, ...]  # the vision weights sit under one of these in whole / classification folders
    leftovers: tuple[str, ...]  # other tensors of such folders, ignored
    prefix_tokens: int = 0  # tokens before the patch tokens (CLS), left out of ``mean``
    interpolate_kwarg: bool = True  # forward takes interpolate_pos_encoding (DINOv2 always interpolates)
    naflex: bool = False  # patchified inputs with spatial shapes (SigLIP2)


_CLIP_POOLINGS = ("projected", "pooled")
HF_FAMILIES: dict[str, _Family] = {
    "clip_vision_model": _Family("CLIP", "CLIPVisionModel", "CLIPVisionConfig", _CLIP_POOLINGS,
                                 (CLIP_MEAN, CLIP_STD), ("vision_model.",), _TEXT_PARTS),
    "chinese_clip_vision_model": _Family("Chinese-CLIP", "ChineseCLIPVisionModel", "ChineseCLIPVisionConfig",
                                         _CLIP_POOLINGS, (CLIP_MEAN, CLIP_STD), ("vision_model.",), _TEXT_PARTS),
    "siglip_vision_model": _Family("SigLIP", "SiglipVisionModel", "SiglipVisionConfig", ("pooled", "mean"),
                                   (HALF, HALF), ("vision_model.",), _TEXT_PARTS),
    "siglip2_vision_model": _Family("SigLIP2 (NaFlex)", "Siglip2VisionModel", "Siglip2VisionConfig",
                                    ("pooled", "mean"), (HALF, HALF), ("vision_model.",), _TEXT_PARTS, naflex=True),
    "dinov2": _Family("DINOv2", "Dinov2Model", "Dinov2Config", ("cls", "mean"), (IMAGENET_MEAN, IMAGENET_STD),
                      ("dinov2.",), _CLASSIFIER, prefix_tokens=1, interpolate_kwarg=False),
    "vit": _Family("ViT", "ViTModel", "ViTConfig", ("cls", "mean", "pooled"), (HALF, HALF), ("vit.",), _CLASSIFIER,
                   prefix_tokens=1),
}
# A whole text + vision model folder -> the family of its vision part
_WHOLE_MODELS = {"clip": "clip_vision_model", "chinese_clip": "chinese_clip_vision_model",
                 "siglip": "siglip_vision_model", "siglip2": "siglip2_vision_model"}


def _supported() -> str:
    return ", ".join(f"{family.title} ({' / '.join([*whole, vision])})" for vision, family in HF_FAMILIES.items()
                     for whole in [[k for k, v in _WHOLE_MODELS.items() if v == vision]])


def _transformers_class(name: str) -> Any:
    import transformers

    return getattr(transformers, name)


# ----------------------------------------------------------------------------------------------------------------
# the backbone


class HfVisionBackbone(nn.Module):
    """A transformers vision model (``model``) and, for CLIP-style ``projected`` pooling, its ``projection``:
    normalised pixels ``[N, 3, S, S]`` -> ``[N, out_dim]``.

    Position embeddings are interpolated whenever the frames are not of the model's own size (``image_size``).
    """

    def __init__(self, model: nn.Module, family: _Family, pooling: str, projection: nn.Linear | None) -> None:
        super().__init__()
        self.model = model
        self.projection = projection
        self.family, self.pooling = family, pooling
        self.image_size = int(getattr(model.config, "image_size", 0) or 0)
        self.patch_size = int(model.config.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.family.naflex:
            out = self.model(**naflex_inputs(pixels, self.patch_size))
        elif self.family.interpolate_kwarg:
            resize = pixels.shape[-2] != self.image_size or pixels.shape[-1] != self.image_size
            out = self.model(pixel_values=pixels, interpolate_pos_encoding=resize)
        else:
            out = self.model(pixel_values=pixels)
        if self.pooling == "projected":
            return self.projection(out.pooler_output)
        if self.pooling == "pooled":
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        return out.last_hidden_state[:, self.family.prefix_tokens:].mean(dim=1)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder layers in the backward pass (transformers' own checkpointing, non-reentrant)."""
        set_transformers_checkpointing(self.model, enable)


def naflex_inputs(pixels: torch.Tensor, patch_size: int) -> dict[str, torch.Tensor]:
    """Square frames ``[N, 3, S, S]`` as a SigLIP2 NaFlex model takes them: ``pixel_values`` ``[N, h * w, P * P *
    3]`` (patches in row-major order, each flattened as (row, column, channel), as Siglip2ImageProcessor cuts them),
    an all-ones ``pixel_attention_mask`` (no padding) and ``spatial_shapes`` ``[[h, w]] * N``."""
    n, channels, height, width = pixels.shape
    h, w = height // patch_size, width // patch_size
    patches = pixels[:, :, :h * patch_size, :w * patch_size].reshape(n, channels, h, patch_size, w, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, patch_size * patch_size * channels)
    mask = torch.ones(n, h * w, dtype=torch.long, device=pixels.device)
    shapes = torch.tensor([[h, w]] * n, dtype=torch.long, device=pixels.device)
    return {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes}


# Encoder layer i of a transformers vision model (CLIP / SigLIP: encoder.layers.i; DINOv2: encoder.layer.i;
# ViT: layers.i), under the backbone's ``model.``
_LAYER = re.compile(r"^model\.(?:encoder\.)?layers?\.(\d+)\.")
_STEM = ("model.embeddings.", "model.pre_layrnorm.")


def hf_depths(backbone: HfVisionBackbone, num_layers: int) -> dict[str, int]:
    """Embeddings (and CLIP's pre-layernorm) 0, encoder layer i at i + 1, everything after the last layer (post
    layernorm, pooling head, pooler, projection) at ``num_layers + 1``."""
    depths = {}
    for name, _ in backbone.named_parameters():
        match = _LAYER.match(name)
        if match:
            depths[name] = int(match.group(1)) + 1
        elif name.startswith(_STEM):
            depths[name] = 0
        else:
            depths[name] = num_layers + 1
    return depths


# ----------------------------------------------------------------------------------------------------------------
# the folder


@dataclass
class _Spec:
    """Everything that decides the tower's architecture: what :attr:`VisionTower.config` stores."""

    model_type: str  # the vision family (a key of HF_FAMILIES)
    config: dict[str, Any]  # the vision (sub-)config, as to_dict() gives it
    pooling: str
    projection_dim: int | None  # the projection's width when the folder has one (CLIP-style), else None
    image_size: int  # the size the model was trained at (preprocessor, else config)
    mean: Stats
    std: Stats
    name: str

    def stored(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "config": self.config, "pooling": self.pooling,
                "projection_dim": self.projection_dim, "image_size": self.image_size, "mean": list(self.mean),
                "std": list(self.std), "name": self.name}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{KEY}: cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{KEY}: {path} does not hold a JSON object")
    return value


def _folder_config(folder: Path) -> tuple[str, Any]:
    """``(model_type, the folder's config object)``; ConfigError when the folder is not one of a supported family."""
    from transformers import AutoConfig

    if not folder.is_dir():
        raise ConfigError(f"{KEY}: model.vision.kind=hf needs a local transformers model folder (saved with "
                          f"save_pretrained), got {folder}")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{KEY}: {folder} has no config.json, so it is not a transformers model folder "
                          f"(model.vision.kind=hf takes {_supported()})")
    model_type = _read_json(folder / "config.json").get("model_type")
    if model_type not in HF_FAMILIES and model_type not in _WHOLE_MODELS:
        raise ConfigError(f"{KEY}: {folder} holds a transformers {model_type!r} model, not a supported vision model "
                          f"(model.vision.kind=hf takes {_supported()})")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{KEY}: cannot read the config of {folder}: {str(exc).splitlines()[0]}") from None
    return model_type, config


def _preprocessor(folder: Path) -> dict[str, Any]:
    """The folder's image-processor settings (``preprocessor_config.json``, or the ``image_processor`` of a
    ``processor_config.json``); empty when it has none."""
    if (folder / PREPROCESSOR).is_file():
        return _read_json(folder / PREPROCESSOR)
    if (folder / PROCESSOR).is_file():
        nested = _read_json(folder / PROCESSOR).get("image_processor")
        return nested if isinstance(nested, dict) else {}
    return {}


def _processor_size(processor: dict[str, Any]) -> int | None:
    """The side of the images the processor gives the model: its crop, else its (square or shortest-edge) size."""
    for key in ("crop_size", "size"):
        value = processor.get(key)
        if key == "crop_size" and processor.get("do_center_crop") is False:
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            if value.get("height") is not None and value.get("height") == value.get("width"):
                return int(value["height"])
            if value.get("shortest_edge") is not None:
                return int(value["shortest_edge"])
    return None


def _stats_of(processor: dict[str, Any], default: tuple[Stats, Stats], folder: Path) -> tuple[Stats, Stats]:
    mean, std = processor.get("image_mean", default[0]), processor.get("image_std", default[1])
    if isinstance(mean, (int, float)):
        mean = [mean] * 3
    if isinstance(std, (int, float)):
        std = [std] * 3
    try:
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (TypeError, ValueError):
        mean, std = (), ()
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"{KEY}: the image_mean / image_std of {folder}'s processor config are not 3 numbers each")
    return mean, std


def _has_projection(model_type: str, config: Any) -> bool:
    if model_type in ("clip", "chinese_clip"):
        return True
    return model_type == "clip_vision_model" and any("WithProjection" in a for a in config.architectures or ())


def _pooling(cfg: VisionConfig, family: _Family, available: tuple[str, ...]) -> str:
    pooling = cfg.overrides.get("pooling", available[0])
    if pooling not in available:
        why = ""
        if pooling in family.poolings:
            why = " (this folder has no projection)" if pooling == "projected" else " (this folder has no head)"
        raise ConfigError(f"model.vision.overrides.pooling: {family.title} offers {' | '.join(available)}{why}, "
                          f"got {pooling!r}")
    return pooling


def _spec_from_folder(cfg: VisionConfig, folder: Path) -> _Spec:
    model_type, config = _folder_config(folder)
    whole = model_type in _WHOLE_MODELS
    family_type = _WHOLE_MODELS.get(model_type, model_type)
    family = HF_FAMILIES[family_type]
    vision_config = config.vision_config if whole else config
    projection = _has_projection(model_type, config)
    available = family.poolings
    if "projected" in available and not projection:
        available = tuple(p for p in available if p != "projected")
    if hasattr(vision_config, "vision_use_head") and not vision_config.vision_use_head:  # SigLIP without its head
        available = tuple(p for p in available if p != "pooled")
    pooling = _pooling(cfg, family, available)
    processor = _preprocessor(folder)
    mean, std = _stats_of(processor, family.stats, folder)
    size = _processor_size(processor) or int(getattr(vision_config, "image_size", 0) or 0)
    if family.naflex:
        side = round(float(getattr(vision_config, "num_patches", 256)) ** 0.5)
        size = side * int(vision_config.patch_size)
    dim = int(config.projection_dim) if projection else None
    return _Spec(family_type, json.loads(vision_config.to_json_string(use_diff=False)), pooling, dim, size, mean, std,
                 folder.name or model_type)


def _spec_from_stored(cfg: VisionConfig, stored: dict[str, Any]) -> _Spec:
    """The architecture a model folder stored (:attr:`VisionTower.config`); the original folder is not read."""
    try:
        spec = _Spec(stored["model_type"], dict(stored["config"]), stored["pooling"], stored.get("projection_dim"),
                     int(stored["image_size"]), tuple(stored["mean"]), tuple(stored["std"]),
                     stored.get("name") or stored["model_type"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"model.vision.kind=hf: the stored vision config is incomplete ({exc!r})") from None
    family = HF_FAMILIES.get(spec.model_type)
    if family is None or spec.pooling not in family.poolings:
        raise ConfigError(f"model.vision.kind=hf: the stored vision config names {spec.model_type!r} with pooling "
                          f"{spec.pooling!r}, which this version does not build")
    wanted = cfg.overrides.get("pooling")
    if wanted is not None and wanted != spec.pooling:
        raise ConfigError(f"model.vision.overrides.pooling: the trained vision tower pools with {spec.pooling!r}, "
                          f"got {wanted!r}")
    return spec


# ----------------------------------------------------------------------------------------------------------------
# building and loading


def _vision_config(spec: _Spec) -> Any:
    """The vision config object, adjusted to the pooling (no SigLIP head for ``mean``)."""
    family = HF_FAMILIES[spec.model_type]
    config = _transformers_class(family.config_class).from_dict(copy.deepcopy(spec.config))
    if hasattr(config, "vision_use_head"):
        config.vision_use_head = spec.pooling == "pooled"
    return config


def _init_kwargs(spec: _Spec) -> dict[str, Any]:
    return {"add_pooling_layer": spec.pooling == "pooled"} if spec.model_type == "vit" else {}


def _with_attention(cfg: VisionConfig, spec: _Spec, build: Callable[[str], Any]) -> Any:
    """``build(attn_implementation)``: sdpa where the family has it, else eager; ``overrides.attn_implementation``
    chooses."""
    wanted = cfg.overrides.get("attn_implementation")
    if wanted is not None and wanted not in ATTENTION:
        raise ConfigError(f"model.vision.overrides.attn_implementation: expected one of {', '.join(ATTENTION)}, "
                          f"got {wanted!r}")
    try:
        return build(wanted or "sdpa")
    except (ValueError, ImportError) as exc:
        if wanted is not None:
            raise ConfigError(f"model.vision.overrides.attn_implementation: {wanted} does not build {spec.name}: "
                              f"{str(exc).splitlines()[0]}") from None
    try:
        return build("eager")
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"{KEY}: cannot build the {HF_FAMILIES[spec.model_type].title} vision model of "
                          f"{spec.name}: {str(exc).splitlines()[0]}") from None


# The part of a family's vision weights that only ``pooling: pooled`` builds (SigLIP's head, ViT's pooler)
_UNUSED = {"siglip_vision_model": "head.", "siglip2_vision_model": "head.", "vit": "pooler."}


def _split_weights(state: dict[str, torch.Tensor], spec: _Spec) -> tuple[dict[str, torch.Tensor],
                                                                         torch.Tensor | None, list[str]]:
    """``(the vision model's tensors, the projection weight or None, unexpected keys)`` of a folder's weights.

    The vision tensors are those under the family's prefix (``vision_model.`` of a whole model ...) when the file
    has any, else all of them; known leftovers (see the module docstring) are dropped, anything else is unexpected.
    """
    family = HF_FAMILIES[spec.model_type]
    state = dict(state)
    projection = state.pop("visual_projection.weight", None)
    prefix = next((p for p in family.prefixes if any(k.startswith(p) for k in state)), None)
    if prefix is None:
        vision, rest = state, {}
    else:
        vision = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    unused = _UNUSED.get(spec.model_type) if spec.pooling != "pooled" else None  # a part the pooling does not build
    if unused:
        vision = {k: v for k, v in vision.items() if not k.startswith(unused)}
    unexpected = sorted(k for k in rest if not k.startswith(family.leftovers))
    if spec.pooling != "projected":
        projection = None
    return vision, projection, unexpected


def _load_model(cfg: VisionConfig, spec: _Spec, weights: Path) -> tuple[nn.Module, nn.Linear | None]:
    """The vision model and projection with every tensor from ``weights``, or one ConfigError naming the keys."""
    family = HF_FAMILIES[spec.model_type]
    state = read_state_dict(weights, KEY, cfg.trust_torchscript)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    vision_state, projection_weight, unexpected = _split_weights(state, spec)
    model_class = _transformers_class(family.model_class)

    def build(attn: str) -> nn.Module:
        return model_class.from_pretrained(None, config=_vision_config(spec), state_dict=vision_state,
                                           output_loading_info=True, ignore_mismatched_sizes=True,
                                           dtype=torch.float32, attn_implementation=attn, local_files_only=True,
                                           trust_remote_code=False, **_init_kwargs(spec))

    try:
        with quiet_transformers_load():
            model, info = _with_attention(cfg, spec, build)
    except RuntimeError as exc:  # conversion errors of a foreign checkpoint
        raise ConfigError(f"{KEY}: cannot load {weights} into {family.model_class}: "
                          f"{str(exc).splitlines()[0]}") from None
    missing = sorted(info["missing_keys"])
    unexpected += sorted(info["unexpected_keys"])
    mis_shaped = [f"{k} {tuple(ckpt)} vs {tuple(own)}" for k, ckpt, own in sorted(info["mismatched_keys"])]
    projection = None
    if spec.pooling == "projected":
        projection = nn.Linear(int(model.config.hidden_size), int(spec.projection_dim), bias=False)
        if projection_weight is None:
            missing.append("visual_projection.weight")
        elif projection_weight.shape != projection.weight.shape:
            mis_shaped.append(f"visual_projection.weight {tuple(projection_weight.shape)} vs "
                              f"{tuple(projection.weight.shape)}")
        else:
            with torch.no_grad():
                projection.weight.copy_(projection_weight)
    raise_on_mismatch(KEY, weights, missing, unexpected, mis_shaped)
    return model, projection


def _build_model(cfg: VisionConfig, spec: _Spec) -> tuple[nn.Module, nn.Linear | None]:
    """The architecture only (random weights: a trained model's are loaded next)."""
    model_class = _transformers_class(HF_FAMILIES[spec.model_type].model_class)
    model = _with_attention(cfg, spec, lambda attn: model_class._from_config(
        _vision_config(spec), attn_implementation=attn, dtype=torch.float32, **_init_kwargs(spec)))
    projection = None
    if spec.pooling == "projected":
        projection = nn.Linear(int(model.config.hidden_size), int(spec.projection_dim), bias=False)
    return model, projection


def _check_frame_size(spec: _Spec, frame_size: int, patch_size: int) -> None:
    family = HF_FAMILIES[spec.model_type]
    if frame_size < patch_size or (family.naflex and frame_size % patch_size):
        lower = max(patch_size, frame_size // patch_size * patch_size)
        raise ConfigError(f"data.frame_size: {family.title} {spec.name} cuts frames into {patch_size} px patches; set "
                          f"data.frame_size to a multiple of {patch_size} (e.g. {lower} or {lower + patch_size})")
    if not family.naflex and frame_size != spec.image_size:
        logging.getLogger("mmcls").warning(
            "data.frame_size=%d: %s %s was trained at %d px; its position embeddings are interpolated", frame_size,
            family.title, spec.name, spec.image_size)


def build_hf_tower(cfg: VisionConfig, frame_size: int, load_weights: bool = True,
                   config: dict[str, Any] | None = None) -> VisionTower:
    """The vision part of the transformers model folder ``cfg.pretrained`` (see the module docstring).

    ``config``: a stored :attr:`VisionTower.config`, which rebuilds the architecture without the folder (never
    read then); ``load_weights=False``: the folder's architecture without its weights.
    """
    unknown = sorted(set(cfg.overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise ConfigError(f"model.vision.overrides.{unknown[0]}: model.vision.kind=hf takes only the architecture-free "
                          f"keys {', '.join(OVERRIDE_KEYS)} (the architecture is the folder's config.json)")
    if config is not None:
        spec = _spec_from_stored(cfg, config)
    elif not cfg.pretrained:
        raise ConfigError(f"{KEY}: model.vision.kind=hf needs a local transformers model folder (saved with "
                          f"save_pretrained): {_supported()}")
    else:
        spec = _spec_from_folder(cfg, Path(cfg.pretrained))
    rng = torch.get_rng_state()  # left as it was: layers built next initialise the same however this one loads
    try:
        if config is None and load_weights:
            model, projection = _load_model(cfg, spec, weights_in_folder(cfg.pretrained, KEY, WEIGHTS))
        else:
            model, projection = _build_model(cfg, spec)
    finally:
        torch.set_rng_state(rng)
    family = HF_FAMILIES[spec.model_type]
    backbone = HfVisionBackbone(model, family, spec.pooling, projection)
    _check_frame_size(spec, frame_size, backbone.patch_size)
    out_dim = spec.projection_dim if spec.pooling == "projected" else int(model.config.hidden_size)
    mean, std = (spec.mean, spec.std) if cfg.normalization == "auto" else NORMALIZATIONS[cfg.normalization]
    depths = hf_depths(backbone, int(model.config.num_hidden_layers))
    return VisionTower(backbone, out_dim, mean, std, kind="hf", name=spec.name, depths=depths,
                       config=spec.stored())
