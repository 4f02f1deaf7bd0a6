"""The package works installed, outside the checkout: a fresh virtual environment gets ``pip install .`` (a real,
non-editable install; the heavy dependencies come from the running environment through a ``.pth`` file, so nothing
is downloaded), and from a folder outside the checkout, with no ``PYTHONPATH``, ``python -m mmcls`` lists the
commands, makes tiny synthetic data, and runs a 2-fold ``kfold``, a ``finetune`` and a ``predict``."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """``(python of a fresh venv with mmcls installed from a copy of the source, its environment)``."""
    base = tmp_path_factory.mktemp("install")
    source = base / "src"  # a copy: the build's egg-info and build/ never land in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "mmcls", source / "mmcls", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = _venv_python(venv)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the running environment's packages (torch, transformers, pip, setuptools ...) after the venv's own
    parents = dict.fromkeys([sysconfig.get_paths()["purelib"], *site.getsitepackages()])
    Path(purelib, "mmcls_test_deps.pth").write_text("".join(f"{p}\n" for p in parents), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--ignore-installed",
                           str(source)], cwd=base, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return python, env


def _mmcls(installed: tuple[Path, dict[str, str]], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    python, env = installed
    proc = subprocess.run([str(python), "-m", "mmcls", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"mmcls {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_installed_package_runs_every_step_outside_the_checkout(installed, tmp_path):
    python, env = installed
    work = tmp_path / "work"  # outside the checkout: nothing of it is importable from here
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import mmcls; print(mmcls.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]) and not Path(where).is_relative_to(ROOT), where

    listing = _mmcls(installed, work).stdout
    for name in ("finetune", "pretrain", "predict", "kfold", "evaluate", "make_synthetic"):
        assert f"  {name} " in listing
    assert "source checkout" not in listing

    data = work / "data"
    _mmcls(installed, work, "make_synthetic", "--out", str(data), "--num-labeled", "40", "--num-unlabeled", "0",
           "--num-test", "6", "--size", "32", "--min-frames", "4", "--max-frames", "6", "--no-mp4", "--no-faults",
           "--workers", "1", "--no-progress", "--num-text-concepts", "2", "--num-video-concepts", "2",
           "--video-concepts-per-text", "2")
    _mmcls(installed, work, "build_tokenizer", "--root", str(data), "--out", str(data / "tokenizer"),
           "--vocab-size", "300", "--min-frequency", "1")
    config = work / "tiny.yaml"  # the user's own config: the checkout's configs/ are not installed
    shutil.copy2(ROOT / "configs" / "demo.yaml", config)
    tiny = [o for o in tiny_overrides(data, work / "unused", "train.max_steps=1", "train.eval_batch_size=32")
            if not o.startswith("output_dir=")]
    test_ids = [r["id"] for r in json.loads((data / "annotations" / "test.json").read_text(encoding="utf-8"))]

    _mmcls(installed, work, "kfold", "--config", "tiny.yaml", "--k", "2", "--out", "kfold", "--predict", "test",
           *tiny)
    assert json.loads((work / "kfold" / "kfold.json").read_text())["k"] == 2
    assert [line.split(",")[0] for line in (work / "kfold" / "test.csv").read_text().splitlines()] == test_ids

    _mmcls(installed, work, "finetune", "--config", "tiny.yaml", *tiny, "output_dir=run")
    assert (work / "run" / "best" / "model.safetensors").is_file()
    _mmcls(installed, work, "predict", "--model", "run/best", "--out", "result.csv", f"data.root={data}")
    rows = [line.split(",") for line in (work / "result.csv").read_text().splitlines()]
    assert [row[0] for row in rows] == test_ids and all(len(row) == 2 and row[1] for row in rows)
