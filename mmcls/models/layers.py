"""Depth of every tower parameter: the basis of layer-wise learning-rate decay and of freezing lower layers.

The towers say their own depths (:meth:`~mmcls.models.towers.VisionTower.layer_depths`,
:meth:`~mmcls.models.towers.TextTower.layer_depths`): each numbers its parameters from the input up, 0 = embeddings
/ stem, 1..L = the blocks, possibly L + 1 for layers after the last block. Fusion layers and heads are not towers
and have no depth. ``model`` is anything built around an ``encoder`` (classifier, pretrainer).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Depth:
    """``layer`` of a parameter in its tower, which has layers ``0 .. top``."""

    tower: str
    layer: int
    top: int


def tower_depths(model: nn.Module) -> dict[str, Depth]:
    """``{parameter name in model: Depth}`` for every parameter of the encoder's text and vision towers."""
    encoder = model.encoder
    towers = [("text", "encoder.text", encoder.text)]
    if encoder.vision is not None:
        towers.append(("vision", "encoder.vision", encoder.vision))
    result: dict[str, Depth] = {}
    for tower_name, prefix, tower in towers:
        depths = tower.layer_depths()
        top = max(depths.values(), default=0)
        result.update({f"{prefix}.{name}": Depth(tower_name, layer, top) for name, layer in depths.items()})
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
