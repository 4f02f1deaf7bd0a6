#!/usr/bin/env python
"""Validate a dataset root: annotations, categories, text lengths, and every video of every split.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/check_data.py
(installed: ``python -m mmcls check_data --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.check_data import main

if __name__ == "__main__":
    sys.exit(run_main(main))
