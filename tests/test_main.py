"""``python -m mmcls`` lists every entry point and tool, runs one by name, and every script's --help has an
example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmcls.__main__ import main, scripts, summary

ROOT = Path(__file__).resolve().parents[1]


def test_listing_names_every_script_with_its_summary(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    names = {path.stem for path in (ROOT / "tools").glob("*.py")} | {"finetune", "pretrain"}
    assert set(scripts()) == names
    for name, path in scripts().items():
        assert summary(path), f"{path} has no docstring"
        assert f"  {name} " in out and summary(path)[:40] in out


def test_unknown_name_is_one_line_and_exit_2(capsys):
    assert main(["warp_drive"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown tool 'warp_drive' (known: finetune, pretrain,")


@pytest.mark.parametrize("name", sorted(scripts()))
def test_every_script_help_has_an_example(name):
    """Through ``python -m mmcls NAME --help``: the tool runs by name and documents an example."""
    proc = subprocess.run([sys.executable, "-m", "mmcls", name, "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") and "example" in proc.stdout.lower(), name


@pytest.mark.parametrize("name", ["predict", "ensemble", "average_checkpoints"])
def test_output_is_also_spelled_out(name, capsys):
    """Every tool writes with --out; the three that named it --output take both spellings."""
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert "--output OUTPUT, --out OUTPUT" in capsys.readouterr().out
