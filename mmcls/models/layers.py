"""Depth of every tower parameter: the basis of layer-wise learning-rate decay and of freezing lower layers.

Each tower (``vision``, ``text``) numbers its parameters from the input up: 0 = embeddings / stem, 1..L = the
blocks, and, where the tower has parameters after its last block (CLIP's ``ln_post`` and ``proj``), L + 1 for
those. timm backbones (also inside open_clip towers such as SigLIP) follow timm's own fine-grained grouping, which
puts the final norm with the last block and pooling / projection layers after it. Fusion layers and heads are not
towers and have no depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

# open_clip vision towers: parameters after the last block (ViT: ln_post, proj, attentional pooler; ResNet: attnpool)
_CLIP_POST = ("ln_post", "proj", "attn_pool", "attn_pool_contrastive", "ln_pool", "attnpool")
_CLIP_BLOCK = re.compile(r"^(?:transformer\.resblocks\.(\d+)|layer(\d+))\.")
_BERT_BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.")


@dataclass(frozen=True)
class Depth:
    """``layer`` of a parameter in its tower, which has layers ``0 .. top``."""

    tower: str
    layer: int
    top: int


def _clip_depths(backbone: nn.Module) -> dict[str, int]:
    from open_clip.timm_model import TimmModel

    if isinstance(backbone, TimmModel):
        return _open_clip_timm_depths(backbone)
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
    top = max(depths.values(), default=0) + 1
    depths.update({name: top for name in post})
    return depths


def _timm_depths(backbone: nn.Module) -> dict[str, int]:
    """timm's own grouping (``group_matcher``, fine-grained): stem 0, one id per block (the final norm joins the
    last one), then unmatched layers such as attention pools."""
    from timm.models import group_parameters

    if not hasattr(backbone, "group_matcher"):
        return {name: 0 for name, _ in backbone.named_parameters()}
    groups = group_parameters(backbone, backbone.group_matcher(coarse=False))
    return {name: layer for layer, names in groups.items() for name in names}


def _open_clip_timm_depths(backbone: nn.Module) -> dict[str, int]:
    """open_clip's timm-backed towers: the ``trunk`` grouped by timm, its ``head`` (projection) above it."""
    depths = {f"trunk.{name}": layer for name, layer in _timm_depths(backbone.trunk).items()}
    top = max(depths.values(), default=0) + 1
    depths.update({name: top for name, _ in backbone.named_parameters() if name not in depths})
    return depths


def _bert_depths(bert: nn.Module) -> dict[str, int]:
    depths = {}
    for name, _ in bert.named_parameters():
        match = _BERT_BLOCK.match(name)
        depths[name] = int(match.group(1)) + 1 if match else 0
    return depths


def tower_depths(model: nn.Module) -> dict[str, Depth]:
    """``{parameter name in model: Depth}`` for every parameter of ``model.bert`` and ``model.vision``."""
    towers: list[tuple[str, str, dict[str, int]]] = [("text", "bert", _bert_depths(model.bert))]
    vision = getattr(model, "vision", None)
    if vision is not None:
        builder = _clip_depths if vision.kind == "clip" else _timm_depths
        towers.append(("vision", "vision.backbone", builder(vision.backbone)))
    result: dict[str, Depth] = {}
    for tower, prefix, depths in towers:
        top = max(depths.values(), default=0)
        result.update({f"{prefix}.{name}": Depth(tower, layer, top) for name, layer in depths.items()})
    return result


def layer_decay_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Learning-rate multipliers ``decay ** (top - layer)`` per tower parameter (the top of each tower keeps 1)."""
    return {name: decay ** (d.top - d.layer) for name, d in tower_depths(model).items()}


def lower_layers(model: nn.Module, tower: str, layers: int) -> list[nn.Parameter]:
    """Parameters of ``tower`` (``vision`` / ``text``) at depth ``<= layers`` (0 = all of the tower's parameters)."""
    params = dict(model.named_parameters())
    depths = tower_depths(model)
    return [params[name] for name, d in depths.items()
            if d.tower == tower and (layers == 0 or d.layer <= layers) and name in params]
