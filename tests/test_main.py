"""``python -m mmcls`` lists every command of mmcls.commands, runs one by name, every command's --help has an
example, and every script in finetune/, pretrain/ and tools/ is a thin wrapper around one command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmcls.__main__ import commands, main, summary

ROOT = Path(__file__).resolve().parents[1]


def test_listing_names_every_command_with_its_summary(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    names = {path.stem for path in (ROOT / "tools").glob("*.py")} | {"finetune", "pretrain"}
    assert set(commands()) == names  # every script of the checkout is a command of the package
    assert list(commands())[:2] == ["finetune", "pretrain"]
    assert "accelerate launch -m mmcls finetune" in out
    for name, path in commands().items():
        assert path.parent == ROOT / "mmcls" / "commands"
        assert summary(path), f"{path} has no docstring"
        assert f"  {name} " in out and summary(path)[:40] in out


def test_unknown_name_is_one_line_and_exit_2(capsys):
    assert main(["warp_drive"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'warp_drive' (known: finetune, pretrain,")


@pytest.mark.parametrize("name", sorted(commands()))
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


@pytest.mark.parametrize("script", sorted([*(ROOT / "tools").glob("*.py"), ROOT / "finetune" / "train.py",
                                           ROOT / "pretrain" / "train.py"]), ids=lambda p: p.stem)
def test_every_script_is_a_thin_wrapper(script):
    """The code of a command lives in mmcls.commands; a script only calls it (so the installed package has it all)."""
    text = script.read_text(encoding="utf-8")
    name = {"finetune": "finetune", "pretrain": "pretrain"}.get(script.parent.name, script.stem)
    assert f"from mmcls.commands.{name} import main" in text
    assert len(text.splitlines()) <= 20 and "def " not in text


def test_a_script_and_its_command_share_the_help():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "example" in proc.stdout.lower()


@pytest.mark.parametrize("processes", [["--cpu", "--num_processes", "1"],
                                       ["--multi_gpu", "--num_processes", "2", "--main_process_port", "29531"]],
                         ids=["one process", "two processes"])
def test_launch_ends_with_the_commands_own_error(tmp_path, processes):
    """`accelerate launch` ends a failed command with its own traceback (one process: CalledProcessError; several:
    torch's failure report); tools/launch.py takes the same arguments and ends with the command's one-line error and
    its exit code (a script path, or -m mmcls NAME)."""
    import os

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    command = [str(ROOT / "finetune" / "train.py")] if processes[0] == "--cpu" else ["-m", "mmcls", "finetune"]
    argv = [sys.executable, str(ROOT / "tools" / "launch.py"), *processes, "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", *command, "--config", str(ROOT / "configs" / "demo.yaml"),
            "data.max_framez=4"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: data.max_framez: unknown config key"), proc.stderr[-3000:]
    if processes[0] == "--cpu":  # already the last line: not repeated
        assert lines[-1] not in lines[:-1], proc.stderr[-3000:]
