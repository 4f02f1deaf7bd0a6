"""K-fold training as one command: make (or reuse) the folds, finetune every fold, collect the out-of-fold logits,
and predict other splits with all fold models.

Each fold runs as its own process (``python -m mmcls finetune`` under any launcher, e.g. ``accelerate launch
--multi_gpu ... -m mmcls finetune``: library code, never a script of a checkout), so a fold gets a fresh
accelerator and its memory back, and the driver itself stays a plain loop. A fold whose run directory holds
``result.json`` is finished and skipped, so a killed driver rerun with the same command
continues with the next unfinished fold.

Layout under ``out``::

    folds.csv                 id,fold (unless --folds names another file)
    fold{k}/                  a normal run directory (best/, val_logits.npy = fold k's out-of-fold logits ...)
    oof_logits.npy            every labelled video's logits from the fold model that did not train on it
    fold{k}/{split}_logits.npy  fold k's predictions of data.{split} (with fold{k}/{split}.csv)
    {split}_logits.npy        the fold models' averaged probabilities (log) on data.{split}; {split}.csv submission
    kfold.json                per-fold and out-of-fold scores
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcls.cli import child_env, command_argv
from mmcls.config import Config
from mmcls.data.categories import CategorySpace
from mmcls.data.folds import assign_folds, read_folds, write_folds
from mmcls.data.records import VideoRecord, load_records
from mmcls.data.splits import data_path
from mmcls.errors import ArgumentError, UserError
from mmcls.io import atomic_write_text
from mmcls.logits import SavedLogits, load_logits, predicted_classes, predicted_indices, save_logits, softmax
from mmcls.metrics import mean_f1_from_indices, write_submission
from mmcls.rundir import RESULT_FILE, VAL_LOGITS
from mmcls.workflow.ensemble import combine

logger = logging.getLogger("mmcls")


@dataclass
class KFoldPlan:
    """What the driver runs: the config (files + overrides), the folds and where everything goes."""

    config_files: list[str]
    overrides: list[str]
    cfg: Config
    k: int
    out: Path
    folds_file: Path | None = None
    launcher: tuple[str, ...] = (sys.executable,)

    @property
    def folds_path(self) -> Path:
        return self.folds_file or self.out / "folds.csv"

    def fold_dir(self, fold: int) -> Path:
        return self.out / f"fold{fold}"

    def fold_command(self, fold: int) -> list[str]:
        """The finetuning command of one fold: the user's config and overrides, then the fold's own keys."""
        configs = [arg for path in self.config_files for arg in ("--config", path)]
        return [*self.launcher, *command_argv("finetune"), *configs, *self.overrides,
                f"data.folds_file={self.folds_path.resolve()}", f"data.fold={fold}", "data.val=null",
                f"output_dir={self.fold_dir(fold)}"]


def parse_launcher(text: str | None) -> tuple[str, ...]:
    """``--launch "accelerate launch --multi_gpu --num_processes 8"`` -> argv prefix (default: this Python)."""
    return tuple(shlex.split(text)) if text else (sys.executable,)


def ensure_folds(plan: KFoldPlan, records: Sequence[VideoRecord]) -> dict[str, int]:
    """Read the folds file, or write ``OUT/folds.csv`` (stratified, ``cfg.seed``) when it does not exist yet.

    A file named with ``--folds`` must exist, hold folds ``0..K-1`` and exactly the ids of ``data.train``: a
    mismatch is found here, not after K trainings.
    """
    path = plan.folds_path
    if not path.is_file():
        if plan.folds_file is not None:
            raise ArgumentError("folds_file", f"{path}: not found (leave {{folds_file}} out to write OUT/folds.csv)")
        folds = assign_folds(records, plan.k, plan.cfg.seed)
        write_folds(path, folds)
        logger.info("wrote %d videos in %d stratified folds -> %s", len(folds), plan.k, path)
        return folds
    folds = read_folds(path)
    found = sorted(set(folds.values()))
    if found != list(range(plan.k)):
        raise ArgumentError(None, f"{path}: holds folds {found}, not 0..{plan.k - 1}; pass {{k}} {len(found)} or "
                            "remove it")
    ids = {r.id for r in records}
    if set(folds) != ids:
        extra, missing = sorted(set(folds) - ids), sorted(ids - set(folds))
        raise UserError(f"{path}: its ids are not those of data.train ({len(missing)} missing, e.g. "
                        f"{missing[:1]}; {len(extra)} unknown, e.g. {extra[:1]}); make the folds for this data")
    return folds


def check_plan(plan: KFoldPlan) -> None:
    """``OUT/plan.json`` records what the folds are trained with; a rerun into the same folder with other settings
    is an error (finished folds would otherwise be mixed with new ones)."""
    record = {"config_files": [str(Path(c).resolve()) for c in plan.config_files], "overrides": plan.overrides,
              "k": plan.k, "folds_file": str(plan.folds_path.resolve())}
    path = plan.out / "plan.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != record:
            changed = sorted(key for key in record if before.get(key) != record[key])
            raise UserError(f"{plan.out} holds folds trained with other settings ({', '.join(changed)} differ; see "
                            f"{path}); use another --out, or delete the folder to start over")
        return
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def _run(argv: Sequence[str], what: str) -> None:
    """Run a subprocess; a missing launcher or a non-zero exit is a one-line error naming ``what``."""
    try:
        code = subprocess.run(list(argv), check=False, env=child_env()).returncode
    except OSError as exc:
        raise ArgumentError(None, f"{what}: cannot start {argv[0]!r} ({exc.strerror}); check {{launcher}}") from None
    if code != 0:
        raise UserError(f"{what} failed (exit {code}); rerun the same command to continue")


def train_folds(plan: KFoldPlan) -> None:
    """Finetune every unfinished fold, in order, as a subprocess; a failing fold stops the driver."""
    for fold in range(plan.k):
        run = plan.fold_dir(fold)
        if (run / RESULT_FILE).is_file():
            logger.info("fold %d: finished earlier (%s), skipped", fold, run / RESULT_FILE)
            continue
        argv = plan.fold_command(fold)
        logger.info("fold %d/%d: %s", fold + 1, plan.k, shlex.join(argv))
        _run(argv, f"fold {fold} (see {run / 'train.log'})")


def collect_oof(plan: KFoldPlan, folds: dict[str, int], records: Sequence[VideoRecord]
                ) -> tuple[SavedLogits, dict]:
    """Stack the folds' validation logits into ``oof_logits.npy`` (ids in folds-file order) and score them."""
    bundles = []
    for fold in range(plan.k):
        path = plan.fold_dir(fold) / VAL_LOGITS
        if not path.is_file():
            raise UserError(f"fold {fold}: {path} is missing; is the fold finished?")
        bundle = load_logits(path)
        expected = {i for i, f in folds.items() if f == fold}
        if set(bundle.ids) != expected:
            raise UserError(f"{path}: its ids are not fold {fold} of {plan.folds_path} (was it trained with "
                            "another folds file?)")
        bundles.append(bundle)
    classes = bundles[0].classes
    ids = list(folds)  # every id is in exactly one bundle (checked above)
    by_id = {video_id: row for b in bundles for video_id, row in zip(b.ids, b.aligned(b.ids, classes), strict=True)}
    oof = SavedLogits(ids, np.stack([by_id[i] for i in ids]), classes)
    save_logits(plan.out / "oof_logits.npy", oof.ids, oof.logits, oof.classes)

    categories = CategorySpace.load(plan.fold_dir(0) / "best")
    labels = {r.id: r.category_id for r in records}
    column = {c: j for j, c in enumerate(categories.lv2_ids)}
    truth = np.array([column[labels[i]] for i in ids])
    scores = mean_f1_from_indices(truth, predicted_indices(oof.aligned(ids, categories.lv2_ids))[0],
                                  categories.lv1_index_of_lv2())
    per_fold = [json.loads((plan.fold_dir(f) / RESULT_FILE).read_text(encoding="utf-8")) for f in range(plan.k)]
    summary = {"k": plan.k, "folds_file": str(plan.folds_path), "oof": scores,
               "fold_mean_f1": [r.get("mean_f1") for r in per_fold],
               "fold_seconds": [r.get("seconds") for r in per_fold]}
    return oof, summary


def predict_with_folds(plan: KFoldPlan, split: str, extra: Sequence[str] = ()) -> dict:
    """Predict ``data.{split}`` with every fold's ``best/`` (``fold{k}/{split}_logits.npy`` + ``.csv``), then
    average their probabilities with equal weights into ``{split}_logits.npy`` and ``{split}.csv``.

    A fold's prediction is reused when it is newer than its ``result.json`` and came from the same command (same
    split, test-time augmentation and data overrides). Returns the paths written.
    """
    bundles = []
    for fold in range(plan.k):
        run = plan.fold_dir(fold)
        logits = run / f"{split}_logits.npy"
        argv = [*plan.launcher, *command_argv("predict"), "--model", str(run / "best"),
                   "--split", split, "--output", str(run / f"{split}.csv"), "--logits", str(logits), *extra,
                   *_data_overrides(plan)]
        stamp = run / f"{split}_logits.command.json"  # the command that wrote the logits: reuse only the same
        fresh = (logits.is_file() and stamp.is_file() and logits.stat().st_mtime >= (run / RESULT_FILE).stat().st_mtime
                 and json.loads(stamp.read_text(encoding="utf-8")) == argv[len(plan.launcher):])
        if not fresh:
            logger.info("fold %d: predict %s: %s", fold, split, shlex.join(argv))
            _run(argv, f"fold {fold}: predicting {split}")
            atomic_write_text(stamp, json.dumps(argv[len(plan.launcher):]) + "\n")
        bundles.append(load_logits(logits))
    ids, classes = bundles[0].ids, bundles[0].classes
    log_probs = combine([softmax(b.aligned(ids, classes)) for b in bundles], [1.0] * plan.k)
    out = plan.out / f"{split}_logits.npy"
    save_logits(out, ids, log_probs, classes)
    write_submission(plan.out / f"{split}.csv", ids, predicted_classes(log_probs, classes))
    return {"logits": str(out), "csv": str(plan.out / f"{split}.csv")}


def _data_overrides(plan: KFoldPlan) -> list[str]:
    """The user's ``data.*`` overrides, so prediction reads the same data the folds were trained on."""
    return [o for o in plan.overrides if o.startswith("data.") and not o.startswith(("data.fold", "data.val"))]


def run_kfold(plan: KFoldPlan, predict_splits: Sequence[str] = (), predict_args: Sequence[str] = ()) -> dict:
    """Folds, training, out-of-fold logits and predictions; writes and returns the ``kfold.json`` summary."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("kfold runs every fold as its own process: start it with python, not under "
                        "accelerate launch, and pass the launcher with --launch \"accelerate launch ...\"")
    plan.out.mkdir(parents=True, exist_ok=True)
    records = load_records(data_path(plan.cfg.data, plan.cfg.data.train), labelled=True)
    folds = ensure_folds(plan, records)
    check_plan(plan)
    train_folds(plan)
    _, summary = collect_oof(plan, folds, records)
    for split in predict_splits:
        summary[split] = predict_with_folds(plan, split, predict_args)
    atomic_write_text(plan.out / "kfold.json", json.dumps(summary, indent=1) + "\n")
    return summary
