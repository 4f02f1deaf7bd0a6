"""What both recipes build before the loop: the accelerator and run folder (:func:`open_session`), then the
prepared model, optimizer, schedule, freezer, EMA and guard (:func:`prepare_training`), handed to
:func:`mmcls.engine.loop.train`.

The learning-rate schedule counts optimizer updates and is stepped once per update by the loop (it is deliberately
not passed through ``accelerator.prepare``, which would step it once per process).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3

from mmcls.accelerators import training_accelerator
from mmcls.config import Config, build_config, to_dict
from mmcls.engine.ema import build_ema
from mmcls.engine.freeze import TowerFreezer
from mmcls.engine.guard import NonFiniteGuard
from mmcls.engine.last_checkpoint import open_run
from mmcls.engine.optim import build_scheduler, optimizer_for
from mmcls.errors import ConfigError
from mmcls.models import model_summary
from mmcls.rundir import METRIC_COLUMNS, RunDir


@dataclass
class Session:
    """One training run's process-level context: config, accelerator, run folder, and the checkpoint to resume."""

    cfg: Config
    accelerator: Accelerator
    run: RunDir
    checkpoint: Path | None
    saved: dict[str, Any] | None

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger("mmcls")

    def close(self) -> None:
        """Close the run's writers, release the run folder's lock and end the accelerator's training session."""
        self.run.close()
        self.accelerator.end_training()


def open_session(cfg: Config, columns: tuple[str, ...] = METRIC_COLUMNS) -> Session:
    """Accelerator, seed, run folder with logging and ``config.yaml``, and the resumable checkpoint if any."""
    accelerator = training_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum_steps)
    set_seed(cfg.seed)
    run = RunDir(cfg.output_dir, accelerator.is_main_process, columns=columns)
    run.lock()  # before anything is written: a second live run on this output_dir stops here (RunInUse)
    run.setup_logging()
    checkpoint, saved = open_run(cfg, run)
    run.save_config(cfg)
    return Session(cfg, accelerator, run, checkpoint, saved)


def with_feature_width(session: Session, dataset: Any) -> Config:
    """For cached frame features without ``data.feat_dim``: the width read from the files, saved in the run's
    config (a saved model is rebuilt from it)."""
    cfg = session.cfg
    if not cfg.data.reads_features or cfg.data.feat_dim is not None or cfg.model.mode == "text":
        return cfg
    session.cfg = build_config(to_dict(cfg), [f"data.feat_dim={dataset.frame_loader.source.feature_dim()}"])
    session.run.save_config(session.cfg)
    return session.cfg


def apply_model_switches(model: torch.nn.Module, cfg: Config) -> None:
    """The model-level speed and memory switches of ``cfg.train``, in place, before ``accelerator.prepare``:
    gradient checkpointing, channels_last frames for the vision tower, torch.compile."""
    if cfg.train.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if cfg.train.channels_last:
        model.encoder.set_channels_last(True)
    if cfg.train.compile:
        model.compile()  # in place: state_dict names, unwrap_model and checkpoints stay as they are


@dataclass(frozen=True)
class UpdatePlan:
    """How long a run is, in optimizer updates: the schedule's unit."""

    updates_per_epoch: int
    total_updates: int
    epochs: int


def plan_updates(batches_per_epoch: int, cfg: Config) -> UpdatePlan:
    """``train.max_steps`` updates, or ``train.epochs`` epochs of ``batches_per_epoch / grad_accum_steps``."""
    per_epoch = max(1, math.ceil(batches_per_epoch / cfg.train.grad_accum_steps))
    total = cfg.train.max_steps or cfg.train.epochs * per_epoch
    return UpdatePlan(per_epoch, total, math.ceil(total / per_epoch))


@dataclass
class Training:
    """The prepared pieces the loop drives. ``model`` is the prepared (maybe DDP-wrapped) model, ``core`` the
    unwrapped one (same parameters)."""

    session: Session
    model: torch.nn.Module
    core: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_set: Any
    train_loader: Any
    loader_generator: torch.Generator
    plan: UpdatePlan
    freezer: TowerFreezer | None
    ema: ModelEmaV3 | None
    guard: NonFiniteGuard
    #: what checkpoints/last saves besides the model, optimizer and RNGs, by name (``state_dict`` /
    #: ``load_state_dict``; a recipe adds its own, e.g. the SWA bookkeeping): see :mod:`.last_checkpoint`
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> Config:
        return self.session.cfg

    @property
    def accelerator(self) -> Accelerator:
        return self.session.accelerator

    @property
    def run(self) -> RunDir:
        return self.session.run

    @property
    def weights_name(self) -> str:
        """Which weights are validated and exported: ``ema`` when the EMA is on and evaluated, else ``model``."""
        return "ema" if self.ema is not None and self.cfg.train.ema.evaluate else "model"

    def evaluated_model(self) -> torch.nn.Module:
        """The weights that are validated and exported (see :attr:`weights_name`)."""
        return self.ema.module if self.weights_name == "ema" else self.model

    def describe(self) -> str:
        """One log line: updates, epochs, processes, global batch and precision of the run."""
        accelerator, cfg, plan = self.accelerator, self.cfg, self.plan
        global_batch = cfg.train.batch_size * cfg.train.grad_accum_steps * accelerator.num_processes
        return (f"{plan.total_updates} updates ({plan.epochs} epochs x {plan.updates_per_epoch}), "
                f"{accelerator.num_processes} process(es), global batch {global_batch}, "
                f"precision {accelerator.mixed_precision}")


def prepare_training(session: Session, model: torch.nn.Module, train_set: Any, train_loader: Any,
                     loader_generator: torch.Generator, eval_loaders: tuple[Any, ...] = ()
                     ) -> tuple[Training, tuple[Any, ...]]:
    """Model switches, optimizer, ``accelerator.prepare``, schedule, freezer, EMA and guard; returns the training
    and the prepared evaluation loaders (None entries stay None).

    The scheduler and the EMA are resumable ``parts`` of the training (a recipe adds its own).
    """
    cfg, accelerator = session.cfg, session.accelerator
    apply_model_switches(model, cfg)
    session.log.info("model:\n%s", model_summary(model))
    model = model.to(accelerator.device)  # first, so that AdamW can pick its fused CUDA kernel
    optimizer = optimizer_for(model, cfg.train)
    present = [loader for loader in eval_loaders if loader is not None]
    model, optimizer, train_loader, *prepared = accelerator.prepare(model, optimizer, train_loader, *present)
    it = iter(prepared)
    eval_prepared = tuple(next(it) if loader is not None else None for loader in eval_loaders)
    core = accelerator.unwrap_model(model)
    if len(train_loader) == 0:  # drop_last: fewer videos than one batch per process, so not a single update
        raise ConfigError(f"train.batch_size: {len(train_set)} training videos do not fill one batch of "
                          f"{cfg.train.batch_size} per process ({accelerator.num_processes} process(es); an "
                          "incomplete batch is dropped), so no update would be made; lower train.batch_size")
    plan = plan_updates(len(train_loader), cfg)
    scheduler = build_scheduler(optimizer, cfg.train, plan.total_updates)
    # after prepare: DDP must see every parameter trainable when it is built
    freezer = TowerFreezer(core, cfg.train.freeze) if cfg.train.freeze.towers else None
    ema = build_ema(core, cfg.train.ema)
    training = Training(session, model, core, optimizer, scheduler, train_set, train_loader, loader_generator, plan,
                        freezer, ema, NonFiniteGuard(cfg.train.max_nonfinite_updates),
                        parts={"scheduler": scheduler, "ema": ema})
    return training, eval_prepared
