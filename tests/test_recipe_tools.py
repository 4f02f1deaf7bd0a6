"""The recipe tools' variant tables stay valid configs, and the ablation table reads its results correctly."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcls.commands import ablate, benchmark_step, few_label
from mmcls.config import load_config

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
