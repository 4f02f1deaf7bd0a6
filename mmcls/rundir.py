"""The run directory (docs/ARCHITECTURE.md): config.yaml, metrics.csv, train.log, TensorBoard, best/ and checkpoints/.

Only the main process writes. Every file that readers may see half-written is written atomically: the config and
portable weights go to a temporary sibling first and are renamed into place.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmcls.config import Config, save_config
from mmcls.io import atomic_open, atomic_write_text

METRIC_COLUMNS = ("step", "epoch", "train_loss", "lr", "val_loss", "lv1_micro_f1", "lv1_macro_f1", "lv2_micro_f1",
                  "lv2_macro_f1", "mean_f1", "video_failures", "train_video_failures", "elapsed_s", "weights")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
VAL_LOGITS = "val_logits.npy"  # logits bundle (mmcls.logits) of the best weights on the validation split
VAL_TRUTH = "val_truth.csv"  # id,category_id of the labelled validation videos (a truth file for tools/evaluate.py)
RESULT_FILE = "result.json"  # the best scores, written when a run has finished


class RunDir:
    """Paths and writers of one run; every writer is a no-op off the main process."""

    def __init__(self, output_dir: str | Path, is_main: bool, columns: tuple[str, ...] = METRIC_COLUMNS) -> None:
        self.path = Path(output_dir)
        self.is_main = is_main
        self.columns = columns
        self._tensorboard = None
        if is_main:
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def result_json(self) -> Path:
        return self.path / RESULT_FILE

    def start_fresh(self) -> None:
        """Forget the metrics and result of an earlier run in the same folder (its best/ and validation logits stay
        until better ones replace them)."""
        if self.is_main:
            self.metrics_csv.unlink(missing_ok=True)
            self.result_json.unlink(missing_ok=True)

    def truncate_metrics(self, update: int) -> None:
        """Drop metrics.csv rows logged after ``update`` (a resumed run logs them again)."""
        if not self.is_main or not self.metrics_csv.exists():
            return
        with self.metrics_csv.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        kept = [row for row in rows if row.get("step", "") == "" or int(float(row["step"])) <= update]
        if len(kept) == len(rows):
            return
        with atomic_open(self.metrics_csv, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore", lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(kept)

    def save_result(self, summary: Mapping[str, Any]) -> None:
        """``result.json``: the run's best scores; its presence marks a finished run (drivers skip those)."""
        if self.is_main:
            atomic_write_text(self.result_json, json.dumps(dict(summary), indent=1, sort_keys=True) + "\n")

    def save_config(self, cfg: Config) -> None:
        if self.is_main:
            save_config(cfg, self.path / "config.yaml")

    def setup_logging(self) -> logging.Logger:
        """Log ``mmcls.*`` to ``train.log`` and stderr on the main process (warnings only elsewhere)."""
        logger = logging.getLogger("mmcls")
        logger.setLevel(logging.INFO if self.is_main else logging.WARNING)
        for handler in list(logger.handlers):
            if getattr(handler, "_mmcls_run", False):
                logger.removeHandler(handler)
                handler.close()
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
        if self.is_main:
            handlers.append(logging.FileHandler(self.path / "train.log", encoding="utf-8"))
        for handler in handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            handler._mmcls_run = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.propagate = False
        return logger

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """One row of metrics.csv (header written with the first row); also sent to TensorBoard."""
        if not self.is_main:
            return
        new = not self.metrics_csv.exists()
        with self.metrics_csv.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        step = int(row.get("step", 0))
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.scalar(f"val/{key}" if key not in ("train_loss", "lr") else f"train/{key}", value, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A TensorBoard scalar (the writer is created on first use, main process only)."""
        if not self.is_main:
            return
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.path / "tensorboard"))
        self._tensorboard.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
