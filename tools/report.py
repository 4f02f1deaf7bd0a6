#!/usr/bin/env python
"""Render a finetuning run into one HTML page: best scores, plots, per-class F1, metrics and config.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/report.py
(installed: ``python -m mmcls report --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.report import main

if __name__ == "__main__":
    sys.exit(run_main(main))
