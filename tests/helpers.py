"""Helpers shared by the tests (no test module imports another): tiny models and batches, tiny training
overrides on the synthetic dataset, reading run outputs, two-process launches."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import torch

from mmcls.config import Config
from mmcls.models import MultimodalClassifier, build_model

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------------------------
# tiny models (from test_models.py)

SIZE = 32  # frame side in px
FRAMES = 4
TINY_CLIP = {"width": 32, "layers": 2, "heads": 2, "patch_size": 8, "embed_dim": 24}
TINY_TIMM = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}
NUM_LV2, NUM_LV1 = 7, 3


def make_cfg(kind: str = "clip", mode: str = "fusion", **model: object) -> Config:
    """A tiny config: 2-layer 32-wide BERT, 32 px frames, 4 frames per video."""
    cfg = Config()
    cfg.data.frame_size, cfg.data.max_frames, cfg.data.max_text_len = SIZE, FRAMES, 16
    cfg.model.text = dataclasses.replace(cfg.model.text, hidden_size=32, num_layers=2, num_heads=2,
                                         intermediate_size=64, max_positions=32)
    if kind == "clip":
        cfg.model.vision.overrides = dict(TINY_CLIP)
    else:
        cfg.model.vision.kind, cfg.model.vision.name = "timm", "vit_tiny_patch16_224"
        cfg.model.vision.overrides = dict(TINY_TIMM)
    cfg.model.mode = mode
    for key, value in model.items():
        setattr(cfg.model, key, value)
    return cfg


def make_batch(tokenizer, batch: int = 3, frames: int = FRAMES, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids with right padding, uint8 frames and a frame mask with a short video and a video-less sample."""
    g = torch.Generator().manual_seed(seed)
    length = 10
    input_ids = torch.randint(5, len(tokenizer), (batch, length), generator=g)
    input_ids[:, 0] = tokenizer.cls_token_id
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, 6:] = 0
    input_ids[0, 6:] = tokenizer.pad_token_id
    pixels = torch.randint(0, 256, (batch, frames, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    frame_mask = torch.ones(batch, frames, dtype=torch.bool)
    frame_mask[0, 2:] = False  # a short video
    frame_mask[-1] = False  # a broken video: no frames at all
    pixels[~frame_mask] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "frames": pixels, "frame_mask": frame_mask}


def build(tokenizer, cfg: Config, **kwargs: object) -> MultimodalClassifier:
    torch.manual_seed(0)
    return build_model(cfg, NUM_LV2, NUM_LV1, tokenizer, **kwargs).eval()


# ----------------------------------------------------------------------------------------------------------------
# tiny runs on the synthetic dataset (from test_finetune.py)


def tiny_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={root}", "data.category_file=category_ids.txt", "data.max_frames=4", "data.frame_size=24",
        "data.resize_size=32", "data.max_text_len=32", "data.num_workers=0",
        "model.vision.overrides={width: 32, layers: 1, heads: 2, patch_size: 8, embed_dim: 32}",
        "model.text.hidden_size=32", "model.text.num_layers=1", "model.text.num_heads=2",
        "model.text.intermediate_size=64", "model.text.max_positions=64",
        "train.batch_size=8", "train.eval_batch_size=16", f"output_dir={out}", *extra,
    ]


def read_metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_csv_ids(path: Path) -> list[str]:
    return [line.split(",")[0] for line in path.read_text(encoding="utf-8").splitlines()]


def launch_two_processes(command: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 -m mmcls COMMAND`` on CPU: two real gloo processes."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            "29517", "-m", "mmcls", command, *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def run_installed(installed: tuple[Path, dict[str, str]], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m mmcls ARGS`` of the installed package, run in ``cwd``; asserts that it succeeded."""
    python, env = installed
    proc = subprocess.run([str(python), "-m", "mmcls", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"mmcls {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc
