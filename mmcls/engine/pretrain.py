"""Pretraining on unlabelled videos: what the MLM / MFM / ITM / ITC / order recipe adds to the shared loop
(:mod:`mmcls.engine.loop`).

Read :func:`pretrain` top to bottom: the videos of ``pretrain.sources`` minus ``pretrain.holdout`` held-out ones,
the pretrainer (the classifier's encoder with the task heads), the prepared training, then :class:`Pretraining`
(its step: masking and the task losses through :class:`~mmcls.engine.step.TrainStep`, so FGM / PGD on the word
embeddings, SAM, clipping, EMA and freezing work as in finetuning; its evaluation: the held-out task losses and
accuracies with fixed masks; best = lowest held-out loss, saved as the ``best/`` folder that ``model.init_from``
takes). The masks of each batch are drawn on the device from a generator reseeded per batch from (seed, epoch,
process, batch), so a run is reproducible and resumes exactly.

Finetuning-only switches (classification losses, mixing, SWA, distillation, the frame attack) are a
:class:`~mmcls.errors.ConfigError` naming the key, never silently ignored.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from mmcls.config import Config, LossConfig, PretrainConfig
from mmcls.data.dataset import ConcatVideoDataset, build_dataloader, build_dataset
from mmcls.data.splits import AnnotationSet, build_tokenizer, load_pretrain_splits, pretrain_holdout
from mmcls.data.wwm import batch_word_ids
from mmcls.engine.guard import no_model_error, unexportable
from mmcls.engine.last_checkpoint import EpochPosition
from mmcls.engine.loop import Evaluation, train
from mmcls.engine.masking import mask_frames, mask_tokens, order_frames, shuffle_videos
from mmcls.engine.session import Training, open_session, prepare_training, with_feature_width
from mmcls.engine.step import StepInputs, TrainStep
from mmcls.errors import ConfigError
from mmcls.model_folder import init_from_pretrained, load_pretrained_encoder, save_pretrained_folder
from mmcls.models import PRETRAIN_TASKS, build_pretrainer

TASKS = PRETRAIN_TASKS
ACCURACIES = ("mlm_accuracy", "mfm_accuracy", "itm_accuracy", "order_accuracy")
PRETRAIN_COLUMNS = ("step", "epoch", "train_loss", "lr", "val_loss", *(f"loss_{t}" for t in TASKS), *ACCURACIES,
                    "video_failures", "train_video_failures", "elapsed_s", "weights")
# what a pretraining step may return (averaged over the epoch)
FIGURES = ("loss", *(f"loss_{t}" for t in TASKS), *ACCURACIES, "loss_adv")


def videos_of(splits: list[AnnotationSet], cfg: Config, tokenizer: Any, train: bool) -> ConcatVideoDataset:
    """One dataset over several annotation files (each reads its own frame folder); each part draws its random
    augmentations from its own seed, so sample i of two files never share them."""
    return ConcatVideoDataset([build_dataset(cfg.data, split, tokenizer, None, train=train, with_frames=True,
                                             seed=cfg.seed + 1_000_003 * k) for k, split in enumerate(splits)])


def check_pretraining_switches(cfg: Config) -> None:
    """ConfigError naming the first ``train.*`` switch that is on but has no meaning for pretraining (it has no
    classes: classification losses, mixing of labelled samples, SWA on mean-F1, distillation; and its model does not
    expose frame features to attack)."""
    t = cfg.train
    finetuning_only = {
        "train.loss": t.loss != LossConfig(),
        "train.mix": t.mix.enabled,
        "train.swa.mode": t.swa.mode != "none",
        "train.distill.teacher": t.distill.teacher is not None,
        "train.adversarial.frames": t.adversarial.method != "none" and t.adversarial.frames,
    }
    for key, on in finetuning_only.items():
        if on:
            raise ConfigError(f"{key}: a finetuning trick that pretraining cannot use; switch it off in the "
                              "pretraining config (e.g. configs/pretrain.yaml)")


def task_weights(cfg: PretrainConfig) -> dict[str, float]:
    """The switched-on tasks and their loss weights."""
    weights = {task: getattr(cfg, f"{task}_weight") for task in TASKS}
    return {task: weight for task, weight in weights.items() if weight > 0}


def masked_inputs(batch: dict[str, Any], cfg: PretrainConfig, tokenizer: Any, generator: torch.Generator
                  ) -> dict[str, Any]:
    """The pretrainer's forward arguments for one batch: masked text, masked frames, shuffled videos, permuted
    frames (the order task's draw comes last, so switching it on leaves the other tasks' masks as they were)."""
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
    if "order" in weights:
        inputs["order_perm"], inputs["order_labels"] = order_frames(batch["frame_mask"].to(input_ids.device),
                                                                    generator)
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
    keys = ["val_loss", *(f"loss_{t}" for t in weights), *(a for a in ACCURACIES if a.split("_")[0] in weights)]
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


class PretrainObjective:
    """Pretraining's objective: the batch's masks (drawn once per micro-batch from its position in the run, so every
    pass of the step sees the same ones) and the weighted task losses."""

    def __init__(self, cfg: Config, model: torch.nn.Module, tokenizer: Any, device: torch.device,
                 process_index: int) -> None:
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.device, self.process_index = device, process_index
        self.weights = task_weights(cfg.pretrain)

    def prepare(self, batch: dict[str, Any], epoch: int, index: int) -> StepInputs:
        generator = batch_generator(self.device, self.cfg.seed, epoch, self.process_index, index)
        return StepInputs(masked_inputs(batch, self.cfg.pretrain, self.tokenizer, generator))

    def losses(self, batch: dict[str, Any], step: StepInputs, frame_features: torch.Tensor | None = None,
               rdrop: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        outputs = self.model(**step.inputs)
        figures = {name: value for name, value in outputs.items() if name.startswith("loss_") or name in ACCURACIES}
        return {"loss": total_loss(outputs, self.weights), **figures}, outputs

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Pretraining:
    """The pretraining recipe: its step, its evaluation on the held-out videos (best = lowest loss)."""

    figures = FIGURES

    def __init__(self, t: Training, val_loader: Any, tokenizer: Any) -> None:
        self.t, self.val_loader, self.tokenizer = t, val_loader, tokenizer
        objective = PretrainObjective(t.cfg, t.model, tokenizer, t.accelerator.device, t.accelerator.process_index)
        self.train_step = TrainStep(t.cfg, t.model, t.core, t.accelerator, objective)
        self.best_loss, self.best_update = math.inf, -1
        self.best: dict[str, float] = {}
        self.refused: tuple[str, int] | None = None  # why the last validated weights were not exportable, and when

    def step(self, batch: dict[str, Any], epoch: int, index: int) -> dict[str, torch.Tensor]:
        return self.train_step(batch, epoch, index)

    def evaluate(self, weights: torch.nn.Module, update: int, train: EpochPosition) -> Evaluation:
        t, log = self.t, logging.getLogger("mmcls")
        scores = validate(weights, self.val_loader, t.accelerator, t.cfg, self.tokenizer) \
            if self.val_loader is not None else {}
        figures = " ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "video_failures")
        log.info("update %d: %s", update, figures or f"train loss {train.mean():.4f}")
        loss = scores.get("val_loss", train.mean())
        refused = unexportable(t.accelerator.unwrap_model(weights), t.accelerator, t.guard, update)
        if refused is not None:
            self.refused = (refused, update)
            log.warning("update %d: not exported as best: %s", update, refused)
        improved = loss < self.best_loss and refused is None  # a NaN loss is never lower
        if improved:
            self.best_loss, self.best_update = loss, update
            self.best = {**scores, "update": update}
            if t.accelerator.is_main_process:
                save_pretrained_folder(t.run.best, t.accelerator.unwrap_model(weights), t.cfg, self.tokenizer)
            log.info("new best pretraining loss %.4f -> %s", loss, t.run.best)
        return Evaluation({**scores, "weights": t.weights_name}, improved)

    def end_epoch(self, weights: torch.nn.Module, update: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_update": self.best_update, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss, self.best_update, self.best = state["best_loss"], state["best_update"], state["best"]


def pretrain(cfg: Config) -> dict[str, float]:
    """Pretrain the fusion model of ``cfg`` on ``pretrain.sources``; returns the best validation figures."""
    check_pretraining_switches(cfg)
    session = open_session(cfg, columns=PRETRAIN_COLUMNS)
    log = session.log
    weights = task_weights(cfg.pretrain)

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
    loader_generator = torch.Generator().manual_seed(cfg.seed)  # workers' base seeds (the order: EpochShuffle)
    train_loader = build_dataloader(train_set, cfg.data, cfg.train.batch_size, shuffle=True, drop_last=True,
                                    generator=loader_generator, seed=cfg.seed)
    val_loader = build_dataloader(val_set, cfg.data, cfg.train.eval_batch_size) if val_set is not None else None
    log.info("data: %d pretraining / %d held-out videos from %s; tasks %s", len(train_set),
             len(val_set) if val_set is not None else 0,
             ", ".join(cfg.pretrain.sources), ", ".join(f"{t} x{w:g}" for t, w in weights.items()))

    # ---- model and training -----------------------------------------------------------------------------------
    cfg = with_feature_width(session, train_set)
    parts = cfg.model.init_parts
    model = build_pretrainer(cfg, tokenizer, text_config=pretrained.text_config if pretrained else None,
                             load_pretrained=pretrained is None or not pretrained.supplies_vision(parts),
                             vision_config=pretrained.vision_config_for(parts) if pretrained else None)
    if pretrained:  # continued pretraining (e.g. on a new domain's videos); heads too when the folder has them
        loaded = init_from_pretrained(model, pretrained, cfg.model.init_parts)
        log.info("model.init_from: %d tensors from %s", len(loaded), cfg.model.init_from)
    training, (val_loader,) = prepare_training(session, model, train_set, train_loader, loader_generator,
                                               (val_loader,))
    recipe = Pretraining(training, val_loader, tokenizer)
    log.info("pretraining: %s", training.describe())
    result = train(training, recipe)
    if recipe.best_update < 0:  # every validated model was NaN or untrained (or its loss NaN): an error, not a model
        session.close()
        reason, update = recipe.refused or ("none was finite and trained", result.state.update)
        raise no_model_error(reason, update)
    log.info("done in %.1f s (pretraining %.1f videos/s): best loss %.4f at update %d -> %s", result.seconds,
             result.videos_per_s, recipe.best_loss, recipe.best_update, training.run.best)
    summary = {**recipe.best, "seconds": result.seconds, "train_videos_per_s": result.videos_per_s,
               "skipped_updates": result.skipped_updates}
    training.run.save_result(summary)  # marks the run finished, as finetuning's does
    session.close()
    return summary
