"""Steps of a study or a multi-stage workflow, each a command in its own process (as a user would run it), and
how a finished training run is recognised (so a rerun skips it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mmcls.cli import child_env
from mmcls.errors import UserError
from mmcls.rundir import RESULT_FILE


def run_step(cmd: list[str], log_path: Path) -> None:
    """Run one step of a study (a training run, a prediction) in its own process, its output into ``log_path``."""
    env = child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with log_path.open("w", encoding="utf-8") as log:
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise UserError(f"{' '.join(cmd[:4])} failed with exit code {code}; see {log_path}")


def finished(run: Path) -> bool:
    """Whether the training run (finetuning or pretraining) in ``run`` ran to its end: its ``result.json``."""
    return (run / RESULT_FILE).is_file()
