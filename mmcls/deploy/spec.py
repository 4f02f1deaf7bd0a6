"""``export.json``: what an exported graph takes and how it was made, read back without trusting its contents."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcls.errors import UserError
from mmcls.io import read_json_object

EXPORT_FILE = "export.json"
ONNX_FILE = "model.onnx"
PRECISIONS = ("fp32", "fp16", "int8")  # int8: dynamically quantized weights (CPU)
FRAME_KINDS = ("pixels", "features", "none")  # none: a text-mode model (no frame inputs)


@dataclass(frozen=True)
class ExportSpec:
    """The contract of an export folder's graph.

    Inputs (by name, as the torch model's forward takes them): ``input_ids`` int64 ``[B, L]``,
    ``attention_mask`` int64 ``[B, L]`` (L up to ``max_text_len``), and unless ``frames`` is ``none``:
    ``frames`` (uint8 ``[B, T, 3, S, S]`` pixels with S = ``frame_size``, or ``[B, T, feat_dim]`` features in the
    graph's float precision) and ``frame_mask`` bool ``[B, T]`` (T up to ``max_frames``). Output: ``logits``
    float32 ``[B, num_classes]``. ``parity`` is the largest difference of the class probabilities between the
    graph (ONNX Runtime) and the torch model, measured at export; None for an fp16 graph exported where no CUDA
    provider could run it.
    """

    precision: str
    frames: str
    inputs: list[str]
    max_text_len: int
    num_classes: int
    max_frames: int | None = None
    frame_size: int | None = None
    feat_dim: int | None = None
    tower: str | None = None
    fingerprint: str | None = None
    opset: int = 17
    source: str = ""
    parity: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    format: str = "onnx"

    def save(self, folder: str | Path) -> None:
        (Path(folder) / EXPORT_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> ExportSpec:
        """Read ``folder/export.json``; one UserError naming the file for anything it should not hold."""
        path = Path(folder) / EXPORT_FILE
        raw = read_json_object(path)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise UserError(f"{path}: unknown keys {unknown} (written by a newer mmcls?)")
        missing = sorted(name for name, f in known.items()
                         if name not in raw and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise UserError(f"{path}: missing keys {missing}")
        spec = cls(**raw)
        spec._check(path)
        return spec

    def _check(self, path: Path) -> None:
        def bad(what: str) -> UserError:
            return UserError(f"{path}: {what}")

        if self.format != "onnx":
            raise bad(f"format {self.format!r}; this mmcls runs onnx exports")
        if self.precision not in PRECISIONS:
            raise bad(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        if self.frames not in FRAME_KINDS:
            raise bad(f"frames {self.frames!r} is not one of {list(FRAME_KINDS)}")
        if not isinstance(self.inputs, list) or not all(isinstance(name, str) for name in self.inputs):
            raise bad("inputs must be a list of names")
        integers: dict[str, Any] = {"max_text_len": self.max_text_len, "num_classes": self.num_classes,
                                    "opset": self.opset}
        if self.frames != "none":
            integers["max_frames"] = self.max_frames
            integers["frame_size" if self.frames == "pixels" else "feat_dim"] = (
                self.frame_size if self.frames == "pixels" else self.feat_dim)
        for name, value in integers.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(f"{name} must be a positive integer, got {value!r}")


def is_export_folder(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (it has ``export.json``)."""
    return (Path(path) / EXPORT_FILE).is_file()
