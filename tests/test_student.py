"""tools/student.py: a fold ensemble's soft labels teach a smaller, exported student, measured against a budget."""

from __future__ import annotations

import json

import pytest

from mmcls.errors import UserError
from mmcls.workflow.student import Row, StudentPlan, count_parameters, markdown, teacher_folder
from tests.helpers import ROOT, tiny_overrides


def test_a_teacher_folder_without_its_predictions_is_refused(tmp_path):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "oof_logits.npy").write_bytes(b"")
    plan = StudentPlan(ROOT / "configs" / "demo.yaml", ROOT / "configs" / "student_demo.yaml", 1.0, tmp_path / "out",
                       teacher=tmp_path / "teacher")
    with pytest.raises(UserError, match=r"missing test_logits\.npy, unlabeled_logits\.npy; .* --predict unlabeled"):
        teacher_folder(plan)


def test_the_table_says_pass_or_fail_per_model():
    rows = [Row("teacher", ["a", "b"], 0.81234, 50.0, False, 1_200_000, 8),
            Row("student", ["c"], None, 300.5, True, 350_000, 4)]
    table = markdown(rows, 100)
    assert "| teacher | 0.8123 | 50.0 | fail | 1.20 M | 8 |" in table
    assert "| student | - | 300.5 | pass | 0.35 M | 4 |" in table


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a 2-fold teacher and two students of two steps each: about 2 minutes on 2 cores
def test_the_student_stage_runs_end_to_end(synthetic_root, tmp_path, monkeypatch):
    from mmcls.cli import run_main
    from mmcls.commands import student

    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # a relative --out: its files are handed to config keys read relative to data.root
    overrides = tiny_overrides(synthetic_root, tmp_path / "unused", "train.max_steps=2", "train.eval_every=2")
    overrides = [o for o in overrides if not o.startswith("output_dir=")]
    argv = ["--config", str(ROOT / "configs" / "demo.yaml"), "--student", str(ROOT / "configs" / "student_demo.yaml"),
            "--budget", "0.001", "--k", "2", "--out", "out", "--precision", "no",
            "--truth", str(synthetic_root / "annotations" / "test_truth.csv"), *overrides]
    assert run_main(student.main, argv) == 0
    rows = json.loads((out / "student.json").read_text())
    assert [r["model"].split(" (")[0] for r in rows] == ["teacher: 2-fold ensemble", "teacher: its first fold alone",
                                                          "student, distilled", "student, labels only"]
    assert all(r["passes"] and r["videos_per_s"] > 0 and 0 <= r["mean_f1"] <= 1 for r in rows)
    # the tiny overrides set the towers of both configs alike here: the ensemble counts its two folds
    assert rows[2]["frames"] == 4 and rows[2]["parameters"] <= rows[1]["parameters"] == rows[0]["parameters"] / 2
    log = (out / "student" / "train.log").read_text()
    unlabeled = len(json.loads((out / "soft_unlabeled.json").read_text()))
    test = len(json.loads((out / "soft_test.json").read_text()))
    assert f"({unlabeled + test} pseudo-labelled)" in log and "(frames: test)" in log
    assert (out / "student" / "onnx" / "export.json").is_file()
    assert count_parameters([out / "student" / "onnx"]) == rows[2]["parameters"]
