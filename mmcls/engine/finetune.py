"""Finetuning: setup, the training loop, evaluation and saving, as plain functions (no runner, no hooks).

Read top to bottom: :func:`finetune` builds everything from the config, then loops over epochs and batches.
accelerate handles devices, mixed precision, gradient accumulation and multiple processes. The learning-rate
schedule counts optimizer updates and is stepped once per update (it is deliberately not passed through
``accelerator.prepare``, which would step it once per process).

The competition tricks are config switches (docs/RECIPES.md): what happens inside one micro-batch (mixup,
R-Drop, FGM/PGD, SAM) lives in :mod:`mmcls.engine.step`; around it this loop freezes and unfreezes towers, keeps
the EMA, validates (the EMA weights when on), keeps SWA snapshots and stops early.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from mmcls.config import Config
from mmcls.data.categories import CategorySpace
from mmcls.data.dataset import ConcatVideoDataset, VideoTextDataset, build_dataloader, build_dataset
from mmcls.data.soft_targets import SoftTargets
from mmcls.data.splits import Split, build_tokenizer, load_labelled_splits, load_pseudo_split
from mmcls.engine.averaging import WeightAverager
from mmcls.engine.ema import build_ema
from mmcls.engine.freeze import TowerFreezer
from mmcls.engine.guard import NonFiniteGuard, guarded_step
from mmcls.engine.inference import InferenceResult, run_inference
from mmcls.engine.losses import Criterion
from mmcls.engine.optim import build_scheduler, optimizer_for
from mmcls.engine.resume import (
    EpochPosition,
    epoch_figures,
    epoch_loader,
    global_position,
    local_share,
    open_run,
    restore,
    trainer_state,
)
from mmcls.engine.runtime import (
    apply_model_switches,
    base_lr,
    describe_plan,
    finish_run,
    make_accelerator,
    plan_updates,
    save_last_checkpoint,
    show_progress,
    with_feature_width,
)
from mmcls.engine.step import TrainStep
from mmcls.logits import save_logits
from mmcls.metrics import mean_f1_from_indices, write_submission
from mmcls.model_folder import init_from_pretrained, load_pretrained_encoder, save_portable
from mmcls.models import build_model, model_summary
from mmcls.rundir import VAL_LOGITS, VAL_TRUTH, RunDir


def evaluate(model: torch.nn.Module, loader: Any, accelerator: Accelerator, cfg: Config,
             categories: CategorySpace, desc: str = "validate") -> tuple[dict[str, float], InferenceResult]:
    """Validation loss and WBDC mean-F1 (level 1 derived from the level-2 prediction, as in the competition), and
    the per-video logits they came from.

    ``model`` may be the prepared model or an unprepared copy on the same device (EMA, SWA average): inference
    runs under the run's autocast either way.
    """
    with accelerator.autocast():
        result = run_inference(model, loader, accelerator, cfg.model, desc=desc)
    scores = mean_f1_from_indices(result.labels, result.logits.argmax(axis=1), categories.lv1_index_of_lv2())
    return {**scores, "val_loss": result.loss, "video_failures": result.video_failures}, result


def save_validation_logits(run: RunDir, result: InferenceResult, categories: CategorySpace) -> None:
    """``val_logits.npy`` (+ ids, classes) of the best weights: out-of-fold predictions when validating on a fold;
    and ``val_truth.csv``, the validation labels as a truth file (for plots, reports and tools/evaluate.py)."""
    if run.is_main:
        save_logits(run.path / VAL_LOGITS, result.ids, result.logits, categories.lv2_ids)
        labelled = [(vid, categories.lv2_ids[label]) for vid, label in zip(result.ids, result.labels, strict=True)
                    if label >= 0]
        write_submission(run.path / VAL_TRUTH, [vid for vid, _ in labelled], [cat for _, cat in labelled])


def write_plots(run_dir: str | os.PathLike) -> None:
    """RUN/plots/*.png (mmcls.plots); a plotting failure is logged and never fails the finished run."""
    log = logging.getLogger("mmcls")
    try:
        from mmcls.plots import write_run_plots

        written = write_run_plots(run_dir)
        log.info("plots: %s", ", ".join(path.name for path in written))
    except Exception as exc:  # the weights and metrics are saved; pictures are a bonus
        log.warning("plots skipped: %s: %s", type(exc).__name__, exc)


def build_train_set(cfg: Config, train_split: Split, val_split: Split, categories: CategorySpace, tokenizer: Any
                    ) -> tuple[VideoTextDataset | ConcatVideoDataset, Split | None]:
    """The training dataset: the labelled training split plus the ``data.pseudo`` videos (never any id of the
    validation split), with the soft targets of ``train.distill`` and of soft pseudo-labels."""
    with_frames = cfg.model.mode != "text"  # video mode still needs [CLS] [SEP] from the text side
    pseudo_split = load_pseudo_split(cfg.data, categories, {r.id for r in train_split.records + val_split.records},
                                     with_frames)
    training_records = train_split.records + (pseudo_split.records if pseudo_split else [])
    soft_targets = SoftTargets.from_config(cfg.train.distill, categories, training_records)
    train_set = build_dataset(cfg.data, train_split, tokenizer, categories, train=True, with_frames=with_frames,
                              seed=cfg.seed, soft_targets=soft_targets)
    if pseudo_split is None:
        return train_set, None
    pseudo_set = build_dataset(cfg.data, pseudo_split, tokenizer, categories, train=True, with_frames=with_frames,
                               seed=cfg.seed + 1, soft_targets=soft_targets)  # its own augmentation stream
    return ConcatVideoDataset([train_set, pseudo_set]), pseudo_split


@dataclass
class TrainState:
    """Counters of the loop (what a resumable checkpoint must restore besides the tensors)."""

    epoch: int = 0
    update: int = 0
    best_score: float = -1.0
    best_update: int = -1
    evals_since_best: int = 0
    eval_seconds: float = 0.0
    last_lr: float = 0.0
    stopped_early: bool = False


def finetune(cfg: Config) -> dict[str, float]:
    """Train the classifier of ``cfg``; returns the best validation scores. Writes the run directory."""
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    run = RunDir(cfg.output_dir, accelerator.is_main_process)
    log = run.setup_logging()
    checkpoint, saved = open_run(cfg, run)
    run.save_config(cfg)

    # ---- data -------------------------------------------------------------------------------------------------
    pretrained = load_pretrained_encoder(cfg.model.init_from) if cfg.model.init_from else None
    tokenizer = pretrained.tokenizer if pretrained else build_tokenizer(cfg.data, cfg.model.text.pretrained)
    train_split, val_split, categories = load_labelled_splits(cfg.data, cfg.seed)
    train_set, pseudo_split = build_train_set(cfg, train_split, val_split, categories, tokenizer)
    val_set = build_dataset(cfg.data, val_split, tokenizer, categories, train=False,
                            with_frames=cfg.model.mode != "text", seed=cfg.seed)
    loader_generator = torch.Generator().manual_seed(cfg.seed)  # the shuffle; saved per epoch for resuming
    train_loader = build_dataloader(train_set, cfg.data, cfg.train.batch_size, shuffle=True, drop_last=True,
                                    generator=loader_generator)
    val_loader = build_dataloader(val_set, cfg.data, cfg.train.eval_batch_size)
    log.info("data: %d train%s / %d val videos, %d categories (%d level-1)", len(train_set),
             f" ({len(pseudo_split.records)} pseudo-labelled)" if pseudo_split else "", len(val_set),
             categories.num_lv2, categories.num_lv1)

    # ---- model and optimisation -------------------------------------------------------------------------------
    cfg = with_feature_width(cfg, train_set, run)
    model = build_model(cfg, categories.num_lv2, categories.num_lv1, tokenizer,
                        bert_config=pretrained.bert_config if pretrained else None,
                        load_pretrained=pretrained is None or not pretrained.supplies_vision(cfg.model.init_parts))
    if pretrained:
        loaded = init_from_pretrained(model, pretrained, cfg.model.init_parts)
        log.info("model.init_from: %d tensors from %s (the classifier heads start fresh)", len(loaded),
                 cfg.model.init_from)
    apply_model_switches(model, cfg)
    log.info("model:\n%s", model_summary(model))
    criterion = Criterion.from_config(cfg, categories, across_processes=True).to(accelerator.device)
    model = model.to(accelerator.device)  # first, so that AdamW can pick its fused CUDA kernel
    optimizer = optimizer_for(model, cfg.train)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    core = accelerator.unwrap_model(model)
    plan = plan_updates(len(train_loader), cfg)
    total_updates, epochs = plan.total_updates, plan.epochs
    scheduler = build_scheduler(optimizer, cfg.train, total_updates)
    accelerator.register_for_checkpointing(scheduler)
    # after prepare: DDP must see every parameter trainable when it is built
    freezer = TowerFreezer(core, cfg.train.freeze) if cfg.train.freeze.towers else None
    ema = build_ema(core, cfg.train.ema)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    averager = (WeightAverager(run.checkpoints / "swa", cfg.train.swa.mode, cfg.train.swa.count,
                               write=accelerator.is_main_process) if cfg.train.swa.mode != "none" else None)
    if averager is not None:
        accelerator.register_for_checkpointing(averager)
    train_step = TrainStep(cfg, model, core, criterion, accelerator, cfg.seed)
    guard = NonFiniteGuard(cfg.train.max_nonfinite_updates)
    log.info("training: %s", describe_plan(plan, cfg, accelerator))

    # ---- loop -------------------------------------------------------------------------------------------------
    state = TrainState()
    position = EpochPosition()
    start = time.perf_counter()
    best_scores: dict[str, float] = {}
    resumed_at = 0  # updates done before this process started (for the speed figure)
    if saved is not None:
        counters, position = restore(accelerator, checkpoint, saved, loader_generator, run)
        position, _ = local_share(accelerator, position)
        state, resumed_at = TrainState(**counters), counters["update"]
        best_scores, guard.skipped = saved["best_scores"], saved["skipped"]
        train_step.load_state_dict(saved["step"])

    def save_checkpoint() -> None:
        """checkpoints/last with everything a resume needs (see mmcls.engine.resume)."""
        extra = {"best_scores": best_scores, "step": train_step.state_dict(), "skipped": guard.skipped}
        summed, _ = global_position(accelerator, position)
        save_last_checkpoint(accelerator, run, trainer_state(cfg, state, summed, loader_generator, **extra),
                             cfg.train.keep_checkpoints)

    def evaluated_model() -> torch.nn.Module:
        """The weights that are validated and exported: the EMA when it is on and evaluated, else the model."""
        return ema.module if ema is not None and cfg.train.ema.evaluate else model

    weights_name = "ema" if ema is not None and cfg.train.ema.evaluate else "model"

    def validate_and_save() -> None:
        nonlocal best_scores
        eval_start = time.perf_counter()
        train_loss, train_failures = epoch_figures(accelerator, position)
        scores, result = evaluate(evaluated_model(), val_loader, accelerator, cfg, categories)
        row = {"step": state.update, "epoch": state.epoch, "train_loss": train_loss, "lr": state.last_lr, **scores,
               "train_video_failures": train_failures, "elapsed_s": round(time.perf_counter() - start, 1),
               "weights": weights_name}
        run.append_metrics(row)
        log.info("update %d epoch %d: mean_f1 %.4f (lv1 %.4f/%.4f lv2 %.4f/%.4f) val_loss %s; unreadable videos: "
                 "%d val, %d train this epoch", state.update, state.epoch, scores["mean_f1"], scores["lv1_micro_f1"],
                 scores["lv1_macro_f1"], scores["lv2_micro_f1"], scores["lv2_macro_f1"], _fmt(scores["val_loss"]),
                 scores["video_failures"], train_failures)
        if scores["mean_f1"] > state.best_score:
            state.best_score, state.best_update, state.evals_since_best = scores["mean_f1"], state.update, 0
            best_scores = {**scores, "update": state.update}
            if accelerator.is_main_process:
                save_portable(run.best, accelerator.unwrap_model(evaluated_model()), cfg, categories, tokenizer)
            save_validation_logits(run, result, categories)
            log.info("new best mean_f1 %.4f -> %s", state.best_score, run.best)
        else:
            state.evals_since_best += 1
        if averager is not None and cfg.train.swa.mode == "topk":
            averager.offer(accelerator.unwrap_model(evaluated_model()), update=state.update, score=scores["mean_f1"])
        patience = cfg.train.early_stopping_patience
        if patience and state.evals_since_best >= patience:
            state.stopped_early = True
            log.info("early stopping: no better mean_f1 in %d validations (best %.4f at update %d)", patience,
                     state.best_score, state.best_update)
        save_checkpoint()
        state.eval_seconds += time.perf_counter() - eval_start

    model.train()
    for epoch in range(state.epoch, epochs):
        if state.update >= total_updates or state.stopped_early:  # a resumed run that had already finished
            break
        state.epoch = epoch
        train_set.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        loader, position = epoch_loader(accelerator, train_loader, loader_generator, position)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", dynamic_ncols=True, initial=position.batches,
                   total=len(train_loader), disable=not accelerator.is_local_main_process)
        for batch in bar:
            if freezer is not None and (message := freezer.update(state.update)):
                log.info("update %d: %s", state.update, message)
            with accelerator.accumulate(model):
                losses = train_step(batch)
                guarded_step(accelerator, model.parameters(), optimizer, cfg.train.max_grad_norm, guard,
                             state.update + 1, save_checkpoint)
            position.batches += 1
            if math.isfinite(loss := float(losses["loss"])):
                position.running += loss
                position.running_n += 1
            position.failures += sum(e is not None for e in batch["video_errors"])
            if not accelerator.sync_gradients:
                continue
            lr = base_lr(optimizer)  # the rate this update used
            scheduler.step()
            state.update += 1
            state.last_lr = lr
            if ema is not None:
                ema.update(core, step=state.update)
            if state.update % cfg.train.log_every == 0:
                show_progress(bar, position.mean_loss(), lr, cfg.train.batch_size * accelerator.num_processes)
                run.scalar("train/loss", position.mean_loss(), state.update)
                run.scalar("train/lr", lr, state.update)
                for name, value in losses.items():
                    if name != "loss":
                        run.scalar(f"train/{name}", float(value), state.update)
            if cfg.train.eval_every and state.update % cfg.train.eval_every == 0:
                validate_and_save()
            elif cfg.train.checkpoint_every and state.update % cfg.train.checkpoint_every == 0:
                save_checkpoint()
            if state.update >= total_updates or state.stopped_early:
                break
        bar.close()
        position.epoch_done = True
        log.info("epoch %d done: train loss %.4f, %d unreadable training videos", epoch + 1,
                 *epoch_figures(accelerator, position))
        if averager is not None and cfg.train.swa.mode == "last":
            averager.offer(accelerator.unwrap_model(evaluated_model()), update=state.update, score=None)
        if not state.stopped_early and not (cfg.train.eval_every and state.update % cfg.train.eval_every == 0):
            validate_and_save()
        elif cfg.train.checkpoint_every:
            save_checkpoint()
        position = EpochPosition()
        if state.update >= total_updates or state.stopped_early:
            break

    if averager is not None:
        best_scores = validate_average(averager, core, val_loader, accelerator, cfg, categories, tokenizer, run,
                                       state, best_scores)
    elapsed, speed = finish_run(core, accelerator, cfg, state.update - resumed_at, start, state.eval_seconds)
    log.info("done in %.1f s (training %.1f videos/s): best mean_f1 %.4f at update %d -> %s", elapsed, speed,
             state.best_score, state.best_update, run.best)
    summary = {**best_scores, "seconds": elapsed, "train_videos_per_s": speed, "skipped_updates": guard.skipped}
    run.save_result(summary)
    if accelerator.is_main_process:
        write_plots(run.path)
    run.close()
    accelerator.end_training()
    return summary


def validate_average(averager: WeightAverager, core: torch.nn.Module, loader: Any, accelerator: Accelerator,
                     cfg: Config, categories: CategorySpace, tokenizer: Any, run: RunDir, state: TrainState,
                     best_scores: dict[str, float]) -> dict[str, float]:
    """SWA: validate the average of the kept snapshots, save it to ``swa/``, and make it ``best/`` if it wins."""
    log = logging.getLogger("mmcls")
    accelerator.wait_for_everyone()  # the main process has written every snapshot
    averaged = averager.average()
    if averaged is None:
        return best_scores
    swa_model = copy.deepcopy(core)
    swa_model.load_state_dict(averaged)
    scores, result = evaluate(swa_model, loader, accelerator, cfg, categories, desc="validate swa")
    run.append_metrics({"step": state.update, "epoch": state.epoch, "train_loss": None, "lr": None,
                        **scores, "elapsed_s": None, "weights": "swa"})
    log.info("SWA of %d snapshots: mean_f1 %.4f (best single %.4f)", len(averager.kept), scores["mean_f1"],
             state.best_score)
    if accelerator.is_main_process:
        save_portable(run.path / "swa", swa_model, cfg, categories, tokenizer)
        if scores["mean_f1"] > state.best_score:
            save_portable(run.best, swa_model, cfg, categories, tokenizer)
            save_validation_logits(run, result, categories)
    if scores["mean_f1"] > state.best_score:
        state.best_score, state.best_update = scores["mean_f1"], state.update
        best_scores = {**scores, "update": state.update, "swa": 1.0}
        log.info("the SWA average is the new best -> %s", run.best)
    accelerator.wait_for_everyone()
    return best_scores


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"

