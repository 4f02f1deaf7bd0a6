#!/usr/bin/env python
"""Run `accelerate launch` so that a failing command ends with its own one-line error, not the launcher's traceback.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/launch.py
(installed: ``python -m mmcls launch --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.launch import main

if __name__ == "__main__":
    sys.exit(run_main(main))
