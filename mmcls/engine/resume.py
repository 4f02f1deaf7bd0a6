"""Resuming a killed run: what ``checkpoints/last`` holds besides the tensors, and how a run finds it again.

``accelerator.save_state`` stores the model, optimizer, scheduler, gradient scaler, EMA, SWA snapshots list and
every RNG; :data:`TRAINER_STATE` adds the loop's counters, the position inside the epoch and the state of the
DataLoader's shuffling generator at the start of that epoch. Replaying the epoch's shuffle from that state and
skipping the batches already done gives, on CPU with a fixed seed, the same weights as a run that was never killed.

The checkpoint is written to ``last.tmp`` and swapped in by renames (:func:`mmcls.engine.runtime.save_last_checkpoint`);
a kill between the two renames leaves ``last.old``, which :func:`find_checkpoint` falls back to.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmcls.config import Config, runtime_keys, to_dict
from mmcls.errors import ConfigError

TRAINER_STATE = "trainer_state.json"

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
        if isinstance(value, dict) and prefix not in ("data.text_budgets", "data.text_truncation",
                                                      "model.vision.overrides"):
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
    done, the running loss and failures (what a mid-epoch resume restores)."""

    epoch_rng: str = ""
    batches: int = 0
    running: float = 0.0
    running_n: int = 0
    failures: int = 0
    epoch_done: bool = False

    def mean_loss(self) -> float:
        return self.running / max(1, self.running_n)


def open_run(cfg: Config, run: Any) -> tuple[Path | None, dict[str, Any] | None]:
    """``(checkpoint, trainer state)`` to resume from (``train.resume`` and a complete checkpoint of the same
    settings), else ``(None, None)`` after clearing the folder's old metrics and result."""
    checkpoint = find_checkpoint(run.checkpoints) if cfg.train.resume else None
    if checkpoint is None:
        run.start_fresh()
        return None, None
    saved = read_trainer_state(checkpoint)
    check_same_run(saved, cfg, checkpoint)  # before anything in the folder changes
    return checkpoint, saved


def restore(accelerator: Any, checkpoint: Path, saved: dict[str, Any], loader_generator: torch.Generator,
            run: Any) -> tuple[dict[str, Any], EpochPosition]:
    """Load the tensors and RNGs, set the shuffle generator, drop later metrics rows; returns the loop's counters
    (with ``epoch`` moved on when the checkpoint closed its epoch) and the position inside that epoch."""
    accelerator.load_state(str(checkpoint))
    counters, position = dict(saved["state"]), EpochPosition(**saved["position"])
    if position.epoch_done:  # the next epoch starts from the shuffle state saved after this one
        decode_generator(loader_generator, saved["loader_rng"])
        counters["epoch"], position = counters["epoch"] + 1, EpochPosition()
    else:  # replay this epoch's shuffle (the loop then skips the batches already done)
        decode_generator(loader_generator, position.epoch_rng)
    run.truncate_metrics(counters["update"])
    logging.getLogger("mmcls").info("resumed from %s: update %d, epoch %d, %d batches into it", checkpoint,
                                    counters["update"], counters["epoch"] + 1, position.batches)
    return counters, position


def global_position(accelerator: Any, position: EpochPosition, running: dict[str, float] | None = None
                    ) -> tuple[EpochPosition, dict[str, float] | None]:
    """The epoch's running sums over ALL processes (what a checkpoint stores; the main process writes it). Called by
    every process. On resume the main process takes the totals back and the others start from zero
    (:func:`local_share`), so the sums stay exact whatever the number of processes."""
    keys = sorted(running or {})
    local = torch.tensor([position.running, float(position.running_n), float(position.failures),
                          *(running[k] for k in keys)], dtype=torch.float64)
    totals = accelerator.reduce(local.to(accelerator.device), "sum").cpu().tolist()
    summed = dataclasses.replace(position, running=totals[0], running_n=int(totals[1]), failures=int(totals[2]))
    return summed, (dict(zip(keys, totals[3:], strict=True)) if running is not None else None)


def epoch_figures(accelerator: Any, position: EpochPosition, running: dict[str, float] | None = None
                  ) -> tuple[float, int]:
    """(mean training loss, unreadable videos) of the epoch so far over ALL processes, for metrics.csv and the log;
    the loss sum is ``running["loss"]`` when given (pretraining), else ``position.running``. Called by every
    process."""
    summed, summed_running = global_position(accelerator, position, running)
    loss_sum = summed_running["loss"] if summed_running is not None else summed.running
    return loss_sum / max(1, summed.running_n), summed.failures


def local_share(accelerator: Any, position: EpochPosition, running: dict[str, float] | None = None
                ) -> tuple[EpochPosition, dict[str, float] | None]:
    """A resumed process's part of the saved totals: all of them on the main process, zero elsewhere."""
    if accelerator.process_index == 0:
        return position, running
    zeroed = dataclasses.replace(position, running=0.0, running_n=0, failures=0)
    return zeroed, (dict.fromkeys(running, 0.0) if running is not None else None)


def epoch_loader(accelerator: Any, loader: Any, generator: torch.Generator, position: EpochPosition
                 ) -> tuple[Any, EpochPosition]:
    """The loader of a starting epoch and its position: a fresh position (recording the shuffle state), or after a
    resume the same loader minus the batches already done."""
    if position.batches:
        return accelerator.skip_first_batches(loader, position.batches), position
    return loader, EpochPosition(epoch_rng=encode_generator(generator))


def trainer_state(cfg: Config, counters: Any, position: EpochPosition, generator: torch.Generator,
                  **extra: Any) -> dict[str, Any]:
    """The JSON that goes into checkpoints/last next to the tensors."""
    return {"config": comparable_config(cfg), "state": dataclasses.asdict(counters),
            "position": dataclasses.asdict(position), "loader_rng": encode_generator(generator), **extra}
