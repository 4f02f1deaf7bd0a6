"""Non-finite updates are skipped and a diverging run stops cleanly; out-of-memory errors become advice."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from mmcls.accelerators import out_of_memory_message
from mmcls.cli import run_main
from mmcls.config import build_config
from mmcls.engine.guard import NonFiniteGuard, TrainingDiverged, guarded_step
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_guard_counts_skips_and_stops_after_the_limit():
    guard = NonFiniteGuard(limit=2)
    assert guard.check(torch.tensor(1.5), 1) and guard.check(None, 2)
    assert not guard.check(torch.tensor(math.nan), 3)
    assert guard.check(torch.tensor(0.5), 4) and guard.consecutive == 0  # a finite update resets the streak
    assert not guard.check(torch.tensor(math.inf), 5)
    with pytest.raises(TrainingDiverged, match="2 updates in a row"):
        guard.check(torch.tensor(math.nan), 6)
    assert guard.skipped == 3
    never = NonFiniteGuard(limit=0)
    assert not any(never.check(math.nan, u) for u in range(50)) and never.skipped == 50


def test_guarded_step_leaves_weights_and_optimizer_alone_on_nan():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    before = [p.detach().clone() for p in model.parameters()]
    guard = NonFiniteGuard(limit=5)
    loss = model(torch.ones(4, 3)).sum() * torch.tensor(math.nan)
    accelerator.backward(loss)
    guarded_step(accelerator, model.parameters(), optimizer, 1.0, guard, 1)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert not optimizer.state_dict()["state"] and all(p.grad is None for p in model.parameters())
    accelerator.backward(model(torch.ones(4, 3)).sum())
    guarded_step(accelerator, model.parameters(), optimizer, 0.0, guard, 2)  # clipping off: still measured
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert guard.skipped == 1 and guard.consecutive == 0


def _nan_on(calls: set[int]):
    """Patch for Criterion.__call__: the loss of the given (1-based) calls becomes NaN."""
    from mmcls.engine.losses import Criterion

    original = Criterion.__call__
    counter = {"n": 0}

    def call(self, *args, **kwargs):
        losses = original(self, *args, **kwargs)
        counter["n"] += 1
        if counter["n"] in calls:
            losses["loss"] = losses["loss"] * torch.tensor(math.nan)
        return losses

    return call


def test_finetuning_skips_nan_updates_and_finishes(synthetic_root, tmp_path, monkeypatch):
    from mmcls.engine.finetune import finetune
    from mmcls.engine.losses import Criterion

    monkeypatch.setattr(Criterion, "__call__", _nan_on({2, 3}))
    run = tmp_path / "run"
    result = finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=5",
                                                      "train.max_nonfinite_updates=3")))
    assert result["skipped_updates"] == 2
    assert (run / "best" / "model.safetensors").is_file() and math.isfinite(result["mean_f1"])
    log = (run / "train.log").read_text()
    assert "update 2: gradient norm nan: update skipped (1 in a row" in log
    assert "update 3: gradient norm nan: update skipped (2 in a row" in log


def test_a_diverging_run_stops_with_one_line_and_a_checkpoint(synthetic_root, tmp_path, monkeypatch, capsys):
    from mmcls.commands import finetune as train
    from mmcls.engine.losses import Criterion

    monkeypatch.setattr(Criterion, "__call__", _nan_on(set(range(1, 100))))
    run = tmp_path / "run"
    code = run_main(train.main, ["--config", str(ROOT / "configs" / "demo.yaml"),
                                 *tiny_overrides(synthetic_root, run, "train.max_steps=8",
                                                 "train.max_nonfinite_updates=3")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: 3 updates in a row had a non-finite gradient (last: update 3)")
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()


def test_out_of_memory_becomes_advice(synthetic_root, tmp_path, monkeypatch, capsys):
    import mmcls.engine.finetune
    from mmcls.commands import finetune as train

    def oom(cfg):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(mmcls.engine.finetune, "finetune", oom)
    code = run_main(train.main, ["--config", str(ROOT / "configs" / "demo.yaml"), f"data.root={synthetic_root}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "out of device memory (CUDA out of memory. Tried to allocate 2.00 GiB)" in err
    assert "train.batch_size=16 with train.grad_accum_steps=2" in err and "train.grad_checkpointing=true" in err
    cfg = build_config({}, ["train.grad_checkpointing=true", "train.mixed_precision=bf16"])
    advice = out_of_memory_message(RuntimeError(""), cfg)
    assert "grad_checkpointing" not in advice and "bf16" not in advice


def test_out_of_memory_in_an_inference_tool_becomes_advice(tmp_path, monkeypatch, capsys):
    import mmcls.workflow.predict
    from mmcls.commands import predict

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB\ndetail")

    monkeypatch.setattr(mmcls.workflow.predict, "predict", oom)
    (tmp_path / "best").mkdir()  # never read: predict itself runs out of memory
    code = run_main(predict.main, ["--model", str(tmp_path / "best"), "--output", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Tried to allocate 8.00 GiB" in err and "--batch-size" in err
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ValueError, match="not memory"):  # other errors still surface as tracebacks
        run_main(lambda argv: (_ for _ in ()).throw(ValueError("not memory")), [])
