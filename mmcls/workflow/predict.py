"""Batch inference: one model or a weighted ensemble, with optional test-time augmentation -> a submission CSV
(and optionally the logits bundle, :mod:`mmcls.logits`).

Each model reads the data through its own saved preprocessing (frame size, tokenizer, text budgets). Test-time
augmentation runs every model over several views of each video (frame-sampling grids shifted inside the stride,
horizontally flipped frames, whose scores of the category pairs in the model's flip map are swapped back first:
``data.flip_label_map``) and averages their class probabilities; the ensemble then averages the models'
probabilities with the given weights. Under ``accelerate launch`` every process predicts a shard, the results are
gathered without the sampler's padding duplicates, and the main process writes each id exactly once, in annotation
order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from mmcls.accelerators import inference_accelerator
from mmcls.data.dataset import build_dataloader, build_dataset
from mmcls.data.splits import load_split
from mmcls.engine.inference import run_inference
from mmcls.engine.losses import logit_adjustment
from mmcls.errors import ArgumentError, UserError
from mmcls.logits import check_weights, predicted_classes, save_logits, softmax, warn_nonfinite
from mmcls.metrics import write_submission
from mmcls.model_folder import LoadedModel, check_feature_width, load_for_inference
from mmcls.workflow.ensemble import combine

logger = logging.getLogger("mmcls")


@dataclass(frozen=True)
class TestTimeAugmentation:
    """The views each video is predicted under; their probabilities are averaged.

    ``offsets`` K: the evaluation frame grid (a stride of ``n // max_frames``) starts at frame 0, 1 ... K-1 of the
    stride (modulo the stride, so a short video repeats views rather than failing); ``hflip``: every grid also with
    horizontally flipped frames. The default is the single official view.
    """

    __test__ = False  # not a pytest class, despite the name

    offsets: int = 1
    hflip: bool = False

    def __post_init__(self) -> None:
        if self.offsets < 1:
            raise ArgumentError("offsets", f"must be >= 1, got {self.offsets}")

    def views(self) -> list[tuple[int, bool]]:
        """``(sampling offset, flipped)`` of every view, the official one first."""
        flips = (False, True) if self.hflip else (False,)
        return [(offset, flip) for offset in range(self.offsets) for flip in flips]


@dataclass
class Prediction:
    """Ensemble output in annotation order."""

    ids: list[str]
    category_ids: list[str]
    logits: np.ndarray  # [N, C]: logits of a single model and view, else log of the averaged probabilities
    # (both with the logit adjustment added when one was asked for)
    video_failures: int
    classes: list[str]  # category ids of the logits' columns


def predict_model(loaded: LoadedModel, split: str, accelerator: Accelerator, batch_size: int | None = None,
                  tta: TestTimeAugmentation | None = None) -> tuple[list[str], np.ndarray, int]:
    """``(ids in annotation order, logits [N, C], unreadable videos)`` of one model over ``data.<split>``.

    With more than one view the logits are the log of the views' mean probabilities. A flipped view's columns are
    first permuted by the model's flip map (``best/flip_label_map.json``, from ``data.flip_label_map``), so the
    probability a mirrored video gives "left" counts for "right".
    """
    cfg = loaded.cfg
    records = load_split(cfg.data, split)
    check_feature_width(loaded, records.folder)
    order = [r.id for r in records.records]
    views = (tta or TestTimeAugmentation()).views()
    if cfg.model.mode == "text" and len(views) > 1:
        logger.info("%s: a text-only model sees no frames; test-time augmentation skipped", loaded.path)
        views = views[:1]
    if any(flip for _, flip in views) and loaded.cfg.data.reads_features:
        raise ArgumentError("hflip", f"{loaded.path} reads frame features (data.frame_source=feats), which cannot "
                        "be flipped")
    model = loaded.prepared(accelerator)
    view_probs, logits, failures = [], None, 0
    for offset, flip in views:
        dataset = build_dataset(cfg.data, records, loaded.tokenizer, None, train=False,
                                with_frames=cfg.model.mode != "text", sampling_offset=offset)
        loader = accelerator.prepare(build_dataloader(dataset, cfg.data, batch_size or cfg.train.eval_batch_size))
        name = f"predict {Path(loaded.path).parent.name}/{Path(loaded.path).name}"
        if len(views) > 1:
            name += f" [offset {offset}{', flip' if flip else ''}]"
        result = run_inference(model, loader, accelerator, desc=name, hflip=flip)
        failures = max(failures, result.video_failures)
        position = {video_id: i for i, video_id in enumerate(result.ids)}
        if len(position) != len(order) or set(position) != set(order):
            raise RuntimeError(f"inference returned {len(position)} distinct ids for {len(order)} records")
        logits = result.logits[[position[i] for i in order]]
        if flip and loaded.flip_map is not None:  # a mirrored "swipe left" scores as "swipe right": swap back
            logits = loaded.flip_map.permute(logits)
        view_probs.append(softmax(logits))
    assert logits is not None
    if len(views) > 1:
        logits = combine(view_probs, [1.0] * len(views)).astype(np.float32)
    return order, logits, failures


def predict(models: Sequence[str | Path], split: str = "test", weights: Sequence[float] | None = None,
            overrides: Sequence[str] = (), batch_size: int | None = None, mixed_precision: str = "auto",
            accelerator: Accelerator | None = None, logit_adjust: float = 0.0,
            tta: TestTimeAugmentation | None = None) -> Prediction:
    """Predict ``data.<split>`` with every model in ``models`` (RUN/best folders) and average their probabilities.

    ``logit_adjust`` tau > 0 subtracts tau * log(prior) (training class frequencies of the first model) from the
    final logits before the argmax: post-hoc logit adjustment, which trades head-class precision for rare-class
    recall and so raises macro-F1 on long-tailed data. ``tta`` predicts several views per video (see
    :class:`TestTimeAugmentation`).
    """
    if not math.isfinite(logit_adjust):
        raise ArgumentError("logit_adjust", f"must be a finite number, got {logit_adjust}")
    if logit_adjust < 0:
        raise ArgumentError("logit_adjust", f"must be >= 0, got {logit_adjust}")
    if not models:
        raise ArgumentError(None, "give at least one model folder in {models} (RUN/best)")
    weights = check_weights(weights, len(models)) if weights else [1.0] * len(models)
    accelerator = accelerator or inference_accelerator(mixed_precision)
    order: list[str] | None = None
    category_ids: list[str] | None = None
    counts: list[int] = []
    mean_probs, single_logits, failures = None, None, 0
    for path, weight in zip(models, weights, strict=True):
        loaded = load_for_inference(path, list(overrides))
        if category_ids is None:
            category_ids, counts = loaded.categories.lv2_ids, loaded.categories.count_list()
        elif loaded.categories.lv2_ids != category_ids:
            raise UserError(f"{path}: its categories differ from {models[0]}; an ensemble needs the same classes")
        ids, logits, model_failures = predict_model(loaded, split, accelerator, batch_size, tta)
        if order is None:
            order = ids
        elif ids != order:
            raise UserError(f"{path}: reads a different data.{split} than {models[0]}")
        failures = max(failures, model_failures)
        warn_nonfinite(logits, str(path))
        single_logits = logits if len(models) == 1 else None
        probs = softmax(logits) * (weight / sum(weights))
        mean_probs = probs if mean_probs is None else mean_probs + probs
        accelerator.free_memory()
    assert order is not None and category_ids is not None and mean_probs is not None
    out_logits = single_logits if single_logits is not None else np.log(np.maximum(mean_probs, 1e-30))
    if logit_adjust > 0:
        if not any(counts):
            raise ArgumentError("logit_adjust", f"{models[0]} has no training class counts in categories.json")
        out_logits = out_logits + logit_adjustment(counts, logit_adjust)[None, :]
    predicted = predicted_classes(out_logits, category_ids)
    return Prediction(order, predicted, out_logits.astype(np.float32), failures, list(category_ids))


def write_prediction(prediction: Prediction, output: str | Path, logits_path: str | Path | None = None) -> None:
    """The submission CSV (no header, ``id,category_id``), and optionally the logits bundle."""
    write_submission(output, prediction.ids, prediction.category_ids)
    if logits_path is not None:
        save_logits(logits_path, prediction.ids, prediction.logits, prediction.classes)
