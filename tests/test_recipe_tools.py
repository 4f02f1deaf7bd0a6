"""The recipe tools' variant tables stay valid configs, and the ablation table reads its results correctly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmcls.config import load_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import ablate  # noqa: E402
import benchmark_step  # noqa: E402


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
