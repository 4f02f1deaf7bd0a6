"""Run plots and the HTML report: hand-checked confusion counts and per-class F1, and a real finetuning run that
writes its plots, its validation truth and a report with every part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmcls.cli import run_main
from mmcls.metrics import read_submission
from mmcls.plots import confusion_counts, per_class_f1
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ("curves.png", "class_distribution.png", "confusion_lv1.png", "f1_vs_frequency.png")


def test_confusion_counts_rows_are_truth_columns_are_predictions():
    counts = confusion_counts(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_per_class_f1_by_hand():
    f1 = per_class_f1(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c", "d"])
    # a: tp 1, 2 true, 2 predicted -> 0.5; b: tp 1, 1 true, 2 predicted -> 2/3; c and d: 0
    np.testing.assert_allclose(f1, [0.5, 2 / 3, 0.0, 0.0])


@pytest.fixture(scope="module")
def finished_run(synthetic_root, tmp_path_factory):
    from mmcls.config import build_config
    from mmcls.engine.finetune import finetune

    run = tmp_path_factory.mktemp("report") / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=6", "train.eval_every=3")))
    return run


def test_a_finished_run_has_its_plots_and_validation_truth(finished_run):
    for name in PLOTS:
        with Image.open(finished_run / "plots" / name) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 200, name
    truth = read_submission(finished_run / "val_truth.csv")
    ids = (finished_run / "val_logits.ids.txt").read_text(encoding="utf-8").split()
    assert list(truth) == [vid for vid in ids if vid in truth] and len(truth) >= len(ids) - 2  # labelled ones
    classes = json.loads((finished_run / "best" / "categories.json").read_text())["lv2_ids"]
    assert set(truth.values()) <= set(classes)
    assert "plots: curves.png" in (finished_run / "train.log").read_text(encoding="utf-8")


def test_report_tool_writes_one_self_contained_page(finished_run, capsys):
    from mmcls.commands import report

    assert run_main(report.main, [str(finished_run)]) == 0
    page = (finished_run / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(PLOTS)
    result = json.loads((finished_run / "result.json").read_text())
    assert f"{result['mean_f1']:.4f}" in page
    for heading in ("Best validation scores", "Plots", "Level-2 classes on validation", "metrics.csv", "config.yaml"):
        assert f"<h2>{heading}" in page
    truth = read_submission(finished_run / "val_truth.csv")
    assert page.count("<tr>") >= 1 + len(set(truth.values()))  # a row per validation class at least
    assert f"wrote {finished_run / 'report.html'}" in capsys.readouterr().out


def test_report_of_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    from mmcls.commands import report

    assert run_main(report.main, [str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: not a run directory (no metrics.csv or config.yaml)"


def test_report_of_a_run_that_has_just_started(finished_run, tmp_path):
    """An empty metrics.csv, then one whose last row is cut off mid-write: the report still renders."""
    import shutil

    from mmcls.report import build_report

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "result.json").unlink()
    (run / "metrics.csv").write_text("", encoding="utf-8")
    assert "has not finished" in build_report(run).read_text(encoding="utf-8")
    lines = (finished_run / "metrics.csv").read_text(encoding="utf-8").splitlines()
    (run / "metrics.csv").write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")
    page = build_report(run).read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(PLOTS)
