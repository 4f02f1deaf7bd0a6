"""tools/workflow.py (docs/WORKFLOW.md's numbers) runs every stage end to end on the tiny dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcls.cli import run_main
from tests.helpers import tiny_overrides


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_workflow_runs_every_stage_and_scores_it(synthetic_root, tmp_path):
    from mmcls.commands.workflow import main

    overrides = [o for o in tiny_overrides(synthetic_root, tmp_path / "unused", "train.max_steps=2")
                 if not o.startswith(("output_dir=", "data.root="))]
    out = tmp_path / "wf"
    assert run_main(main, ["--data", str(synthetic_root), "--out", str(out), "--k", "2", "--threshold", "0",
                           *overrides]) == 0
    results = json.loads((out / "workflow.json").read_text())
    assert len(results) == 10
    for stage, scores in results.items():
        if "test" in scores:
            assert 0.0 <= scores["test"] <= 1.0, stage
    assert results["5 pseudo-labels"]["kept"] == 16  # threshold 0 keeps every unlabelled video of the fixture
    pseudo = json.loads((out / "pseudo.json").read_text())
    assert all("category_probs" in r for r in pseudo)
    assert "distillation: teacher" in (out / "a_pseudo_distill" / "fold0" / "train.log").read_text()
    table = (out / "workflow.md").read_text()
    assert table.count("\n") == 12 and "8 ensemble of all rounds" in table
    assert Path(out / "ensemble_all" / "test.csv").is_file()
