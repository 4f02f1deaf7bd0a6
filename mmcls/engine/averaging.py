"""Weight averaging: SWA during training (``train.swa``) and averaging trained models (tools/average_checkpoints.py).

Floating-point tensors are averaged in float64 and cast back to their dtype; integer buffers (BERT's
``position_ids``, BatchNorm's ``num_batches_tracked``) cannot be averaged and are taken from the last state, as
``torch.optim.swa_utils`` does. BatchNorm running statistics are averaged like weights, which is an approximation
(SWA's ``update_bn`` recomputes them); the towers mmcls ships (CLIP ViT, BERT) have no BatchNorm.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

from mmcls.errors import UserError
from mmcls.io import atomic_write_bytes


def _normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """``weights`` scaled to sum to 1 (equal when None); ValueError unless ``count`` finite, >= 0, not all 0."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"weights: expected {count} (one per model), got {len(weights)}")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights: must be finite, >= 0 and not all 0, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def _key_difference(reference: Mapping[str, Any], other: Mapping[str, Any]) -> str | None:
    """Why the key sets differ (naming a key), or None when they are equal."""
    ours, theirs = set(reference), set(other)  # iterating keys never loads a lazy mapping's tensors
    missing, extra = sorted(ours - theirs), sorted(theirs - ours)
    if missing:
        return f"missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if extra:
        return f"unexpected key {extra[0]!r}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
    return None


def _shape_difference(reference: Mapping[str, Tensor], other: Mapping[str, Tensor]) -> str | None:
    """The first key whose shape differs, or None."""
    for key, tensor in reference.items():
        if other[key].shape != tensor.shape:
            return f"{key!r} has shape {tuple(other[key].shape)}, not {tuple(tensor.shape)}"
    return None


def average_state_dicts(states: Sequence[Mapping[str, Tensor]],
                        weights: Sequence[float] | None = None) -> dict[str, Tensor]:
    """Weighted mean of state dicts with the same keys and shapes (``weights`` default equal, normalised to 1).

    Reads one key of every state at a time, so lazily loading mappings keep memory at one model plus one tensor per
    state. Integer tensors come from the last state. ValueError (naming the key) on different keys or shapes.
    """
    if not states:
        raise ValueError("no state dicts to average")
    scales = _normalized_weights(weights, len(states))
    for i, state in enumerate(states[1:], 1):
        difference = _key_difference(states[0], state)
        if difference:
            raise ValueError(f"state {i}: {difference}")
    averaged = {}
    for key in states[0]:
        tensors = [state[key] for state in states]
        first = tensors[0]
        for i, tensor in enumerate(tensors[1:], 1):
            if tensor.shape != first.shape:
                raise ValueError(f"{key}: shape {tuple(tensor.shape)} in state {i}, {tuple(first.shape)} in state 0")
        if first.is_floating_point():
            total = sum(scale * tensor.to(torch.float64) for scale, tensor in zip(scales, tensors, strict=True))
            averaged[key] = total.to(first.dtype)
        else:
            averaged[key] = tensors[-1].clone()  # counters such as num_batches_tracked: the latest
    return averaged


class _LazyStateDict(Mapping[str, Tensor]):
    """A safetensors file as a mapping that reads each tensor when asked (nothing held in memory)."""

    def __init__(self, path: Path) -> None:
        self._file = safe_open(str(path), framework="pt")
        self._keys = list(self._file.keys())

    def __getitem__(self, key: str) -> Tensor:
        if key not in self:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class WeightAverager:
    """Snapshots of the weights for SWA: the last ``count`` offered (``last``) or the ``count`` best-scoring (``topk``).

    Kept snapshots are safetensors files in ``directory``, written atomically by the process with ``write`` (the main
    one); every process calls :meth:`offer` alike and keeps the same bookkeeping (the scores are the same on all), so
    after a barrier any process can :meth:`average` the files. Ties in ``topk`` keep the earlier snapshot.
    """

    def __init__(self, directory: str | Path, mode: Literal["last", "topk"], count: int, write: bool) -> None:
        if mode not in ("last", "topk"):
            raise ValueError(f"mode must be last or topk, got {mode!r}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.directory, self.mode, self.count, self.write = Path(directory), mode, count, write
        self.kept: list[dict[str, Any]] = []  # {"update", "score", "file"}, oldest first

    def _select(self, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.mode == "last":
            return candidates[-self.count:]
        best = sorted(candidates, key=lambda entry: -entry["score"])[:self.count]  # stable: earlier wins ties
        return sorted(best, key=lambda entry: entry["update"])

    def _keep(self, candidates: list[dict[str, Any]]) -> None:
        """Keep the selected candidates, deleting the files of the others."""
        keep = self._select(candidates)
        if self.write:
            for entry in candidates:
                if entry not in keep:
                    (self.directory / entry["file"]).unlink(missing_ok=True)
        self.kept = keep

    def offer(self, model: nn.Module, *, update: int, score: float | None) -> bool:
        """Consider the weights of ``model`` at ``update`` (``score`` = validation mean-F1, needed by topk).

        Returns whether they were kept (their file written, a dropped snapshot's file deleted).
        """
        if self.mode == "topk" and score is None:
            raise ValueError("mode topk needs a score for every offer")
        entry = {"update": update, "score": score, "file": f"update_{update:08d}.safetensors"}
        candidates = [e for e in self.kept if e["update"] != update] + [entry]
        if entry not in self._select(candidates):
            return False
        if self.write:
            state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
            atomic_write_bytes(self.directory / entry["file"], save(state))
        self._keep(candidates)
        return True

    def average(self) -> dict[str, Tensor] | None:
        """Equal-weight average of the kept snapshots (CPU tensors), or None when none is kept."""
        if not self.kept:
            return None
        return average_state_dicts([_LazyStateDict(self.directory / e["file"]) for e in self.kept])

    def state_dict(self) -> dict[str, Any]:
        """The bookkeeping (not the weights: those stay in the files), for resuming."""
        return {"mode": self.mode, "kept": [dict(e) for e in self.kept]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the bookkeeping of :meth:`state_dict`; a smaller ``count`` now drops the surplus."""
        if state["mode"] != self.mode:
            raise ValueError(f"the saved averager is mode {state['mode']}, this one {self.mode}")
        self._keep([dict(e) for e in state["kept"]])


def average_portable(paths: Sequence[str | Path], output: str | Path,
                     weights: Sequence[float] | None = None) -> None:
    """Average trained model folders (``RUN/best``) of one architecture into a new portable folder ``output``.

    The models must have the same weights layout, categories and vocabulary; the output keeps the first model's
    config, categories and tokenizer. UserError on fewer than 2 models, a mismatch, or bad ``weights``.
    """
    from mmcls.model_folder import load_portable, save_portable

    if len(paths) < 2:
        raise UserError(f"need at least 2 models to average, got {len(paths)}")
    try:
        _normalized_weights(weights, len(paths))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    models = [load_portable(path) for path in paths]
    first = models[0]
    states = [loaded.model.state_dict() for loaded in models]
    for path, loaded, state in zip(paths[1:], models[1:], states[1:], strict=True):
        difference = _key_difference(states[0], state) or _shape_difference(states[0], state)
        if difference:
            raise UserError(f"{path}: not the same architecture as {paths[0]}: {difference}")
        if loaded.categories.to_json() != first.categories.to_json():
            raise UserError(f"{path}: not the same categories as {paths[0]}")
        if loaded.tokenizer.get_vocab() != first.tokenizer.get_vocab():
            raise UserError(f"{path}: not the same tokenizer vocabulary as {paths[0]}")
        if (loaded.flip_map and loaded.flip_map.pairs) != (first.flip_map and first.flip_map.pairs):
            raise UserError(f"{path}: not the same flip_label_map.json as {paths[0]}")
    try:
        averaged = average_state_dicts(states, weights)
    except ValueError as exc:
        raise UserError(f"cannot average {', '.join(map(str, paths))}: {exc}") from None
    first.model.load_state_dict(averaged)
    save_portable(output, first.model, first.cfg, first.categories, first.tokenizer, first.flip_map)
