"""End-to-end inference speed of a model, an export or an ensemble: what ``tools/speed_check.py`` and the student
stage (``tools/student.py``) measure.

The models are loaded first (not counted); then every model predicts the split as ``tools/predict.py`` does (same
loader, workers, batch size and precision) and the videos are divided by the wall time of those passes, the
loader's worker start-up included. ``warmup`` untimed passes come first: one-off costs (an ONNX Runtime session's
creation, the first kernels' dispatch) are a large part of a pass over a few hundred videos but nothing over the
25,000 of a competition's test set; ``warmup=0`` counts them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator

from mmcls.model_folder import load_for_inference
from mmcls.workflow.predict import predict_model


@dataclass(frozen=True)
class Speed:
    """What one measurement found (``videos_per_s`` counts all processes together)."""

    videos: int
    seconds: float
    loading_seconds: float
    engines: tuple[str, ...]
    batch_size: int
    workers: int
    processes: int
    unreadable: int
    warmup: int = 0

    @property
    def videos_per_s(self) -> float:
        return self.videos / self.seconds

    def describe(self, what: str, split: str) -> str:
        return (f"{what}: {self.videos} videos of data.{split} in {self.seconds:.2f} s with {', '.join(self.engines)}, "
                f"{self.warmup} untimed pass(es) first, "
                f"{self.processes} process(es), batch {self.batch_size}, {self.workers} loader workers each; model "
                f"loading {self.loading_seconds:.2f} s not counted"
                + (f"; {self.unreadable} videos unreadable" if self.unreadable else ""))


def measure_speed(models: Sequence[str | Path], accelerator: Accelerator, split: str = "test",
                  overrides: Sequence[str] = (), batch_size: int | None = None, warmup: int = 1) -> Speed:
    """Time the prediction of ``data.<split>`` by ``models`` (one model, an export, or an ensemble) after
    ``warmup`` untimed passes."""
    start = time.perf_counter()
    loaded = [load_for_inference(model, list(overrides)) for model in models]
    loading = time.perf_counter() - start
    for _ in range(warmup):
        for one in loaded:
            predict_model(one, split, accelerator, batch_size)
    accelerator.wait_for_everyone()
    start = time.perf_counter()
    ids: list[str] = []
    unreadable = 0
    for one in loaded:
        ids, _, unreadable = predict_model(one, split, accelerator, batch_size)
    accelerator.wait_for_everyone()
    seconds = time.perf_counter() - start
    torch_precision = "fp32" if accelerator.mixed_precision == "no" else accelerator.mixed_precision
    engines = tuple(sorted({"ONNX Runtime" if one.exported else f"torch {torch_precision}" for one in loaded}))
    return Speed(len(ids), seconds, loading, engines, batch_size or loaded[0].cfg.train.eval_batch_size,
                 loaded[0].cfg.data.num_workers, accelerator.num_processes, unreadable, warmup)
