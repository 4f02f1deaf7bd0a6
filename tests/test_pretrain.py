"""Pretraining end to end: the run directory, the pretrained folder, finetuning from it, and two real processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import launch_two_processes, read_metrics, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["--config", str(ROOT / "configs" / "demo.yaml"), "--config", str(ROOT / "configs" / "pretrain_demo.yaml")]


def pretrain_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_overrides(root, out, "pretrain.holdout=16", "train.max_steps=4", "train.eval_every=2", *extra)


def test_pretrain_writes_a_run_that_finetuning_starts_from(synthetic_root, tmp_path):
    from mmcls.commands import pretrain as pretrain_script

    run = tmp_path / "pre"
    assert pretrain_script.main([*CONFIGS, *pretrain_overrides(synthetic_root, run, "pretrain.whole_word=true",
                                                               "pretrain.itc_weight=0.5",
                                                               "pretrain.order_weight=0.5")]) == 0
    for name in ("config.yaml", "metrics.csv", "train.log", "checkpoints/last/model.safetensors",
                 "best/model.safetensors", "best/pretrain_heads.safetensors", "best/pretrained.json",
                 "best/bert_config.json", "best/tokenizer.json"):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == [2, 4]
    for row in rows:  # every task's loss and accuracy is logged on the held-out videos
        for key in ("val_loss", "loss_mlm", "loss_mfm", "loss_itm", "loss_itc", "loss_order", "mlm_accuracy",
                    "itm_accuracy", "order_accuracy"):
            assert row[key] != "", key
        assert 0.0 <= float(row["mlm_accuracy"]) <= 1.0 and 0.0 <= float(row["order_accuracy"]) <= 1.0
    assert "order_head.weight" in load_file(run / "best" / "pretrain_heads.safetensors")

    from mmcls.config import build_config, load_config
    from mmcls.engine.finetune import finetune

    fine = tmp_path / "fine"
    frame_diff = load_config(run / "config.yaml").model.temporal.frame_diff  # the demo's: the stems must match
    finetune(build_config({}, tiny_overrides(synthetic_root, fine, "train.max_steps=1", "train.lr=0",
                                             "train.lr_text=0", "train.lr_vision=0",
                                             f"model.init_from={run / 'best'}",
                                             f"model.temporal.frame_diff={frame_diff}")))
    encoder, finetuned = load_file(run / "best" / "model.safetensors"), load_file(fine / "best" / "model.safetensors")
    assert set(encoder) < set(finetuned)  # the finetuned model adds its heads
    for key, tensor in encoder.items():  # with a zero learning rate the encoder is exactly the pretrained one
        assert (finetuned[key] == tensor).all(), key
    assert "model.init_from:" in (fine / "train.log").read_text(encoding="utf-8")


def test_two_process_pretraining_keeps_the_replicas_identical(synthetic_root, tmp_path):
    run = tmp_path / "pre2"
    proc = launch_two_processes("pretrain", [*CONFIGS, *pretrain_overrides(synthetic_root, run,
                                                                            "pretrain.order_weight=1")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "2 process(es)" in log and "weights identical on all 2 processes" in log
    assert (run / "best" / "model.safetensors").is_file()


def test_masked_inputs_mask_what_they_label(synthetic_root):
    import torch

    from mmcls.config import build_config
    from mmcls.data.splits import build_tokenizer
    from mmcls.data.wwm import batch_word_ids
    from mmcls.engine.pretrain import batch_generator, masked_inputs

    cfg = build_config({}, [f"data.root={synthetic_root}", "pretrain.mlm_prob=0.3", "pretrain.whole_word=true",
                            "pretrain.order_weight=1"])
    tokenizer = build_tokenizer(cfg.data, None)
    texts = ["北京大学的学生在看视频 hello world", "自然语言处理 running quickly"] * 8
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    frame_mask = torch.ones(16, 4, dtype=torch.bool)
    frame_mask[::4] = False  # some samples without video
    batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
             "frames": torch.zeros(16, 4, 8), "frame_mask": frame_mask}
    original = batch["input_ids"].clone()
    inputs = masked_inputs(batch, cfg.pretrain, tokenizer, batch_generator(torch.device("cpu"), 0, 1, 2))
    assert torch.equal(batch["input_ids"], original)  # the batch itself is untouched
    labels = inputs["mlm_labels"]
    chosen = labels != -100
    assert chosen.any() and torch.equal(labels[chosen], original[chosen])
    assert torch.equal(inputs["input_ids"][~chosen], original[~chosen])  # only labelled positions change
    assert (inputs["input_ids"][chosen] == tokenizer.mask_token_id).float().mean() > 0.5  # the 80% branch
    words = batch_word_ids(original, tokenizer)
    for row in range(16):  # whole words: every token of a word is labelled, or none
        for word in words[row].unique():
            if word >= 0:
                flags = chosen[row][words[row] == word]
                assert flags.all() or not flags.any()
    assert inputs["itm_matched"][::4].all()  # samples without video are never ITM negatives
    assert inputs["mfm_mask"][frame_mask.logical_not()].sum() == 0
    again = masked_inputs(batch, cfg.pretrain, tokenizer, batch_generator(torch.device("cpu"), 0, 1, 2))
    assert torch.equal(again["input_ids"], inputs["input_ids"])  # the same position in the run, the same masks
    assert torch.equal(again["order_perm"], inputs["order_perm"])
    assert (inputs["order_labels"][::4] == -100).all() and (inputs["order_labels"][frame_mask.any(1)] >= 0).all()
    assert inputs["order_perm"].shape == frame_mask.shape and set(inputs["order_labels"].tolist()) == {-100, 0, 1, 2}
    cfg.pretrain.order_weight = 0.0  # the order draw comes last: the other tasks' masks do not depend on it
    without = masked_inputs(batch, cfg.pretrain, tokenizer, batch_generator(torch.device("cpu"), 0, 1, 2))
    assert "order_perm" not in without
    for key in ("input_ids", "mfm_mask", "itm_perm"):
        assert torch.equal(without[key], inputs[key]), key


def _scalars(run: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [event.value for event in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def test_pretraining_takes_the_step_level_tricks_of_finetuning(synthetic_root, tmp_path):
    """FGM on the word embeddings, SAM, EMA and freezing run in pretraining through the shared step and loop."""
    from mmcls.commands.pretrain import main

    run = tmp_path / "run"
    assert main([*CONFIGS, *pretrain_overrides(
        synthetic_root, run, "train.adversarial.method=fgm", "train.sam_rho=0.05", "train.ema.decay=0.5",
        "train.freeze.towers=[vision]", "train.log_every=1", "pretrain.itc_weight=0", "pretrain.order_weight=1")]) == 0
    rows = read_metrics(run)
    assert rows and all(row["weights"] == "ema" for row in rows)  # the EMA weights are validated and saved
    adversarial = _scalars(run, "train/loss_adv")
    assert len(adversarial) == 4 and all(value > 0 for value in adversarial)  # an attack pass at every update
    assert len(_scalars(run, "train/loss_order")) == 4  # each task's loss is logged
    assert "froze" in (run / "train.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("switch", ["train.loss.label_smoothing=0.1", "train.mix.mixup_alpha=0.4",
                                    "train.swa.mode=last", "train.distill.teacher=x.npy",
                                    "train.adversarial.frames=true"])
def test_finetuning_only_switches_are_errors_in_pretraining(synthetic_root, tmp_path, capsys, switch):
    from mmcls.cli import run_main
    from mmcls.commands.pretrain import main

    extra = [switch, "train.adversarial.method=fgm"] if "adversarial" in switch else [switch]
    assert run_main(main, [*CONFIGS, *pretrain_overrides(synthetic_root, tmp_path / "run", *extra)]) == 2
    key = switch.split("=")[0].rsplit(".", 1)[0] if "adversarial" not in switch else "train.adversarial.frames"
    assert key in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything ran


def test_the_shipped_pretraining_config_layers_over_base():
    from mmcls.config import load_config
    from mmcls.engine.pretrain import check_pretraining_switches

    check_pretraining_switches(load_config([ROOT / "configs" / "base.yaml", ROOT / "configs" / "pretrain.yaml"]))
