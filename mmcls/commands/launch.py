"""Run `accelerate launch` so that a failing command ends with its own one-line error, not the launcher's traceback.

Takes exactly the arguments of `accelerate launch` (the processes, machines, config file ...), then the script or
``-m mmcls NAME`` and its arguments. Plain `accelerate launch` works too, but when the command stops with an error
(exit code 2: a bad config key, a missing file ...) the launcher then raises its own exception: one process prints a
CalledProcessError traceback, several processes torch's failure report, after the line that says what is wrong.
Here the last line is always the command's own ``error: ...`` line (repeated after the launcher's report when there
is one), and the exit code is the command's.

examples:
  python tools/launch.py finetune/train.py --config configs/demo.yaml
  python tools/launch.py --multi_gpu --num_processes 8 finetune/train.py --config configs/base.yaml \\
      data.root=/data/wbdc output_dir=runs/base
  python tools/launch.py --config_file configs/accelerate/multi_gpu.yaml tools/predict.py --model runs/base/best \\
      --output result.csv
  python -m mmcls launch --num_processes 2 -m mmcls finetune --config my.yaml   # installed, from any folder
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import ERROR_DIR_ENV

USAGE = "launch.py [accelerate launch options] SCRIPT|-m MODULE [ARGS ...]"


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    parser = launch_command_parser()
    description, examples = __doc__.split("\n\nexamples:\n")
    parser.prog, parser.usage, parser.description = "launch.py", USAGE, description
    parser.epilog = f"examples:\n{examples}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    args = parser.parse_args(argv)
    previous = os.environ.get(ERROR_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="mmcls-launch-") as errors:
        os.environ[ERROR_DIR_ENV] = errors  # every process of the command writes its one-line error there
        try:
            launch_command(args)
        except subprocess.CalledProcessError as exc:  # one process: its error line is already the last line
            return _failed(args.training_script, exc.returncode, errors, repeat=False)
        except ChildFailedError as exc:  # several processes: torch's report came after their error lines
            _, failure = exc.get_first_failure()
            return _failed(args.training_script, failure.exitcode, errors, repeat=True)
        finally:
            if previous is None:
                os.environ.pop(ERROR_DIR_ENV, None)
            else:
                os.environ[ERROR_DIR_ENV] = previous
    return 0


def _failed(script: str, exit_code: int, errors: str, repeat: bool) -> int:
    """Print the processes' error lines (each distinct one once) when ``repeat``, or, when no process wrote one (a
    crash: its traceback is above), one line saying which command failed; the exit code to return."""
    messages: list[str] = []
    for file in sorted(Path(errors).iterdir(), key=lambda f: f.stat().st_mtime_ns):
        message = file.read_text(encoding="utf-8", errors="replace").strip()
        if message and message not in messages:
            messages.append(message)
    code = exit_code if exit_code > 0 else 128 - exit_code if exit_code < 0 else 1  # a signal -N: 128 + N
    if not messages:
        print(f"error: {script} failed with exit code {code} (the output above says why)", file=sys.stderr)
    elif repeat:
        for message in messages:
            print(f"error: {message}", file=sys.stderr)
    return code
