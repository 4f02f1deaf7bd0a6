"""tools/evaluate.py end to end: in-process via main(argv) and as a subprocess."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcls.cli import run_main
from mmcls.data.categories import CategorySpace
from mmcls.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "evaluate.py"

# The hand-computed example of tests/test_metrics.py (see the derivation there), with ids v1..v8.
TRUTH = ["0101", "0101", "0101", "0102", "0201", "0201", "0202", "0202"]
PRED = ["0101", "0101", "0102", "0102", "0201", "0301", "0201", "0202"]
EXPECTED_LINES = ["lv1_micro_f1 0.8750", "lv1_macro_f1 0.6190", "lv2_micro_f1 0.6250", "lv2_macro_f1 0.5267",
                  "mean_f1 0.6614"]


def load_tool():
    return importlib.import_module("mmcls.commands.evaluate")


evaluate = load_tool()


def write_csv(path: Path, labels: list[str], order: list[int] | None = None) -> Path:
    order = order if order is not None else list(range(len(labels)))
    path.write_text("".join(f"v{i + 1},{labels[i]}\n" for i in order))
    return path


@pytest.fixture
def files(tmp_path):
    truth = write_csv(tmp_path / "truth.csv", TRUTH)
    pred = write_csv(tmp_path / "result.csv", PRED, order=[7, 6, 5, 4, 3, 2, 1, 0])  # any order is fine
    return truth, pred


def test_main_prints_scores(files, capsys):
    truth, pred = files
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth)]) == 0
    assert capsys.readouterr().out.splitlines() == EXPECTED_LINES


def test_main_report_and_json(files, tmp_path, capsys):
    truth, pred = files
    out = tmp_path / "score.json"
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth), "--report", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == EXPECTED_LINES
    table = lines[lines.index("per-class (lv2, 5 classes):") + 1:]
    assert table[0].split()[:3] == ["id", "lv1", "support"]
    assert table[1].split() == ["0101", "01", "3", "2", "2", "1.0000", "0.6667", "0.8000"]
    assert "per-class (lv1, 3 classes):" in lines
    payload = json.loads(out.read_text())
    assert payload["mean_f1"] == pytest.approx((7 / 8 + 13 / 21 + 5 / 8 + 79 / 150) / 4)
    assert payload["num_samples"] == 8
    assert [row["id"] for row in payload["per_class"]["lv2"]] == ["0101", "0201", "0202", "0102", "0301"]


def test_main_hierarchy_file(files, tmp_path, capsys):
    truth, pred = files
    hierarchy = tmp_path / "hierarchy.txt"
    hierarchy.write_text("0101 A\n0102 A\n0201 B\n0202 C\n0301 B\n")
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth), "--hierarchy", str(hierarchy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["lv1_micro_f1 0.8750", f"lv1_macro_f1 {37 / 45:.4f}"]  # hand-computed in test_metrics


def test_main_hierarchy_missing_category(files, tmp_path):
    truth, pred = files
    hierarchy = tmp_path / "hierarchy.txt"
    hierarchy.write_text("0101 A\n0102 A\n0201 B\n0202 C\n")
    with pytest.raises(DataError) as info:
        evaluate.main(["--pred", str(pred), "--truth", str(truth), "--hierarchy", str(hierarchy)])
    assert str(info.value).startswith(f"{pred}: line 3")  # v6 -> 0301 is the third line of the reversed file
    assert "0301" in str(info.value)


def test_main_lv1_prefix_len(files, capsys):
    truth, pred = files
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth), "--lv1-prefix-len", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["lv1_micro_f1 1.0000", "lv1_macro_f1 1.0000"]


def test_main_categories_txt_rejects_unknown(files, tmp_path):
    truth, pred = files
    categories = tmp_path / "category_ids.txt"
    categories.write_text("0101\n0102\n0201\n0202\n")  # no 0301
    with pytest.raises(DataError) as info:
        evaluate.main(["--pred", str(pred), "--truth", str(truth), "--categories", str(categories)])
    assert str(info.value).startswith(f"{pred}: line 3")
    assert "unknown category_id '0301'" in str(info.value)
    categories.write_text("0101\n0102\n0201\n0202\n0301\n")
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth), "--categories", str(categories)]) == 0


def test_main_categories_json_gives_lv1(files, tmp_path, capsys):
    truth, pred = files
    space = CategorySpace.build(["0101", "0102", "0201", "0202", "0301"],
                                hierarchy={"0101": "A", "0102": "A", "0201": "B", "0202": "C", "0301": "B"})
    space.save(tmp_path)
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth), "--categories",
                          str(tmp_path / "categories.json")]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"lv1_macro_f1 {37 / 45:.4f}"


def test_run_main_turns_errors_into_one_line(files, tmp_path, capsys):
    truth, _ = files
    bad = tmp_path / "bad.csv"
    bad.write_text("id,category_id\nv1,0101\n")
    assert run_main(evaluate.main, ["--pred", str(bad), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: line 1") and "header" in err


def test_unknown_category_ids_are_counted_in_a_warning(files, capsys):
    """Without --categories the truth's categories are the known ones: the example's one '0301' scores as a wrong
    answer, and stderr says so with the count."""
    truth, pred = files
    assert evaluate.main(["--pred", str(pred), "--truth", str(truth)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == EXPECTED_LINES
    assert err == (f"warning: {pred}: 1 of 8 predictions are category ids {truth} does not have ('0301'); they count "
                   "as wrong answers (--categories makes them errors)\n")


def test_a_submission_without_one_known_category_is_refused(files, tmp_path, capsys):
    """A CSV full of '101' (the zeros lost in a spreadsheet) is an error naming the mistake, not a score of 0.0."""
    truth, _ = files
    stripped = write_csv(tmp_path / "stripped.csv", [label.lstrip("0") for label in PRED])
    assert run_main(evaluate.main, ["--pred", str(stripped), "--truth", str(truth)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"error: {stripped}: none of its 8 predictions is a category id of {truth} ('101', '102', "
                          "'201' and 2 more); category ids are compared as written: '101' is not '0101'")
    other = write_csv(tmp_path / "other.csv", ["9999"] * len(PRED))
    assert run_main(evaluate.main, ["--pred", str(other), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {other}: none of its 8 predictions is a category id of {truth} ('9999')\n"


# --- as a subprocess, from another folder, without PYTHONPATH -----------------------------------------------------
def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_subprocess_ok(files, tmp_path):
    truth, pred = files
    proc = run_script("--pred", pred.name, "--truth", truth.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == EXPECTED_LINES


def test_subprocess_bad_file(files, tmp_path):
    truth, _ = files
    short = write_csv(tmp_path / "short.csv", PRED[:6])
    proc = run_script("--pred", short.name, "--truth", truth.name, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: short.csv: line 7") and "2 ids are missing: 'v7', 'v8'" in proc.stderr


def test_subprocess_help_has_example(tmp_path):
    proc = run_script("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "example:" in proc.stdout and "--pred result.csv --truth truth.csv" in proc.stdout
