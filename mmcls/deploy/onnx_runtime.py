"""Run an export folder with ONNX Runtime behind the torch model's interface, so prediction, test-time
augmentation, ensembles (exported and torch models mixed) and the speed check use it unchanged.

Providers: ``MMCLS_ORT_PROVIDERS`` (comma-separated, e.g. ``CUDAExecutionProvider,CPUExecutionProvider``), else
every one of TensorRT, CUDA and CPU that the installed onnxruntime offers, in that order. On a GPU the session is
made for the device of the first batch (each process of ``accelerate launch`` its own); TensorRT keeps its engines
in ``<export folder>/trt_cache`` (built on the first run, minutes; reused after) and runs fp16 for fp16 exports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmcls.config import load_config
from mmcls.data.categories import CategorySpace
from mmcls.data.flips import FLIP_MAP_FILE, FlipLabelMap
from mmcls.data.tokenizer import load_tokenizer
from mmcls.deploy.spec import EXPORT_FILE, ONNX_FILE, ExportSpec
from mmcls.errors import UserError, first_line
from mmcls.model_folder import FrameSpec, LoadedModel

logger = logging.getLogger("mmcls")

PROVIDERS_ENV = "MMCLS_ORT_PROVIDERS"
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The providers to run with: ``requested`` (or ``MMCLS_ORT_PROVIDERS``), each checked against the installed
    onnxruntime; else the preferred ones it has."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested is None and os.environ.get(PROVIDERS_ENV):
        requested = [p.strip() for p in os.environ[PROVIDERS_ENV].split(",") if p.strip()]
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise UserError(f"{PROVIDERS_ENV}: {', '.join(missing)} not in this onnxruntime (it has "
                            f"{', '.join(available)})")
        return list(requested)
    return [p for p in _PREFERRED if p in available]


class OnnxClassifier(nn.Module):
    """An exported graph as a module: ``forward(input_ids, attention_mask, frames, frame_mask) -> {"logits"}``.

    Inputs go to the graph as numpy arrays (frame features in the graph's precision); the logits come back as a
    float32 tensor on the inputs' device. The session is made on the first call, for that device.
    """

    def __init__(self, folder: Path, spec: ExportSpec, providers: Sequence[str] | None = None) -> None:
        super().__init__()
        self.folder, self.spec = folder, spec
        self.providers = choose_providers(providers)
        self._session: Any = None
        self._session_device: torch.device | None = None
        self._feature_dtype = np.float16 if spec.precision == "fp16" else np.float32

    def _provider_options(self, device: torch.device) -> list[tuple[str, dict[str, Any]]]:
        gpu = device.index if device.type == "cuda" and device.index is not None else 0
        options: dict[str, dict[str, Any]] = {
            "TensorrtExecutionProvider": {"device_id": gpu, "trt_engine_cache_enable": True,
                                          "trt_engine_cache_path": str(self.folder / "trt_cache"),
                                          "trt_fp16_enable": self.spec.precision == "fp16"},
            "CUDAExecutionProvider": {"device_id": gpu},
        }
        return [(p, options.get(p, {})) for p in self.providers
                if device.type == "cuda" or p not in _GPU_PROVIDERS] or [("CPUExecutionProvider", {})]

    def session(self, device: torch.device | str = "cpu") -> Any:
        """The inference session for ``device`` (made once; a batch on another device makes a new one)."""
        device = torch.device(device)
        if self._session is None or device != self._session_device:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch would use
            providers = self._provider_options(device)
            if self.spec.precision == "fp16" and all(p not in _GPU_PROVIDERS for p, _ in providers):
                raise UserError(f"{self.folder}: an fp16 graph runs on CUDA or TensorRT providers (ONNX Runtime's "
                                f"CPU provider does not run it; providers here for {device}: "
                                f"{', '.join(p for p, _ in providers)}); export fp32 for CPUs")
            try:
                self._session = ort.InferenceSession(str(self.folder / ONNX_FILE), options,
                                                     providers=[p for p, _ in providers],
                                                     provider_options=[o for _, o in providers])
            except Exception as exc:  # onnxruntime's own error types
                raise UserError(f"{self.folder / ONNX_FILE}: ONNX Runtime cannot load it: "
                                f"{first_line(exc)}") from None
            self._session_device = device
            self._inputs = [i.name for i in self._session.get_inputs()]
        return self._session

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor | None]:
        session = self.session(input_ids.device)
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "frames": frames, "frame_mask": frame_mask}
        feed = {}
        for name in self._inputs:
            tensor = given.get(name)
            if tensor is None:
                raise ValueError(f"{self.folder}: the graph takes {name}, which the batch lacks")
            array = tensor.detach().cpu().numpy()
            if name == "frames" and self.spec.frames == "features":
                array = array.astype(self._feature_dtype, copy=False)
            elif name in ("input_ids", "attention_mask"):
                array = array.astype(np.int64, copy=False)
            feed[name] = array
        logits = session.run(["logits"], feed)[0]
        return {"logits": torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(input_ids.device)}

    def extra_repr(self) -> str:
        return f"{self.folder / ONNX_FILE}, {self.spec.precision}, providers={self.providers}"


def load_export(path: str | Path, overrides: Sequence[str] = ()) -> LoadedModel:
    """An export folder (:mod:`mmcls.deploy.onnx_export`) as a :class:`LoadedModel`; ``overrides`` redirect its
    data (``data.root=...``). Data settings the graph cannot take (another frame size, more frames or text
    positions than it has, pixels for a features graph) are one UserError."""
    path = Path(path)
    spec = ExportSpec.load(path)
    missing = [name for name in (ONNX_FILE, "config.yaml", "categories.json") if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path}: an incomplete export folder (missing {', '.join(missing)}); export it again")
    cfg = load_config(path / "config.yaml", [*overrides, f"data.tokenizer={path}"])
    categories = CategorySpace.load(path)
    if categories.num_lv2 != spec.num_classes:
        raise UserError(f"{path / 'categories.json'}: {categories.num_lv2} categories, but the graph scores "
                        f"{spec.num_classes} ({EXPORT_FILE})")
    _check_data(cfg, spec, path)
    tokenizer = load_tokenizer(path)
    flip_map = FlipLabelMap.load(path, categories) if (path / FLIP_MAP_FILE).is_file() else None
    frames = FrameSpec(spec.frames == "features", spec.feat_dim if spec.frames == "features" else None, spec.tower,
                       spec.fingerprint)
    return LoadedModel(OnnxClassifier(path, spec), cfg, categories, tokenizer, path, flip_map, frames, exported=True)


def _check_data(cfg: Any, spec: ExportSpec, path: Path) -> None:
    data = cfg.data
    if data.max_text_len > spec.max_text_len:
        raise UserError(f"data.max_text_len={data.max_text_len}: the graph in {path} has {spec.max_text_len} text "
                        "positions")
    if spec.frames == "none":
        return
    if data.reads_features != (spec.frames == "features"):
        graph = "cached frame features (data.frame_source=feats)" if spec.frames == "features" else "pixels"
        raise UserError(f"data.frame_source={data.frame_source}: the graph in {path} reads {graph}; export the "
                        "model again for the other (tools/export.py --features)")
    if data.max_frames > spec.max_frames:
        raise UserError(f"data.max_frames={data.max_frames}: the graph in {path} takes at most {spec.max_frames} "
                        "frames per video")
    if spec.frames == "pixels" and data.frame_size != spec.frame_size:
        raise UserError(f"data.frame_size={data.frame_size}: the graph in {path} was exported for "
                        f"{spec.frame_size} px frames")
    if spec.frames == "features" and data.feat_dim not in (None, spec.feat_dim):
        raise UserError(f"data.feat_dim={data.feat_dim}: the graph in {path} takes features of width "
                        f"{spec.feat_dim}")
