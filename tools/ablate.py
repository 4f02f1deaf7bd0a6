#!/usr/bin/env python
"""Ablation of the competition tricks: the demo config with each trick switched on alone.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/ablate.py
(installed: ``python -m mmcls ablate --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.ablate import main

if __name__ == "__main__":
    sys.exit(run_main(main))
