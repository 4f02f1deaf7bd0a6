"""The recipe tools' variant tables stay valid configs, and the ablation table reads its results correctly."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcls.commands import ablate, benchmark_step, few_label, time_study
from mmcls.config import load_config
from mmcls.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variant", ablate.VARIANTS, ids=lambda v: v.name)
def test_every_ablation_variant_is_a_valid_demo_config(variant):
    cfg = load_config(ROOT / "configs" / "demo.yaml", list(variant.overrides))
    assert cfg.output_dir  # parsed and validated: a renamed key would raise ConfigError here
    assert variant.reuse is None or variant.reuse in ablate.VARIANT_NAMES


@pytest.mark.parametrize("name", list(benchmark_step.VARIANTS))
def test_every_benchmark_variant_is_a_valid_demo_config(name):
    load_config(ROOT / "configs" / "demo.yaml", list(benchmark_step.VARIANTS[name]))


def test_ablation_table_compares_with_the_baseline():
    results = [ablate.Result("baseline", 42, 0.60, train_videos_per_s=100.0),
               ablate.Result("baseline", 43, 0.64, train_videos_per_s=100.0),
               ablate.Result("fgm", 42, 0.65, train_videos_per_s=80.0),
               ablate.Result("logit_adjust", 42, 0.61, train_videos_per_s=100.0)]
    lines = ablate.markdown_table(results).splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]}
    assert rows["baseline"][3] == "0.6200 (±0.020, 2 seeds)"
    assert rows["fgm"][3:] == ["0.6500", "+0.030"]
    assert rows["logit_adjust"][2].startswith("predict ") and rows["logit_adjust"][3:] == ["0.6100", "-0.010"]
    assert list(rows) == ["baseline", "fgm", "logit_adjust"]  # the order of VARIANTS


@pytest.mark.parametrize("arm", list(few_label.ARMS))
def test_every_few_label_arm_is_a_valid_config(arm):
    overrides = [o.format(pretrained="runs/pretrain_demo/best") for o in few_label.ARMS[arm]]
    cfg = load_config([ROOT / "configs" / "demo.yaml", ROOT / "configs" / "few_label.yaml"], overrides)
    assert cfg.data.train_fraction < 1
    assert (cfg.model.init_from is None) == (arm == "scratch")


def test_few_label_table_averages_seeds_and_compares_with_scratch():
    results = [few_label.Result("scratch", 42, 0.30), few_label.Result("scratch", 43, 0.40),
               few_label.Result("pretrained_vision", 42, 0.45), few_label.Result("pretrained_vision", 43, 0.45),
               few_label.Result("pretrained", 42, 0.20)]
    lines = few_label.markdown_table(results, [42, 43]).splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]}
    assert rows["scratch"][1:] == ["0.300", "0.400", "**0.350**", ""]
    assert rows["pretrained_vision"][1:] == ["0.450", "0.450", "**0.450**", "+0.100"]
    assert rows["pretrained"][1:] == ["0.200", "-", "**0.200**", "-0.150"]
    assert list(rows) == ["scratch", "pretrained", "pretrained_vision"]


@pytest.mark.parametrize("name", time_study.VARIANT_NAMES)
def test_every_time_study_variant_is_a_valid_pretraining_and_finetuning_config(name):
    switch, order = time_study.split_variant(name)
    configs = [ROOT / "configs" / "demo.yaml", ROOT / "configs" / "pretrain_demo.yaml"]
    pre = load_config(configs, [*switch.overrides, f"pretrain.order_weight={1.0 if order else 0.0}"])
    fine = load_config(configs[:1], list(switch.overrides))
    assert pre.model.temporal == fine.model.temporal and (pre.pretrain.order_weight > 0) == order
    assert fine.model.temporal.enabled == (switch.name != "none")


def test_time_study_table_averages_seeds_and_reports_direction():
    def result(name: str, seed: int, f1: float, right: float) -> few_label.Result:
        scores = {"mean_f1": f1, "lv2_macro_f1": f1 - 0.1, "right_direction": right,
                  "reverse_changed_directional": right - 0.2, "reverse_changed_others": 0.02}
        return few_label.Result(name, seed, f1, scores)

    results = [result("grey+order", 42, 0.9, 0.98), result("none", 42, 0.6, 0.5), result("none", 43, 0.7, 0.6),
               result("grey+order", 43, 0.8, 0.96)]
    lines = time_study.markdown_table(results).splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]}
    assert list(rows) == ["none", "grey+order"]  # the order of the switches, without then with the order task
    assert rows["none"][2:] == ["no", "0.6500 ±0.050", "0.5500", "55.0%", "35.0% / 2.0%", "2"]
    assert "directional / others" in lines[0]
    assert rows["grey+order"][1].startswith("frame differences, 1 channel (`model.temporal.frame_diff=grey`)")
    assert rows["grey+order"][2:5] == ["yes", "0.8500 ±0.050", "0.7500"]
    with pytest.raises(UserError, match="unknown variant 'sideways'"):
        time_study.split_variant("sideways")
