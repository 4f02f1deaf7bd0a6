"""Shared fixtures. Tests run offline on CPU."""

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
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# CI runs the same examples every time (no flaky first-time finds) and never fails on a slow machine's timing.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]

CORPUS = [
    "今天天气很好 we go running in the park",
    "猫和狗在院子里玩 the cat and the dog play",
    "美食 cooking noodles 面条 很好吃",
    "足球比赛 football match goal 进球",
    "hello world 你好世界",
] * 4


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer trained on a tiny mixed Chinese/English corpus, saved and loaded back from disk."""
    from mmcls.data.tokenizer import load_tokenizer, train_wordpiece

    out = tmp_path_factory.mktemp("tokenizer")
    train_wordpiece(CORPUS, vocab_size=300, min_frequency=1).save_pretrained(out)
    return load_tokenizer(out)


# words that a tiny unigram vocabulary splits (English into pieces, Chinese into multi-character pieces), and a bare
# "▁" before Chinese
UNIGRAM_CORPUS = [*CORPUS, *["北京大学 我爱自然语言处理 清华大学", "playing played player plays play",
                              "北京 大学生 自然 语言"] * 4]


@pytest.fixture(scope="session")
def unigram_tokenizer_dir(tmp_path_factory) -> Path:
    """A SentencePiece unigram tokenizer folder (XLM-R style) written by ``build_tokenizer --kind unigram`` from a
    tiny dataset whose titles are :data:`UNIGRAM_CORPUS`."""
    from mmcls.cli import run_main
    from mmcls.commands.build_tokenizer import main

    root = tmp_path_factory.mktemp("unigram")
    (root / "annotations").mkdir()
    records = [{"id": str(i), "title": text, "asr": "", "ocr": [], "category_id": "0101"}
               for i, text in enumerate(UNIGRAM_CORPUS)]
    (root / "annotations" / "labeled.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    out = root / "tokenizer"
    args = ["--root", str(root), "--out", str(out), "--kind", "unigram", "--vocab-size", "200", "--no-progress"]
    assert run_main(main, args) == 0
    return out


@pytest.fixture(scope="session")
def unigram_tokenizer(unigram_tokenizer_dir):
    """The tokenizer of :func:`unigram_tokenizer_dir`, loaded as ``data.tokenizer`` loads it."""
    from mmcls.data.tokenizer import load_tokenizer

    return load_tokenizer(unigram_tokenizer_dir)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic WBDC dataset (zip + mp4, with faulty records) and a tokenizer trained on it."""
    from mmcls.commands.build_tokenizer import corpus
    from mmcls.data.tokenizer import train_wordpiece
    from mmcls.synthetic import SyntheticSpec, make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, SyntheticSpec(num_labeled=96, num_unlabeled=16, num_test=32, size=32, min_frames=6,
                                       max_frames=12, workers=1), progress=False)
    files = sorted((root / "annotations").glob("*.json"))
    train_wordpiece(corpus(files), vocab_size=400, min_frequency=1).save_pretrained(root / "tokenizer")
    return root


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="session")
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
