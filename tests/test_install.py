"""The package works installed, outside the checkout: a fresh virtual environment gets ``pip install .`` (a real,
non-editable install, the ``installed`` fixture of conftest.py; the heavy dependencies come from the running
environment through a ``.pth`` file, so nothing is downloaded), and from a folder outside the checkout, with no
``PYTHONPATH``, ``python -m mmcls`` lists the commands and runs a ``finetune`` and a ``predict``; tests/test_kfold.py
runs its 2-fold ``kfold`` with the same installation, from outside the checkout too."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.helpers import run_installed, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_runs_every_step_outside_the_checkout(installed, synthetic_root, tmp_path):
    """From a folder outside the checkout: the installed copy is imported, ``python -m mmcls`` lists the commands,
    and ``finetune`` and ``predict`` run. (The 2-fold ``kfold`` of the installed package runs in
    tests/test_kfold.py, on the same installation.)"""
    python, env = installed
    work = tmp_path / "work"  # outside the checkout: nothing of it is importable from here
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import mmcls; print(mmcls.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]) and not Path(where).is_relative_to(ROOT), where

    listing = run_installed(installed, work).stdout
    for name in ("finetune", "pretrain", "predict", "kfold", "evaluate", "make_synthetic"):
        assert f"  {name} " in listing
    assert "source checkout" not in listing

    config = work / "tiny.yaml"  # the user's own config: the checkout's configs/ are not installed
    shutil.copy2(ROOT / "configs" / "demo.yaml", config)
    tiny = [o for o in tiny_overrides(synthetic_root, work / "unused", "train.max_steps=1", "train.eval_batch_size=32")
            if not o.startswith("output_dir=")]
    test_ids = [r["id"] for r in json.loads((synthetic_root / "annotations" / "test.json").read_text("utf-8"))]
    run_installed(installed, work, "finetune", "--config", "tiny.yaml", *tiny, "output_dir=run")
    assert (work / "run" / "best" / "model.safetensors").is_file()
    run_installed(installed, work, "predict", "--model", "run/best", "--out", "result.csv",
                  f"data.root={synthetic_root}")
    rows = [line.split(",") for line in (work / "result.csv").read_text().splitlines()]
    assert [row[0] for row in rows] == test_ids and all(len(row) == 2 and row[1] for row in rows)
