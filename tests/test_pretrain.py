"""Pretraining end to end: the run directory, the pretrained folder, finetuning from it, and two real processes."""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import load_file

from tests.test_finetune import launch_two_processes, read_metrics, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(ROOT / "configs" / "pretrain_demo.yaml")]


def pretrain_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_overrides(root, out, "pretrain.holdout=16", "train.max_steps=4", "train.eval_every=2", *extra)


def test_pretrain_writes_a_run_that_finetuning_starts_from(synthetic_root, tmp_path):
    sys.path.insert(0, str(ROOT / "pretrain"))
    import train as pretrain_script

    run = tmp_path / "pre"
    assert pretrain_script.main([*CONFIGS, *pretrain_overrides(synthetic_root, run, "pretrain.whole_word=true",
                                                               "pretrain.itc_weight=0.5")]) == 0
    for name in ("config.yaml", "metrics.csv", "train.log", "checkpoints/last/model.safetensors",
                 "best/model.safetensors", "best/pretrain_heads.safetensors", "best/pretrained.json",
                 "best/bert_config.json", "best/tokenizer.json"):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [2, 4]
    for row in rows:  # every task's loss and accuracy is logged on the held-out videos
        for key in ("val_loss", "loss_mlm", "loss_mfm", "loss_itm", "loss_itc", "mlm_accuracy", "itm_accuracy"):
            assert row[key] != "", key
        assert 0.0 <= float(row["mlm_accuracy"]) <= 1.0

    from mmcls.config import build_config
    from mmcls.engine.finetune import finetune

    fine = tmp_path / "fine"
    finetune(build_config({}, tiny_overrides(synthetic_root, fine, "train.max_steps=1", "train.lr=0",
                                             "train.lr_text=0", "train.lr_vision=0",
                                             f"model.init_from={run / 'best'}")))
    encoder, finetuned = load_file(run / "best" / "model.safetensors"), load_file(fine / "best" / "model.safetensors")
    assert set(encoder) < set(finetuned)  # the finetuned model adds its heads
    for key, tensor in encoder.items():  # with a zero learning rate the encoder is exactly the pretrained one
        assert (finetuned[key] == tensor).all(), key
    assert "model.init_from:" in (fine / "train.log").read_text(encoding="utf-8")


def test_two_process_pretraining_keeps_the_replicas_identical(synthetic_root, tmp_path):
    run = tmp_path / "pre2"
    proc = launch_two_processes("pretrain/train.py", [*CONFIGS, *pretrain_overrides(synthetic_root, run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "2 process(es)" in log and "weights identical on all 2 processes" in log
    assert (run / "best" / "model.safetensors").is_file()
