"""Pretraining on unlabelled videos: MLM, masked frame modelling, video-text matching (and contrastive), as plain
functions (no runner, no hooks), the same shape as :mod:`mmcls.engine.finetune`.

Read top to bottom: :func:`pretrain` builds everything from the config (the ``pretrain`` section picks the tasks and
their weights, ``train`` the optimisation), then loops over epochs and batches. The masks of each batch are drawn
on the device from a generator reseeded per batch from (seed, epoch, process, batch), so a run is reproducible.
Every epoch ends with a validation on ``pretrain.holdout`` held-out videos (fixed masks), a row in ``metrics.csv``
and, when the validation loss is the lowest so far, ``best/``: the folder ``model.init_from`` of finetuning takes
(and of pretraining, to continue from it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from mmcls.config import Config, PretrainConfig
from mmcls.data.dataset import ConcatVideoDataset, build_dataloader, build_dataset
from mmcls.data.splits import Split, build_tokenizer, load_pretrain_splits, pretrain_holdout
from mmcls.data.wwm import batch_word_ids
from mmcls.engine.freeze import TowerFreezer
from mmcls.engine.guard import NonFiniteGuard, guarded_step
from mmcls.engine.masking import mask_frames, mask_tokens, shuffle_videos
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
from mmcls.errors import ConfigError
from mmcls.model_folder import init_from_pretrained, load_pretrained_encoder, save_pretrained_folder
from mmcls.models import PRETRAIN_TASKS, build_pretrainer, model_summary
from mmcls.rundir import RunDir

TASKS = PRETRAIN_TASKS
ACCURACIES = ("mlm_accuracy", "mfm_accuracy", "itm_accuracy")
PRETRAIN_COLUMNS = ("step", "epoch", "train_loss", "lr", "val_loss", *(f"loss_{t}" for t in TASKS), *ACCURACIES,
                    "video_failures", "train_video_failures", "elapsed_s")


def videos_of(splits: list[Split], cfg: Config, tokenizer: Any, train: bool) -> ConcatVideoDataset:
    """One dataset over several annotation files (each reads its own frame folder); each part draws its random
    augmentations from its own seed, so sample i of two files never share them."""
    return ConcatVideoDataset([build_dataset(cfg.data, split, tokenizer, None, train=train, with_frames=True,
                                             seed=cfg.seed + 1_000_003 * k) for k, split in enumerate(splits)])


def finetuning_only_switches(cfg: Config) -> list[str]:
    """The train.* tricks that are switched on but belong to finetuning (classification losses, EMA, ...)."""
    t = cfg.train
    switches = {"train.ema": t.ema.decay > 0, "train.adversarial": t.adversarial.method != "none",
                "train.loss": t.loss != type(t.loss)(), "train.mix": t.mix.enabled, "train.swa": t.swa.mode != "none",
                "train.sam_rho": t.sam_rho > 0, "train.early_stopping_patience": t.early_stopping_patience > 0}
    return [name for name, on in switches.items() if on]


def task_weights(cfg: PretrainConfig) -> dict[str, float]:
    """The switched-on tasks and their loss weights."""
    weights = {task: getattr(cfg, f"{task}_weight") for task in TASKS}
    return {task: weight for task, weight in weights.items() if weight > 0}


def masked_inputs(batch: dict[str, Any], cfg: PretrainConfig, tokenizer: Any, generator: torch.Generator
                  ) -> dict[str, Any]:
    """The pretrainer's forward arguments for one batch: masked text, masked frames, shuffled videos."""
    weights = task_weights(cfg)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "frames": batch["frames"],
                              "frame_mask": batch["frame_mask"]}
    if "mlm" in weights:
        word_ids = batch_word_ids(input_ids, tokenizer).to(input_ids.device) if cfg.whole_word else None
        inputs["input_ids"], inputs["mlm_labels"] = mask_tokens(
            input_ids, attention_mask, tokenizer.all_special_ids, tokenizer.mask_token_id, len(tokenizer),
            cfg.mlm_prob, generator, word_ids=word_ids)
    if "mfm" in weights:
        inputs["mfm_mask"] = mask_frames(batch["frame_mask"], cfg.mfm_prob, generator)
    if "itm" in weights:
        inputs["itm_perm"], inputs["itm_matched"] = shuffle_videos(
            input_ids.shape[0], cfg.itm_prob, generator, input_ids.device, eligible=batch["frame_mask"].any(dim=1))
    if "itc" in weights:
        inputs["itc"], inputs["itc_temperature"] = True, cfg.itc_temperature
    return inputs


def total_loss(outputs: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The optimised loss: the weighted sum of the switched-on tasks' losses."""
    return sum(weight * outputs[f"loss_{task}"] for task, weight in weights.items())


def batch_generator(device: torch.device, *position: int) -> torch.Generator:
    """A generator on ``device`` seeded from where the batch is in the run, e.g. (seed, process, epoch, batch):
    distinct positions get independent streams (a hash of the tuple, not a sum that could collide)."""
    generator = torch.Generator(device=device)
    state = np.random.SeedSequence([p + 1 for p in position]).generate_state(2, dtype=np.uint32)  # p + 1: >= 0
    generator.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return generator


@torch.no_grad()
def validate(model: torch.nn.Module, loader: Any, accelerator: Accelerator, cfg: Config, tokenizer: Any
             ) -> dict[str, float]:
    """Mean task losses and accuracies on the held-out videos, with the same masks at every validation.

    Batch means weighted by batch size; under several processes the sampler's padding repeats a few videos of the
    last batch (a small, constant bias, which does not matter for picking the best epoch)."""
    weights = task_weights(cfg.pretrain)
    was_training = model.training
    model.eval()
    keys = ["val_loss", *(f"loss_{t}" for t in weights), *(a for a in ACCURACIES if a[:3] in weights)]
    sums = torch.zeros(len(keys) + 2, dtype=torch.float64, device=accelerator.device)  # + count, video failures
    for index, batch in enumerate(tqdm(loader, desc="validate", leave=False, dynamic_ncols=True,
                                       disable=not accelerator.is_local_main_process)):
        generator = batch_generator(accelerator.device, cfg.seed, -1, accelerator.process_index, index)
        with accelerator.autocast():
            outputs = model(**masked_inputs(batch, cfg.pretrain, tokenizer, generator))
        values = [total_loss(outputs, weights), *(outputs[k] for k in keys[1:])]
        n = batch["input_ids"].shape[0]
        sums[:-2] += torch.stack([v.detach().double() for v in values]) * n
        sums[-2] += n
        sums[-1] += sum(error is not None for error in batch["video_errors"])
    model.train(was_training)
    totals = accelerator.reduce(sums, "sum")
    count = max(float(totals[-2]), 1.0)
    return {**{k: float(v) / count for k, v in zip(keys, totals[:-2], strict=True)},
            "video_failures": int(totals[-1])}


@dataclass
class PretrainState:
    """Counters of the loop."""

    epoch: int = 0
    update: int = 0
    best_loss: float = math.inf
    best_update: int = -1
    eval_seconds: float = 0.0
    last_lr: float = 0.0


def pretrain(cfg: Config) -> dict[str, float]:
    """Pretrain the fusion model of ``cfg`` on ``pretrain.sources``; returns the best validation figures."""
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    run = RunDir(cfg.output_dir, accelerator.is_main_process, columns=PRETRAIN_COLUMNS)
    log = run.setup_logging()
    checkpoint, saved = open_run(cfg, run)
    run.save_config(cfg)
    weights = task_weights(cfg.pretrain)
    ignored = finetuning_only_switches(cfg)
    if ignored:
        log.info("pretraining ignores the finetuning tricks %s (they apply to finetune/train.py)", ", ".join(ignored))

    # ---- data -------------------------------------------------------------------------------------------------
    pretrained = load_pretrained_encoder(cfg.model.init_from) if cfg.model.init_from else None
    tokenizer = pretrained.tokenizer if pretrained else build_tokenizer(cfg.data, cfg.model.text.pretrained)
    sources = load_pretrain_splits(cfg.data, cfg.pretrain.sources)
    available = sum(len(split.records) for split in sources)
    if available <= cfg.pretrain.holdout:
        raise ConfigError(f"pretrain.holdout: {cfg.pretrain.holdout} held-out videos leave none of the {available} "
                          f"of {', '.join(cfg.pretrain.sources)} to pretrain on")
    train_splits, val_splits = pretrain_holdout(sources, cfg.pretrain.holdout, cfg.seed)
    train_set = videos_of(train_splits, cfg, tokenizer, train=True)
    val_set = videos_of(val_splits, cfg, tokenizer, train=False) if val_splits else None
    loader_generator = torch.Generator().manual_seed(cfg.seed)  # the shuffle; saved per epoch for resuming
    train_loader = build_dataloader(train_set, cfg.data, cfg.train.batch_size, shuffle=True, drop_last=True,
                                    generator=loader_generator)
    val_loader = build_dataloader(val_set, cfg.data, cfg.train.eval_batch_size) if val_set is not None else None
    log.info("data: %d pretraining / %d held-out videos from %s; tasks %s", len(train_set),
             len(val_set) if val_set is not None else 0,
             ", ".join(cfg.pretrain.sources), ", ".join(f"{t} x{w:g}" for t, w in weights.items()))

    # ---- model and optimisation -------------------------------------------------------------------------------
    cfg = with_feature_width(cfg, train_set, run)
    model = build_pretrainer(cfg, tokenizer, bert_config=pretrained.bert_config if pretrained else None,
                             load_pretrained=pretrained is None or not pretrained.supplies_vision(cfg.model.init_parts))
    if pretrained:  # continued pretraining (e.g. on a new domain's videos); heads too when the folder has them
        loaded = init_from_pretrained(model, pretrained, cfg.model.init_parts)
        log.info("model.init_from: %d tensors from %s", len(loaded), cfg.model.init_from)
    apply_model_switches(model, cfg)
    log.info("model:\n%s", model_summary(model))
    model = model.to(accelerator.device)  # first, so that AdamW can pick its fused CUDA kernel
    optimizer = optimizer_for(model, cfg.train)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    core = accelerator.unwrap_model(model)
    plan = plan_updates(len(train_loader), cfg)
    total_updates, epochs = plan.total_updates, plan.epochs
    scheduler = build_scheduler(optimizer, cfg.train, total_updates)
    accelerator.register_for_checkpointing(scheduler)
    freezer = TowerFreezer(core, cfg.train.freeze) if cfg.train.freeze.towers else None  # after DDP wrapping
    log.info("pretraining: %s", describe_plan(plan, cfg, accelerator))
    guard = NonFiniteGuard(cfg.train.max_nonfinite_updates)

    # ---- loop -------------------------------------------------------------------------------------------------
    state = PretrainState()
    position = EpochPosition()
    running = {name: 0.0 for name in ("loss", *(f"loss_{t}" for t in weights))}
    start = time.perf_counter()
    best: dict[str, float] = {}
    resumed_at = 0  # updates done before this process started (for the speed figure)
    if saved is not None:
        counters, position = restore(accelerator, checkpoint, saved, loader_generator, run)
        state, resumed_at = PretrainState(**counters), counters["update"]
        best, running, guard.skipped = saved["best"], saved["running"], saved["skipped"]
        position, running = local_share(accelerator, position, running)

    def save_checkpoint() -> None:
        """checkpoints/last with everything a resume needs (see mmcls.engine.resume)."""
        summed, summed_running = global_position(accelerator, position, running)
        extra = {"best": best, "running": summed_running, "skipped": guard.skipped}
        save_last_checkpoint(accelerator, run, trainer_state(cfg, state, summed, loader_generator, **extra),
                             cfg.train.keep_checkpoints)

    def validate_and_save() -> None:
        nonlocal best
        eval_start = time.perf_counter()
        train_loss, train_failures = epoch_figures(accelerator, position, running)
        scores = validate(model, val_loader, accelerator, cfg, tokenizer) if val_loader is not None else {}
        run.append_metrics({"step": state.update, "epoch": state.epoch, "train_loss": train_loss,
                            "lr": state.last_lr, **scores, "train_video_failures": train_failures,
                            "elapsed_s": round(time.perf_counter() - start, 1)})
        figures = " ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "video_failures")
        log.info("update %d epoch %d: %s", state.update, state.epoch, figures or f"train loss {train_loss:.4f}")
        loss = scores.get("val_loss", train_loss)
        if loss < state.best_loss:
            state.best_loss, state.best_update = loss, state.update
            best = {**scores, "update": state.update}
            if accelerator.is_main_process:
                save_pretrained_folder(run.best, core, cfg, tokenizer)
            log.info("new best pretraining loss %.4f -> %s", loss, run.best)
        save_checkpoint()
        state.eval_seconds += time.perf_counter() - eval_start

    model.train()
    for epoch in range(state.epoch, epochs):
        if state.update >= total_updates:  # a resumed run that had already finished
            break
        state.epoch = epoch
        train_set.set_epoch(epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        if not position.batches:
            running = dict.fromkeys(running, 0.0)
        loader, position = epoch_loader(accelerator, train_loader, loader_generator, position)
        bar = tqdm(loader, desc=f"pretrain {epoch + 1}/{epochs}", dynamic_ncols=True, initial=position.batches,
                   total=len(train_loader), disable=not accelerator.is_local_main_process)
        for batch in bar:
            if freezer is not None and (message := freezer.update(state.update)):
                log.info("update %d: %s", state.update, message)
            generator = batch_generator(accelerator.device, cfg.seed, epoch, accelerator.process_index,
                                        position.batches)  # the batch's index in the epoch, also after a resume
            with accelerator.accumulate(model):
                outputs = model(**masked_inputs(batch, cfg.pretrain, tokenizer, generator))
                loss = total_loss(outputs, weights)
                accelerator.backward(loss)
                guarded_step(accelerator, model.parameters(), optimizer, cfg.train.max_grad_norm, guard,
                             state.update + 1, save_checkpoint)
            position.batches += 1
            if math.isfinite(float(loss.detach())):
                running["loss"] += float(loss.detach())
                for task in weights:
                    running[f"loss_{task}"] += float(outputs[f"loss_{task}"].detach())
                position.running_n += 1
            position.failures += sum(e is not None for e in batch["video_errors"])
            if not accelerator.sync_gradients:
                continue
            lr = base_lr(optimizer)
            scheduler.step()
            state.update += 1
            state.last_lr = lr
            mean_loss = running["loss"] / max(1, position.running_n)
            if state.update % cfg.train.log_every == 0:
                show_progress(bar, mean_loss, lr, cfg.train.batch_size * accelerator.num_processes)
                run.scalar("train/lr", lr, state.update)
                for name, value in running.items():
                    run.scalar(f"train/{name}", value / max(1, position.running_n), state.update)
                for name in ACCURACIES:
                    if name in outputs:
                        run.scalar(f"train/{name}", float(outputs[name]), state.update)
            if cfg.train.eval_every and state.update % cfg.train.eval_every == 0:
                validate_and_save()
            elif cfg.train.checkpoint_every and state.update % cfg.train.checkpoint_every == 0:
                save_checkpoint()
            if state.update >= total_updates:
                break
        bar.close()
        position.epoch_done = True
        log.info("epoch %d done: train loss %.4f, %d unreadable training videos", epoch + 1,
                 *epoch_figures(accelerator, position, running))
        if not (cfg.train.eval_every and state.update % cfg.train.eval_every == 0):
            validate_and_save()
        elif cfg.train.checkpoint_every:
            save_checkpoint()
        position = EpochPosition()
        if state.update >= total_updates:
            break

    elapsed, speed = finish_run(core, accelerator, cfg, state.update - resumed_at, start, state.eval_seconds)
    log.info("done in %.1f s (pretraining %.1f videos/s): best loss %.4f at update %d -> %s", elapsed, speed,
             state.best_loss, state.best_update, run.best)
    run.close()
    accelerator.end_training()
    return {**best, "seconds": elapsed, "train_videos_per_s": speed, "skipped_updates": guard.skipped}
