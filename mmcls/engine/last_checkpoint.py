"""Everything about ``checkpoints/last``: what it holds, how it is written, how a killed run finds and reloads it.

``accelerator.save_state`` stores the model (safetensors), the optimizer, the gradient scaler and every RNG;
:data:`TRAINER_STATE` (JSON) adds the loop's counters, the position inside the epoch (with the epoch's running
sums), the DataLoader generator and the state of the run's other resumable parts (scheduler, EMA, SWA bookkeeping:
``parts``), whose tensors go to :data:`PART_TENSORS` (safetensors). The training order of an epoch depends on
(seed, epoch) only (:class:`mmcls.data.dataset.EpochShuffle`), so skipping the batches already done gives, on CPU
with a fixed seed, the same weights as a run that was never killed, with or without loader workers.

Nothing in the folder runs code when it is read back: mmcls writes JSON and safetensors, accelerate's own files are
pickles that it reads with ``weights_only=True``, and :func:`check_state_files` reads each of them that way first,
so a planted or corrupt file stops the resume with one line naming it (accelerate would skip unreadable RNG states
silently). No object is registered with ``accelerator.register_for_checkpointing``: its files are unpickled in full.

A checkpoint is written to ``last.tmp`` and swapped in by renames (:func:`save_last`); a kill between the two
renames leaves ``last.old`` (or, with ``train.keep_checkpoints``, the newest ``update-<N>``), which
:func:`find_checkpoint` falls back to. Keys marked ``runtime`` in the config schema may change between a run and
its resumption; any other change is an error (:func:`check_same_run`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmcls.config import Config, runtime_keys, to_dict
from mmcls.errors import ConfigError
from mmcls.io import replace_dir

TRAINER_STATE = "trainer_state.json"
PART_TENSORS = "parts.safetensors"
# the layout of checkpoints/last (the trainer state and the model's parameter names): a checkpoint of another
# layout cannot be resumed exactly, so it is an error, never a partial load
STATE_FORMAT = 3
# accelerate's pickled state files (optimizer, scaler, RNG states ...), read only with weights_only=True
_PICKLED_SUFFIXES = (".bin", ".pkl", ".pt")
_START_OVER = "use another output_dir, or train.resume=false to start this run over"
# mappings compared as one value (their keys are data, not schema)
_WHOLE_MAPPINGS = ("data.text_budgets", "data.text_truncation", "model.vision.overrides")


def find_checkpoint(checkpoints: Path) -> Path | None:
    """``checkpoints/last`` when it holds a complete trainer state; after a kill mid-swap ``last.old`` or the
    newest kept ``update-<N>`` (``train.keep_checkpoints``)."""
    for path in (checkpoints / "last", checkpoints / "last.old", *sorted(checkpoints.glob("update-*"))[::-1]):
        if (path / TRAINER_STATE).is_file():
            return path
    return None


def comparable_config(cfg: Config) -> dict[str, Any]:
    """The config as a flat ``{dotted key: value}`` without the keys marked ``runtime`` in the schema."""
    flat: dict[str, Any] = {}
    skipped = runtime_keys()

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and prefix not in _WHOLE_MAPPINGS:
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        elif prefix not in skipped:
            flat[prefix] = value

    walk("", to_dict(cfg))
    return flat


def check_same_run(saved: dict[str, Any], cfg: Config, where: Path) -> None:
    """ConfigError naming the keys that differ between the checkpoint's run and ``cfg``."""
    current = comparable_config(cfg)
    before = saved.get("config", {})
    changed = sorted(k for k in set(current) | set(before) if current.get(k) != before.get(k))
    if changed:
        shown = ", ".join(f"{k} ({before.get(k)!r} -> {current.get(k)!r})" for k in changed[:3])
        raise ConfigError(f"output_dir: {where} holds a run with other settings: {shown}"
                          f"{' ...' if len(changed) > 3 else ''}; use another output_dir, or train.resume=false to "
                          "start this one over")


def read_trainer_state(path: Path) -> dict[str, Any]:
    return json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))


def encode_generator(generator: torch.Generator) -> str:
    """A torch generator's state as text (for the JSON trainer state)."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def decode_generator(generator: torch.Generator, text: str) -> None:
    """Restore a state written by :func:`encode_generator`."""
    data = bytearray(base64.b64decode(text))
    generator.set_state(torch.frombuffer(data, dtype=torch.uint8).clone())


@dataclass
class EpochPosition:
    """Where the loop is inside the current epoch: the shuffle's generator state at the epoch's start, batches
    done, the running sums of the step's figures (``sums[name]`` over ``counts[name]`` finite values: the one
    running-loss record of both recipes) and the unreadable videos met (what a mid-epoch resume restores)."""

    epoch_rng: str = ""
    batches: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    epoch_done: bool = False

    @classmethod
    def start(cls, figures: tuple[str, ...], epoch_rng: str = "") -> EpochPosition:
        """A fresh epoch that records ``figures`` (the same names on every process: they are all-reduced)."""
        return cls(epoch_rng=epoch_rng, sums=dict.fromkeys(figures, 0.0), counts=dict.fromkeys(figures, 0))

    def record(self, figures: dict[str, torch.Tensor | float]) -> None:
        """Add one micro-batch's figures; non-finite values and names not recorded are left out."""
        for name, value in figures.items():
            if name in self.sums and math.isfinite(number := float(value)):
                self.sums[name] += number
                self.counts[name] += 1

    def mean(self, name: str = "loss") -> float:
        return self.sums.get(name, 0.0) / max(1, self.counts.get(name, 0))

    def means(self) -> dict[str, float]:
        return {name: self.mean(name) for name in self.sums}


def global_position(accelerator: Any, position: EpochPosition) -> EpochPosition:
    """The epoch's running sums over ALL processes (what a checkpoint stores and metrics.csv reports). Called by
    every process. On resume the main process takes the totals back and the others start from zero
    (:func:`local_share`), so the sums stay exact whatever the number of processes."""
    names = sorted(position.sums)
    local = torch.tensor([float(position.failures), *(position.sums[k] for k in names),
                          *(float(position.counts[k]) for k in names)], dtype=torch.float64)
    totals = accelerator.reduce(local.to(accelerator.device), "sum").cpu().tolist()
    n = len(names)
    return dataclasses.replace(position, failures=int(totals[0]), sums=dict(zip(names, totals[1:1 + n], strict=True)),
                               counts={k: int(v) for k, v in zip(names, totals[1 + n:], strict=True)})


def local_share(accelerator: Any, position: EpochPosition) -> EpochPosition:
    """A resumed process's part of the saved totals: all of them on the main process, zero elsewhere."""
    if accelerator.process_index == 0:
        return position
    return dataclasses.replace(position, failures=0, sums=dict.fromkeys(position.sums, 0.0),
                               counts=dict.fromkeys(position.counts, 0))


def epoch_loader(accelerator: Any, loader: Any, generator: torch.Generator, position: EpochPosition,
                 figures: tuple[str, ...]) -> tuple[Any, EpochPosition]:
    """The loader of a starting epoch and its position: a fresh position (recording the shuffle state), or after a
    resume the same loader minus the batches already done."""
    if position.batches:
        return accelerator.skip_first_batches(loader, position.batches), position
    return loader, EpochPosition.start(figures, encode_generator(generator))


def trainer_state(cfg: Config, counters: Any, position: EpochPosition, generator: torch.Generator,
                  **extra: Any) -> dict[str, Any]:
    """The JSON that goes into checkpoints/last next to the tensors (``position`` summed over all processes)."""
    return {"format": STATE_FORMAT, "config": comparable_config(cfg), "state": dataclasses.asdict(counters),
            "position": dataclasses.asdict(position), "loader_rng": encode_generator(generator), **extra}


def open_run(cfg: Config, run: Any) -> tuple[Path | None, dict[str, Any] | None]:
    """``(checkpoint, trainer state)`` to resume from (``train.resume`` and a complete checkpoint of the same
    settings), else ``(None, None)`` after clearing the folder's old metrics and result."""
    checkpoint = find_checkpoint(run.checkpoints) if cfg.train.resume else None
    if checkpoint is None:
        run.start_fresh()
        return None, None
    saved = read_trainer_state(checkpoint)
    if saved.get("format") != STATE_FORMAT:
        raise ConfigError(f"output_dir: {checkpoint} was written by an older mmcls whose checkpoints cannot be resumed "
                          "exactly; use another output_dir, or train.resume=false to start this run over (its best/ "
                          "folder still loads)")
    check_same_run(saved, cfg, checkpoint)  # before anything in the folder changes
    return checkpoint, saved


def restore(accelerator: Any, checkpoint: Path, saved: dict[str, Any], loader_generator: torch.Generator,
            run: Any, parts: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], EpochPosition]:
    """Load the tensors and RNGs and the resumable ``parts`` (scheduler, EMA ...), set the loader generator, drop
    later metrics rows; returns the loop's counters (with ``epoch`` moved on when the checkpoint closed its epoch)
    and this process's share of the position inside that epoch. Every file must load, else one ConfigError."""
    check_state_files(checkpoint, accelerator.process_index)
    try:
        accelerator.load_state(str(checkpoint))
    except Exception as exc:  # a truncated or mismatched file: whatever the reader raised, one line
        raise ConfigError(f"output_dir: cannot resume from {checkpoint}: {_first_line(exc)}; {_START_OVER}") from None
    load_parts(parts or {}, saved.get("parts", {}), checkpoint)
    counters, position = dict(saved["state"]), EpochPosition(**saved["position"])
    if position.epoch_done:  # the next epoch starts from the shuffle state saved after this one
        decode_generator(loader_generator, saved["loader_rng"])
        counters["epoch"], position = counters["epoch"] + 1, EpochPosition()
    else:  # replay this epoch's shuffle (the loop then skips the batches already done)
        decode_generator(loader_generator, position.epoch_rng)
    run.truncate_metrics(counters["update"])
    logging.getLogger("mmcls").info("resumed from %s: update %d, epoch %d, %d batches into it", checkpoint,
                                    counters["update"], counters["epoch"] + 1, position.batches)
    return counters, local_share(accelerator, position)


def save_last(accelerator: Any, run: Any, state: dict[str, Any] | None = None, keep: int = 1,
              parts: Mapping[str, Any] | None = None) -> None:
    """``checkpoints/last``: the full training state (model, optimizer, RNG, the resumable ``parts`` and the loop's
    ``trainer_state.json`` when given), swapped in atomically. Called by every process.

    ``keep`` > 1 keeps the previous ``keep - 1`` checkpoints too, as ``checkpoints/update-<N>`` (the update they
    were taken at), the oldest removed first.
    """
    tmp = run.checkpoints / "last.tmp"
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        skeleton, tensors = parts_state(parts or {})
        save_file(tensors, str(tmp / PART_TENSORS))
        if state is not None:
            (tmp / TRAINER_STATE).write_text(json.dumps({**state, "parts": skeleton}), encoding="utf-8")
        last = run.checkpoints / "last"
        kept = _kept_name(last) if keep > 1 else None
        same_update = (state is not None and kept is not None  # e.g. a validation right after a save
                       and kept.name == f"update-{state['state']['update']:08d}")
        if kept is not None and not kept.exists() and not same_update:
            last.rename(kept)  # between the renames a resume finds the newest update-* (find_checkpoint)
            tmp.rename(last)
        else:
            replace_dir(tmp, last)
        for old in sorted(run.checkpoints.glob("update-*"))[:-(keep - 1) or None]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _kept_name(last: Path) -> Path | None:
    """``update-<N>`` for the checkpoint now in ``last`` (None when it has no trainer state)."""
    state = last / TRAINER_STATE
    if not state.is_file():
        return None
    update = json.loads(state.read_text(encoding="utf-8"))["state"]["update"]
    return last.with_name(f"update-{update:08d}")


# ----------------------------------------------------------------------------------------------------------------
# the run's other resumable parts, as JSON and safetensors (never pickles)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _split(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as JSON, its tensors moved to ``tensors`` (referenced as ``{"__tensor__": key}``)."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, Mapping):
        return {"__dict__": [[k, _split(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_split(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key}: a {type(value).__name__} cannot be saved as resume state")


def _join(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`_split`."""
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__tuple__" in value:
            return tuple(_join(v, tensors) for v in value["__tuple__"])
        return {k: _join(v, tensors) for k, v in value["__dict__"]}
    return value


def parts_state(parts: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(JSON skeleton, tensors)`` of the ``state_dict()`` of each resumable part (scheduler, EMA ...)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {name: _split(part.state_dict(), name, tensors) for name, part in parts.items() if part is not None}
    return skeleton, tensors


def load_parts(parts: Mapping[str, Any], skeleton: Mapping[str, Any], checkpoint: Path) -> None:
    """Restore each part from the checkpoint: the parts saved must be exactly the parts this run has."""
    present = {name for name, part in parts.items() if part is not None}
    if set(skeleton) != present:
        raise ConfigError(f"output_dir: {checkpoint} holds the state of {sorted(skeleton) or 'no parts'}, this run "
                          f"has {sorted(present) or 'none'}; {_START_OVER}")
    if not present:
        return
    try:
        tensors = load_file(str(checkpoint / PART_TENSORS), device="cpu")
        for name in sorted(present):
            parts[name].load_state_dict(_join(skeleton[name], tensors))
    except Exception as exc:  # a missing, truncated or mismatched file: one line
        raise ConfigError(f"output_dir: cannot resume from {checkpoint}: {PART_TENSORS} or the parts in "
                          f"{TRAINER_STATE} do not load ({_first_line(exc)}); {_START_OVER}") from None


def check_state_files(checkpoint: Path, process_index: int) -> None:
    """Read each pickled state file of accelerate in ``checkpoint`` as data only (``weights_only=True``) and each
    safetensors header: a file that would run code, or that is corrupt, is one ConfigError naming it, before
    anything is loaded. The RNG states of this process must be there (accelerate would go on without them)."""
    from accelerate.utils import load

    rng = checkpoint / f"random_states_{process_index}.pkl"
    if not rng.is_file():
        raise ConfigError(f"output_dir: cannot resume from {checkpoint}: {rng.name} is missing; {_START_OVER}")
    for path in sorted(p for p in checkpoint.iterdir() if p.suffix == ".safetensors" and p.is_file()):
        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception as exc:
            raise ConfigError(f"output_dir: cannot resume from {checkpoint}: {path.name} is corrupt "
                              f"({_first_line(exc)[:120]}); {_START_OVER}") from None
    for path in sorted(p for p in checkpoint.iterdir() if p.suffix in _PICKLED_SUFFIXES and p.is_file()):
        try:
            value = load(str(path), map_location="cpu")
        except Exception as exc:
            raise ConfigError(f"output_dir: cannot resume from {checkpoint}: {path.name} is not a state file that "
                              f"loads without running code ({_first_line(exc)[:120]}); {_START_OVER}") from None
        if path == rng and not (isinstance(value, dict) and "torch_manual_seed" in value):
            raise ConfigError(f"output_dir: cannot resume from {checkpoint}: {path.name} holds no RNG states; "
                              f"{_START_OVER}")
