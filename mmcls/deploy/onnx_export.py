"""Export a trained model folder as one ONNX graph: frame normalisation, vision tower (with its temporal switches),
frame layers, fusion encoder and level-2 head, taking the collated batch the torch model takes.

::

    export_onnx("runs/demo/best", "runs/demo/onnx")                 # fp32, checked against torch on CPU
    export_onnx("runs/demo/best", "runs/demo/onnx_fp16", precision="fp16")     # for GPUs
    export_onnx("runs/demo/best", "runs/demo/onnx_feats", features=True)      # reads cached frame features

The graph is traced (TorchScript exporter, opset 17) with a dynamic batch, text length and frame count (up to the
model's ``data.max_frames``), and the pixel path encodes only the valid frames, as the torch model does
(``NonZero`` + ``Gather`` in the graph; a batch without any valid frame works too, see
:meth:`mmcls.models.encoder.MultimodalEncoder.frame_features`). Before the folder is written, ONNX Runtime runs
the graph on three batches (other batch sizes, text lengths and frame counts than the traced one, videos without
frames, empty text) and its class probabilities must match torch's within 1e-4 (fp32), else the export fails: a
folder that exists is a graph that computes the model. A module that does not export is one error naming it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmcls.config import save_config
from mmcls.deploy.spec import ONNX_FILE, ExportSpec
from mmcls.errors import ArgumentError, UserError, first_line
from mmcls.io import atomic_dir
from mmcls.logits import softmax
from mmcls.model_folder import LoadedModel, load_portable

logger = logging.getLogger("mmcls")

OPSET = 17
FP32_TOLERANCE = 1e-4  # largest difference of a class probability, graph vs torch
FP16_TOLERANCE = 2e-2
INT8_TOLERANCE = 5e-2
TOLERANCES = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE, "int8": INT8_TOLERANCE}
_NAMES = ("input_ids", "attention_mask", "frames", "frame_mask")


class ExportError(UserError):
    """The model cannot be exported, or the exported graph does not compute it."""


class ExportableClassifier(nn.Module):
    """The classifier as the graph computes it: the collated batch in, float32 level-2 logits out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask, frames, frame_mask)["logits"].float()


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    folder: Path
    spec: ExportSpec
    seconds: float
    megabytes: float


@dataclass
class ExampleBatch:
    """A batch in the graph's input layout (tensors keyed by input name)."""

    tensors: dict[str, torch.Tensor]
    what: str

    def args(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.tensors[name] for name in _NAMES if name in self.tensors)

    def numpy(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        return {name: self.tensors[name].numpy() for name in names}


def example_batch(spec: ExportSpec, vocab_size: int, batch: int, text_len: int, frames: int, valid: Sequence[int],
                  empty_text: Sequence[int] = (), seed: int = 0, feature_dtype: torch.dtype = torch.float32,
                  what: str = "") -> ExampleBatch:
    """Random inputs: ``valid[i]`` valid frames for video i (0: a video without frames), the rows in
    ``empty_text`` reduced to ``[CLS] [SEP]`` (ids 2, 3 as the tiny test tokenizers; any ids work)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, max(6, vocab_size), (batch, text_len), generator=gen)
    mask = torch.ones(batch, text_len, dtype=torch.long)
    for row in range(batch):
        length = 2 if row in empty_text else max(2, text_len - row)
        mask[row, length:] = 0
        ids[row, length:] = 0
    tensors = {"input_ids": ids, "attention_mask": mask}
    if spec.frames != "none":
        frame_mask = torch.arange(frames).unsqueeze(0) < torch.tensor(list(valid)).unsqueeze(1)  # [B, T]
        if spec.frames == "pixels":
            size = spec.frame_size
            pixels = torch.randint(0, 256, (batch, frames, 3, size, size), generator=gen, dtype=torch.uint8)
        else:
            pixels = torch.randn(batch, frames, spec.feat_dim, generator=gen).to(feature_dtype)
        tensors.update(frames=pixels, frame_mask=frame_mask)
    return ExampleBatch(tensors, what)


def check_batches(spec: ExportSpec, vocab_size: int, feature_dtype: torch.dtype) -> list[ExampleBatch]:
    """The batches the graph is checked on: the traced one, then other shapes, frames and text than traced."""
    t = spec.max_frames or 1
    text = min(16, spec.max_text_len)
    fewer = max(1, t - 1)
    return [
        example_batch(spec, vocab_size, 3, text, t, [t, max(1, t // 2), 0], (1,), 0, feature_dtype, "traced"),
        example_batch(spec, vocab_size, 5, max(2, text // 2 + 1), fewer, [fewer, 1, 0, fewer, 2][:5], (0, 4), 1,
                      feature_dtype, f"batch 5, {fewer} frames"),
        example_batch(spec, vocab_size, 1, min(text + 3, spec.max_text_len), t, [0], (), 2, feature_dtype,
                      "one video without frames"),
    ]


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for package in ("onnx", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[package] = importlib.metadata.version(package)
    return out


def _spec_of(loaded: LoadedModel, precision: str, source: Path) -> ExportSpec:
    cfg, encoder = loaded.cfg, loaded.model.encoder
    frame_spec = loaded.frames
    kind = "none" if encoder.frame_embedder is None else ("features" if frame_spec.reads_features else "pixels")
    inputs = list(_NAMES if kind != "none" else _NAMES[:2])
    return ExportSpec(precision=precision, frames=kind, inputs=inputs, max_text_len=int(encoder.text.max_positions),
                      num_classes=loaded.categories.num_lv2,
                      max_frames=encoder.max_frames if kind != "none" else None,
                      frame_size=cfg.data.frame_size if kind == "pixels" else None,
                      feat_dim=frame_spec.width if kind == "features" else None,
                      tower=frame_spec.tower, fingerprint=frame_spec.fingerprint, opset=OPSET,
                      source=str(source), versions=_versions())


@contextlib.contextmanager
def _module_trail(model: nn.Module) -> Iterator[list[str]]:
    """The names of the modules whose forward is running (outermost first); left as it was when one raised."""
    trail: list[str] = []

    def enter(name: str) -> None:  # hooks return None: a forward hook's value would replace the output
        trail.append(name)

    def leave() -> None:
        if trail:
            trail.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: enter(n)))
        handles.append(module.register_forward_hook(lambda *_: leave()))
    try:
        yield trail
    finally:
        for handle in handles:
            handle.remove()


def _failing_modules(wrapper: nn.Module, args: tuple[torch.Tensor, ...], message: str) -> list[str]:
    """The modules whose traced graph holds the operator an exporter error names (``aten::op``)."""
    match = re.search(r"(aten|prim|onnx)::\w+", message)
    if match is None:
        return []
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            graph = torch.jit.trace(wrapper, args, check_trace=False, strict=False).inlined_graph
        except Exception:  # only a hint for the message
            return []
    scopes = {node.scopeName() for node in graph.nodes() if node.kind() == match.group(0)}
    names = {scope.split("/")[-1].removeprefix("__module.").removeprefix("model.") for scope in scopes if scope}
    return sorted(names)


def _trace(wrapper: nn.Module, batch: ExampleBatch, names: list[str], file: Path, what: str) -> None:
    dynamic = {"input_ids": {0: "batch", 1: "text"}, "attention_mask": {0: "batch", 1: "text"},
               "frames": {0: "batch", 1: "frames"}, "frame_mask": {0: "batch", 1: "frames"}, "logits": {0: "batch"}}
    # not under no_grad: nn.MultiheadAttention would take its fused inference path, which has no ONNX form
    with warnings.catch_warnings(), _module_trail(wrapper) as trail:
        warnings.simplefilter("ignore")  # the tracer's warnings about Python values it freezes: checked below
        try:
            torch.onnx.export(wrapper, batch.args(), str(file), input_names=names, output_names=["logits"],
                              dynamic_axes={k: v for k, v in dynamic.items() if k in [*names, "logits"]},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        except Exception as exc:  # any exporter failure becomes one line naming the module
            modules = [trail[-1]] if trail else _failing_modules(wrapper, batch.args(), str(exc))
            where = f" in {', '.join(m.removeprefix('model.') or 'the classifier' for m in modules)}" if modules else ""
            raise ExportError(f"{what} does not export to ONNX{where}: {first_line(exc)}") from None


def _session(file: Path, providers: list[str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(file), options, providers=providers)


def _check_providers(spec: ExportSpec, what: str) -> list[str] | None:
    """The providers to check the graph with; None for an fp16 graph without a CUDA provider here (ONNX Runtime's
    CPU provider does not run half-precision graphs: it may crash outright), whose structure onnx checks instead."""
    import onnxruntime as ort

    if spec.precision != "fp16":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider"]
    logger.warning("%s: the fp16 graph is checked by onnx only; ONNX Runtime runs it on GPU providers, which this "
                   "machine lacks (its outputs were not compared with torch here)", what)
    return None


def _parity(model: nn.Module, file: Path, spec: ExportSpec, vocab_size: int, feature_dtype: torch.dtype,
            what: str) -> float | None:
    """The largest class-probability difference, ONNX Runtime vs ``model`` (float32 torch), over
    :func:`check_batches`; ExportError beyond the precision's tolerance. None when no provider here runs the graph
    (fp16 without CUDA)."""
    providers = _check_providers(spec, what)
    if providers is None:
        import onnx

        try:
            onnx.checker.check_model(str(file), full_check=True)
        except Exception as exc:  # onnx's own error types
            raise ExportError(f"the exported fp16 graph of {what} is not valid ONNX: "
                              f"{first_line(exc)}") from None
        return None
    try:
        session = _session(file, providers)
    except Exception as exc:  # onnxruntime's own error types
        raise ExportError(f"ONNX Runtime cannot load the exported graph of {what}: "
                          f"{first_line(exc)}") from None
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for batch in check_batches(spec, vocab_size, feature_dtype):
        with torch.no_grad():
            args = {k: (v.float() if v.is_floating_point() else v) for k, v in batch.tensors.items()}
            expected = softmax(model(**args)["logits"].float().numpy())
        try:
            got = session.run(["logits"], batch.numpy(names))[0]
        except Exception as exc:  # onnxruntime's own error types
            raise ExportError(f"the exported graph of {what} fails on {batch.what}: "
                              f"{first_line(exc)}") from None
        difference = float(np.abs(softmax(got) - expected).max())
        tolerance = TOLERANCES[spec.precision]
        if not difference <= tolerance:
            raise ExportError(f"the exported graph of {what} differs from the torch model on {batch.what}: class "
                              f"probabilities apart by {difference:.2e} > {tolerance:.0e}")
        worst = max(worst, difference)
    return worst


def export_onnx(model_dir: str | Path, out: str | Path, *, precision: str = "fp32", features: bool = False,
                overrides: Sequence[str] = ()) -> ExportResult:
    """Export the classifier of ``model_dir`` (``RUN/best``) into the folder ``out`` (written atomically).

    ``precision``: ``fp32``; ``fp16`` (weights and activations in half precision, for GPU providers; the logits
    stay float32); or ``int8`` (the fp32 graph with dynamically quantized int8 matrix products, for CPUs; class
    probabilities within 5e-2 of torch's). ``features``: the graph reads cached frame features ``[B, T, D]``
    instead of pixels (``data.frame_source=feats``; a model trained on features always does). ``overrides``:
    config overrides for the folder's data settings that the export carries (e.g. ``data.root``).
    """
    if precision not in TOLERANCES:
        raise ArgumentError("precision", f"must be one of {', '.join(TOLERANCES)}, got {precision!r}")
    try:
        import onnx  # noqa: F401 - the exporter needs it
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise UserError(f"exporting needs the onnx and onnxruntime packages ({exc.name} is missing): "
                        "pip install -r requirements.txt") from None
    source, out = Path(model_dir), Path(out)
    if out.resolve() == source.resolve():
        raise ArgumentError("out", f"{out} is the model folder itself; give a new folder")
    extra = ["data.frame_source=feats"] if features else []
    if precision == "fp16":  # the exporter's form of sdpa mixes float32 into a half graph; eager attention does not
        extra.append("model.text.attn_implementation=eager")
    loaded = load_portable(source, [*overrides, *extra])
    model, what = loaded.model.eval(), str(source)
    if features and model.encoder.frame_embedder is None:
        raise ArgumentError("features", f"{source} is a text-mode model: it reads no frames")
    spec = _spec_of(loaded, precision, source)
    vocab = int(model.encoder.text.config.vocab_size)
    feature_dtype = torch.float16 if precision == "fp16" else torch.float32
    start = time.perf_counter()
    graph_model = _half_copy(model) if precision == "fp16" else model
    traced = check_batches(spec, vocab, feature_dtype)[0]
    with atomic_dir(out) as tmp:
        file = tmp / ONNX_FILE
        _trace(ExportableClassifier(graph_model).eval(), traced, spec.inputs, file, what)
        if precision == "int8":
            _quantize(file)
        parity = _parity(model, file, spec, vocab, feature_dtype, what)
        spec = ExportSpec(**{**spec.__dict__, "parity": parity})
        spec.save(tmp)
        save_config(loaded.cfg, tmp / "config.yaml")
        loaded.categories.save(tmp / "categories.json")
        loaded.tokenizer.save_pretrained(str(tmp))
        if loaded.flip_map is not None:
            loaded.flip_map.save(tmp)
        megabytes = sum(f.stat().st_size for f in tmp.iterdir()) / 2**20
    return ExportResult(out, spec, time.perf_counter() - start, megabytes)


def _quantize(file: Path) -> None:
    """In place: the graph with int8 weights for its matrix products, activations quantized on the fly (ONNX
    Runtime's dynamic quantization; convolutions stay float32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # the quantizer needs every tensor's type: onnx's shape inference and ONNX Runtime's graph optimisation first
    # (its symbolic shape inference stops at the data-dependent number of valid frames, so it is skipped)
    prepared, quantized = file.with_name("prepared.onnx"), file.with_name("quantized.onnx")
    quant_pre_process(str(file), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])
    quantized.replace(file)
    prepared.unlink()


def _half_copy(model: nn.Module) -> nn.Module:
    """A half-precision copy of ``model`` for the fp16 graph (the float32 one stays the reference); its layer
    norms and softmaxes run in half too, as on the GPU providers."""
    import copy

    return copy.deepcopy(model).half().eval()
