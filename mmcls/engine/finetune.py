"""Finetuning: what the classification recipe adds to the shared loop (:mod:`mmcls.engine.loop`).

Read :func:`finetune` top to bottom: the data (labelled split, pseudo-labels, soft targets), the classifier, the
prepared training, then :class:`Finetuning` (its step: mixing, R-Drop, FGM / PGD and SAM through
:class:`~mmcls.engine.step.TrainStep`; its evaluation: WBDC mean-F1, ``best/`` and the validation logits; SWA
snapshots), the loop, and the end of the run (the SWA average, ``result.json``, plots). The loop itself owns
accumulation, the non-finite guard, the schedule, EMA, freezing, logging, early stopping, checkpoints and resume.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import torch
from accelerate import Accelerator

from mmcls.config import Config
from mmcls.data.categories import CategorySpace
from mmcls.data.dataset import ConcatVideoDataset, VideoTextDataset, build_dataloader, build_dataset
from mmcls.data.flips import FlipLabelMap
from mmcls.data.soft_targets import SoftTargets
from mmcls.data.splits import AnnotationSet, build_tokenizer, load_labelled_splits, load_pseudo_splits
from mmcls.engine.averaging import WeightAverager
from mmcls.engine.guard import no_model_error, nonfinite_weights, unexportable
from mmcls.engine.inference import InferenceResult, run_inference
from mmcls.engine.last_checkpoint import EpochPosition
from mmcls.engine.loop import Evaluation, LoopResult, LoopState, train
from mmcls.engine.losses import Criterion
from mmcls.engine.session import Training, open_session, prepare_training, with_feature_width
from mmcls.engine.step import classification_step
from mmcls.logits import predicted_indices, save_logits
from mmcls.metrics import mean_f1_from_indices, write_submission
from mmcls.model_folder import init_from_pretrained, load_pretrained_encoder, save_portable
from mmcls.models import build_model
from mmcls.rundir import VAL_LOGITS, VAL_TRUTH, RunDir

# what a finetuning step may return (averaged over the epoch; absent parts are not averaged)
FIGURES = ("loss", "loss_lv2", "loss_lv1", "loss_video", "loss_rdrop", "loss_adv")


def evaluate(model: torch.nn.Module, loader: Any, accelerator: Accelerator, cfg: Config,
             categories: CategorySpace, desc: str = "validate") -> tuple[dict[str, float], InferenceResult]:
    """Validation loss and WBDC mean-F1 (level 1 derived from the level-2 prediction, as in the competition), and
    the per-video logits they came from.

    ``model`` may be the prepared model or an unprepared copy on the same device (EMA, SWA average): inference
    runs under the run's autocast either way.
    """
    with accelerator.autocast():
        result = run_inference(model, loader, accelerator, cfg.model, desc=desc)
    predicted, _ = predicted_indices(result.logits)
    scores = mean_f1_from_indices(result.labels, predicted, categories.lv1_index_of_lv2())
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


def build_train_set(cfg: Config, train_split: AnnotationSet, val_split: AnnotationSet, categories: CategorySpace,
                    tokenizer: Any, flip_map: FlipLabelMap | None = None
                    ) -> tuple[VideoTextDataset | ConcatVideoDataset, list[AnnotationSet]]:
    """The training dataset: the labelled training split plus the ``data.pseudo`` videos (never any id of the
    validation split), with the soft targets of ``train.distill`` and of soft pseudo-labels, and the labels a
    horizontal flip swaps (``flip_map``)."""
    with_frames = cfg.model.mode != "text"  # video mode still needs [CLS] [SEP] from the text side
    pseudo_splits = load_pseudo_splits(cfg.data, categories, {r.id for r in train_split.records + val_split.records},
                                       with_frames)
    training_records = train_split.records + [r for split in pseudo_splits for r in split.records]
    soft_targets = SoftTargets.from_config(cfg.train.distill, categories, training_records)
    train_set = build_dataset(cfg.data, train_split, tokenizer, categories, train=True, with_frames=with_frames,
                              seed=cfg.seed, soft_targets=soft_targets, flip_map=flip_map)
    if not pseudo_splits:
        return train_set, []
    pseudo_sets = [build_dataset(cfg.data, split, tokenizer, categories, train=True, with_frames=with_frames,
                                 seed=cfg.seed + 1 + i, soft_targets=soft_targets,  # its own augmentation stream
                                 flip_map=flip_map) for i, split in enumerate(pseudo_splits)]
    return ConcatVideoDataset([train_set, *pseudo_sets]), pseudo_splits


class Finetuning:
    """The classification recipe: its step, its evaluation (mean-F1; best = highest), SWA snapshots."""

    figures = FIGURES

    def __init__(self, t: Training, criterion: Criterion, val_loader: Any, categories: CategorySpace,
                 tokenizer: Any, flip_map: FlipLabelMap | None = None) -> None:
        cfg, accelerator = t.cfg, t.accelerator
        self.t, self.val_loader, self.categories, self.tokenizer = t, val_loader, categories, tokenizer
        self.flip_map = flip_map  # saved with every model folder (best/flip_label_map.json)
        self.train_step = classification_step(cfg, t.model, t.core, criterion, accelerator)
        self.averager = (WeightAverager(t.run.checkpoints / "swa", cfg.train.swa.mode, cfg.train.swa.count,
                                        write=accelerator.is_main_process) if cfg.train.swa.mode != "none" else None)
        t.parts["swa"] = self.averager
        self.best_score, self.best_update = -1.0, -1
        self.best_scores: dict[str, float] = {}
        self.refused: tuple[str, int] | None = None  # why the last validated weights were not exportable, and when

    def step(self, batch: dict[str, Any], epoch: int, index: int) -> dict[str, torch.Tensor]:
        return self.train_step(batch, epoch, index)

    def evaluate(self, weights: torch.nn.Module, update: int, train: EpochPosition) -> Evaluation:
        t, log = self.t, logging.getLogger("mmcls")
        scores, result = evaluate(weights, self.val_loader, t.accelerator, t.cfg, self.categories)
        log.info("update %d: mean_f1 %.4f (lv1 %.4f/%.4f lv2 %.4f/%.4f) val_loss %s; unreadable videos: %d val, %d "
                 "train this epoch", update, scores["mean_f1"], scores["lv1_micro_f1"], scores["lv1_macro_f1"],
                 scores["lv2_micro_f1"], scores["lv2_macro_f1"], _fmt(scores["val_loss"]), scores["video_failures"],
                 train.failures)
        refused = unexportable(t.accelerator.unwrap_model(weights), t.accelerator, t.guard, update)
        if refused is not None:
            self.refused = (refused, update)
            log.warning("update %d: not exported as best: %s", update, refused)
        improved = scores["mean_f1"] > self.best_score and refused is None
        if improved:
            self.best_score, self.best_update = scores["mean_f1"], update
            self.best_scores = {**scores, "update": update}
            if t.accelerator.is_main_process:
                save_portable(t.run.best, t.accelerator.unwrap_model(weights), t.cfg, self.categories,
                              self.tokenizer, self.flip_map)
            save_validation_logits(t.run, result, self.categories)
            log.info("new best mean_f1 %.4f -> %s", self.best_score, t.run.best)
        if self.averager is not None and t.cfg.train.swa.mode == "topk" and refused is None:
            self.averager.offer(t.accelerator.unwrap_model(weights), update=update, score=scores["mean_f1"])
        return Evaluation({**scores, "weights": t.weights_name}, improved)

    def end_epoch(self, weights: torch.nn.Module, update: int) -> None:
        if self.averager is not None and self.t.cfg.train.swa.mode == "last" \
                and unexportable(self.t.accelerator.unwrap_model(weights), self.t.accelerator, self.t.guard,
                                 update) is None:
            self.averager.offer(self.t.accelerator.unwrap_model(weights), update=update, score=None)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_update": self.best_update, "best_scores": self.best_scores,
                "step": self.train_step.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_update = state["best_score"], state["best_update"]
        self.best_scores = state["best_scores"]
        self.train_step.load_state_dict(state["step"])


def finetune(cfg: Config) -> dict[str, float]:
    """Train the classifier of ``cfg``; returns the best validation scores. Writes the run directory."""
    session = open_session(cfg)
    log = session.log

    # ---- data -------------------------------------------------------------------------------------------------
    pretrained = load_pretrained_encoder(cfg.model.init_from) if cfg.model.init_from else None
    tokenizer = pretrained.tokenizer if pretrained else build_tokenizer(cfg.data, cfg.model.text.pretrained)
    train_split, val_split, categories = load_labelled_splits(cfg.data, cfg.seed)
    flip_map = FlipLabelMap.from_config(cfg.data, categories)
    if flip_map is not None:
        log.info("data.flip_label_map: a horizontal flip swaps %d category pairs", len(flip_map))
    train_set, pseudo_splits = build_train_set(cfg, train_split, val_split, categories, tokenizer, flip_map)
    val_set = build_dataset(cfg.data, val_split, tokenizer, categories, train=False,
                            with_frames=cfg.model.mode != "text", seed=cfg.seed)
    loader_generator = torch.Generator().manual_seed(cfg.seed)  # workers' base seeds (the order: EpochShuffle)
    train_loader = build_dataloader(train_set, cfg.data, cfg.train.batch_size, shuffle=True, drop_last=True,
                                    generator=loader_generator, seed=cfg.seed)
    val_loader = build_dataloader(val_set, cfg.data, cfg.train.eval_batch_size)
    log.info("data: %d train%s / %d val videos, %d categories (%d level-1)", len(train_set),
             f" ({sum(len(split.records) for split in pseudo_splits)} pseudo-labelled)" if pseudo_splits else "",
             len(val_set),
             categories.num_lv2, categories.num_lv1)

    # ---- model and training -----------------------------------------------------------------------------------
    cfg = with_feature_width(session, train_set)
    parts = cfg.model.init_parts
    model = build_model(cfg, categories.num_lv2, categories.num_lv1, tokenizer,
                        text_config=pretrained.text_config if pretrained else None,
                        load_pretrained=pretrained is None or not pretrained.supplies_vision(parts),
                        vision_config=pretrained.vision_config_for(parts) if pretrained else None)
    if pretrained:
        loaded = init_from_pretrained(model, pretrained, cfg.model.init_parts)
        log.info("model.init_from: %d tensors from %s (the classifier heads start fresh)", len(loaded),
                 cfg.model.init_from)
    criterion = Criterion.from_config(cfg, categories, across_processes=True).to(session.accelerator.device)
    training, (val_loader,) = prepare_training(session, model, train_set, train_loader, loader_generator,
                                               (val_loader,))
    recipe = Finetuning(training, criterion, val_loader, categories, tokenizer, flip_map)
    log.info("training: %s", training.describe())
    result = train(training, recipe)
    return finish(training, recipe, result)


def finish(t: Training, recipe: Finetuning, result: LoopResult) -> dict[str, float]:
    """The end of a finetuning run: the SWA average, ``result.json``, the plots; returns the summary."""
    if recipe.averager is not None:
        validate_average(t, recipe, result.state)
    if recipe.best_update < 0:  # every validated model was NaN or untrained: an error, not a model
        t.session.close()
        reason, update = recipe.refused or ("none was finite and trained", result.state.update)
        raise no_model_error(reason, update)
    logging.getLogger("mmcls").info(
        "done in %.1f s (training %.1f videos/s): best mean_f1 %.4f at update %d -> %s", result.seconds,
        result.videos_per_s, recipe.best_score, recipe.best_update, t.run.best)
    summary = {**recipe.best_scores, "seconds": result.seconds, "train_videos_per_s": result.videos_per_s,
               "skipped_updates": result.skipped_updates}
    t.run.save_result(summary)
    if t.accelerator.is_main_process:
        write_plots(t.run.path)
    t.session.close()
    return summary


def validate_average(t: Training, recipe: Finetuning, state: LoopState) -> None:
    """SWA: validate the average of the kept snapshots, save it to ``swa/``, and make it ``best/`` if it wins."""
    log, accelerator, run = logging.getLogger("mmcls"), t.accelerator, t.run
    accelerator.wait_for_everyone()  # the main process has written every snapshot
    averaged = recipe.averager.average()
    if averaged is None:
        return
    swa_model = copy.deepcopy(t.core)
    swa_model.load_state_dict(averaged)
    bad = nonfinite_weights(swa_model, accelerator)
    if bad is not None:
        log.warning("SWA: the average of %d snapshots is not finite (%s holds NaN or inf): not exported",
                    len(recipe.averager.kept), bad)
        return
    scores, result = evaluate(swa_model, recipe.val_loader, accelerator, t.cfg, recipe.categories,
                              desc="validate swa")
    run.append_metrics({"step": state.update, "epoch": state.epoch, "train_loss": None, "lr": None,
                        **scores, "elapsed_s": None, "weights": "swa"})
    log.info("SWA of %d snapshots: mean_f1 %.4f (best single %.4f)", len(recipe.averager.kept), scores["mean_f1"],
             recipe.best_score)
    wins = scores["mean_f1"] > recipe.best_score
    if accelerator.is_main_process:
        save_portable(run.path / "swa", swa_model, t.cfg, recipe.categories, recipe.tokenizer, recipe.flip_map)
        if wins:
            save_portable(run.best, swa_model, t.cfg, recipe.categories, recipe.tokenizer, recipe.flip_map)
            save_validation_logits(run, result, recipe.categories)
    if wins:
        recipe.best_score, recipe.best_update = scores["mean_f1"], state.update
        recipe.best_scores = {**scores, "update": recipe.best_update, "swa": 1.0}
        log.info("the SWA average is the new best -> %s", run.best)
    accelerator.wait_for_everyone()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
