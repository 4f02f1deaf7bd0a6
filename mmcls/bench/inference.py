"""Inference engines side by side: one model, one batch in memory, timed under torch eager (fp32, bf16 autocast),
torch.compile and ONNX Runtime (the fp32 and int8 exports of :mod:`mmcls.deploy`).

The model is built from the config (random weights: speed does not depend on their values), saved as a model folder
and exported, so every engine runs the same weights on the same batch. Each figure is the median of ``steps``
timed forward passes after ``warmup`` untimed ones (torch.compile compiles in its first one; that time is reported
apart). The loader is not in these figures: ``tools/speed_check.py`` measures end to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcls.bench.model import autocast_for, load_batch, median_seconds
from mmcls.config import Config
from mmcls.engine.inference import model_inputs

# engine -> (runtime, precision)
ENGINES: dict[str, tuple[str, str]] = {
    "eager": ("torch eager", "fp32"),
    "eager_bf16": ("torch eager", "bf16 autocast"),
    "compile": ("torch.compile", "fp32"),
    "onnx": ("ONNX Runtime", "fp32"),
    "onnx_int8": ("ONNX Runtime", "int8 (dynamic)"),
}


def _forward(model: torch.nn.Module, inputs: dict[str, Any], precision: str = "no") -> Callable[[], Any]:
    """A call of ``model`` on ``inputs`` under no_grad and ``precision``'s autocast (an export ignores both)."""
    device = inputs["input_ids"].device

    def run() -> Any:
        with torch.no_grad(), autocast_for(device, precision):
            return model(**inputs)["logits"]

    return run


def measure_engines(name: str, cfg: Config, workdir: Path, engines: Sequence[str], steps: int,
                    warmup: int) -> list[dict[str, Any]]:
    """One row per engine: videos/s on ``cfg``'s first training batch, and the ratio to torch eager fp32."""
    from mmcls.deploy.onnx_export import export_onnx
    from mmcls.deploy.onnx_runtime import load_export
    from mmcls.model_folder import save_portable
    from mmcls.models import build_model

    batch, tokenizer, categories = load_batch(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, categories.num_lv2, categories.num_lv1, tokenizer, load_pretrained=False).eval()
    inputs = model_inputs(batch)
    folder = workdir / name
    save_portable(folder / "best", model, cfg, categories, tokenizer)
    videos = int(batch["input_ids"].shape[0])
    reference = _forward(model, inputs)().float().numpy()
    rows: list[dict[str, Any]] = []
    for engine in engines:
        runtime, precision = ENGINES[engine]
        note = ""
        if engine.startswith("onnx"):
            export_precision = "int8" if engine == "onnx_int8" else "fp32"
            result = export_onnx(folder / "best", folder / engine, precision=export_precision)
            onnx_model = load_export(folder / engine).model
            run = _forward(onnx_model, inputs)
            note = f"export {result.seconds:.0f} s, {result.megabytes:.0f} MB"
        elif engine == "compile":
            compiled = torch.compile(model)
            start = time.perf_counter()
            run = _forward(compiled, inputs)
            run()
            note = f"compile {time.perf_counter() - start:.0f} s"
        else:
            run = _forward(model, inputs, "bf16" if engine == "eager_bf16" else "no")
        logits = run()
        logits = logits.float().numpy() if isinstance(logits, torch.Tensor) else logits
        agree = float(np.mean(logits.argmax(1) == reference.argmax(1)))
        seconds = median_seconds(run, torch.device("cpu"), steps, warmup)
        rows.append({"config": name, "engine": engine, "runtime": runtime, "precision": precision,
                     "batch": videos, "videos_per_s": round(videos / seconds, 2), "argmax_agreement": agree,
                     "note": note})
    eager = next((r["videos_per_s"] for r in rows if r["engine"] == "eager"), None)
    for row in rows:
        row["vs_eager"] = round(row["videos_per_s"] / eager, 2) if eager else None
    return rows


def engines_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| config | runtime | precision | batch | videos/s | vs eager fp32 | same argmax | note |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['config']} | {r['runtime']} | {r['precision']} | {r['batch']} | {r['videos_per_s']:,} | "
              f"{r['vs_eager']:.2f}x | {r['argmax_agreement']:.0%} | {r['note']} |" for r in rows]
    return "\n".join(lines)
