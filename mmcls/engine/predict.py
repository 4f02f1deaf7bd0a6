"""Batch inference: one model or a weighted ensemble -> a submission CSV (and optionally logits).

Each model reads the data through its own saved preprocessing (frame size, tokenizer, text budgets); their class
probabilities are averaged with the given weights. Under ``accelerate launch`` every process predicts a shard, the
results are gathered without the sampler's padding duplicates, and the main process writes each id exactly once,
in annotation order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from mmcls.data.dataset import build_dataloader, build_dataset
from mmcls.data.splits import load_split
from mmcls.engine.checkpoint import load_portable
from mmcls.engine.inference import run_inference
from mmcls.engine.losses import logit_adjustment
from mmcls.engine.runtime import resolve_mixed_precision
from mmcls.errors import UserError
from mmcls.io import atomic_open, atomic_write_text
from mmcls.metrics import write_submission


@dataclass
class Prediction:
    """Ensemble output in annotation order."""

    ids: list[str]
    category_ids: list[str]
    logits: np.ndarray  # [N, C]: logits of a single model, log of the averaged probabilities of an ensemble
    # (both with the logit adjustment added when one was asked for)
    video_failures: int


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predict(models: Sequence[str | Path], split: str = "test", weights: Sequence[float] | None = None,
            overrides: Sequence[str] = (), batch_size: int | None = None, mixed_precision: str = "auto",
            accelerator: Accelerator | None = None, logit_adjust: float = 0.0) -> Prediction:
    """Predict ``data.<split>`` with every model in ``models`` (RUN/best folders) and average their probabilities.

    ``logit_adjust`` tau > 0 subtracts tau * log(prior) (training class frequencies of the first model) from the
    final logits before the argmax: post-hoc logit adjustment, which trades head-class precision for rare-class
    recall and so raises macro-F1 on long-tailed data.
    """
    if logit_adjust < 0:
        raise UserError(f"--logit-adjust: must be >= 0, got {logit_adjust}")
    if not models:
        raise UserError("give at least one --model RUN/best")
    weights = list(weights) if weights else [1.0] * len(models)
    if len(weights) != len(models) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"--weights: need {len(models)} non-negative weights with a positive sum, got {weights}")
    accelerator = accelerator or Accelerator(mixed_precision=resolve_mixed_precision(mixed_precision))
    order: list[str] | None = None
    category_ids: list[str] | None = None
    counts: list[int] = []
    mean_probs, single_logits, failures = None, None, 0
    for path, weight in zip(models, weights, strict=True):
        loaded = load_portable(path, list(overrides))
        if category_ids is None:
            category_ids, counts = loaded.categories.lv2_ids, loaded.categories.count_list()
        elif loaded.categories.lv2_ids != category_ids:
            raise UserError(f"{path}: its categories differ from {models[0]}; an ensemble needs the same classes")
        cfg = loaded.cfg
        records = load_split(cfg.data, split)
        if order is None:
            order = [r.id for r in records.records]
        elif [r.id for r in records.records] != order:
            raise UserError(f"{path}: reads a different data.{split} than {models[0]}")
        dataset = build_dataset(cfg.data, records, loaded.tokenizer, None, train=False,
                                with_frames=cfg.model.mode != "text")
        loader = build_dataloader(dataset, cfg.data, batch_size or cfg.train.eval_batch_size)
        model, loader = accelerator.prepare(loaded.model, loader)
        result = run_inference(model, loader, accelerator, desc=f"predict {Path(path).name}")
        failures = max(failures, result.video_failures)
        position = {video_id: i for i, video_id in enumerate(result.ids)}
        if len(position) != len(order) or set(position) != set(order):
            raise RuntimeError(f"inference returned {len(position)} distinct ids for {len(order)} records")
        logits = result.logits[[position[i] for i in order]]
        single_logits = logits if len(models) == 1 else None
        probs = _softmax(logits.astype(np.float64)) * (weight / sum(weights))
        mean_probs = probs if mean_probs is None else mean_probs + probs
        accelerator.free_memory()
    assert order is not None and category_ids is not None and mean_probs is not None
    out_logits = single_logits if single_logits is not None else np.log(np.maximum(mean_probs, 1e-30))
    if logit_adjust > 0:
        if not any(counts):
            raise UserError(f"--logit-adjust: {models[0]} has no training class counts in categories.json")
        out_logits = out_logits + logit_adjustment(counts, logit_adjust)[None, :]
    predicted = [category_ids[i] for i in out_logits.argmax(axis=1)]
    return Prediction(order, predicted, out_logits.astype(np.float32), failures)


def write_prediction(prediction: Prediction, output: str | Path, logits_path: str | Path | None = None) -> None:
    """The submission CSV (no header, ``id,category_id``), and optionally ``logits.npy`` + ``logits.ids.txt``."""
    write_submission(output, prediction.ids, prediction.category_ids)
    if logits_path is not None:
        logits_path = Path(logits_path)
        with atomic_open(logits_path, "wb") as handle:
            np.save(handle, prediction.logits)
        atomic_write_text(logits_path.with_suffix(".ids.txt"), "\n".join(prediction.ids) + "\n")
