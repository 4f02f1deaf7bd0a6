#!/usr/bin/env python
"""Check a model against a speed budget (code and help: mmcls/commands/speed_check.py).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/speed_check.py
(installed: ``python -m mmcls speed_check --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.speed_check import main

if __name__ == "__main__":
    sys.exit(run_main(main))
