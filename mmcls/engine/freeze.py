"""Freezing towers (``train.freeze``): the vision and/or text tower, or their lower layers, for the first updates.

Apply after DDP wrapping: DDP registers for gradient reduction only the parameters that require grad when it is
built, so a tower frozen before wrapping would never be synchronised once unfrozen. Toggling ``requires_grad``
afterwards is safe because the loop builds DDP with ``find_unused_parameters=True`` (frozen parameters simply get no
gradient). Frozen parameters have their ``.grad`` cleared, so the optimizer skips them entirely: no weight decay, no
momentum step.
"""

from __future__ import annotations

from torch import nn

from mmcls.config import FreezeConfig
from mmcls.errors import ConfigError
from mmcls.models.layers import lower_layers


class TowerFreezer:
    """Freezes ``cfg.towers`` of ``model`` (the unwrapped classifier) before update ``cfg.updates`` (0 = always)."""

    def __init__(self, model: nn.Module, cfg: FreezeConfig) -> None:
        if "vision" in cfg.towers and model.encoder.vision is None:
            raise ConfigError("train.freeze.towers: the model has no vision tower to freeze (text mode, or "
                              "precomputed frame features)")
        self.cfg = cfg
        # only parameters that train in the first place are toggled (and given back their requires_grad later)
        self.params = [p for tower in cfg.towers for p in lower_layers(model, tower, cfg.layers) if p.requires_grad]
        self.frozen = False
        part = "whole" if cfg.layers == 0 else f"embeddings + lowest {cfg.layers} blocks of the"
        self._what = f"{len(self.params)} parameter tensors ({part} {' and '.join(cfg.towers)} tower)"

    def update(self, step: int) -> str | None:
        """Set the state for the update that follows ``step`` updates; a message for the log when it changed."""
        frozen = bool(self.params) and (self.cfg.updates == 0 or step < self.cfg.updates)
        if frozen == self.frozen:
            return None
        self.frozen = frozen
        for p in self.params:
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None
        if frozen:
            until = "for the whole run" if self.cfg.updates == 0 else f"until update {self.cfg.updates}"
            return f"froze {self._what} {until}"
        return f"unfroze {self._what} at update {step}"
