#!/usr/bin/env python
"""Predict a split with one model or a weighted ensemble and write the submission CSV.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/predict.py
(installed: ``python -m mmcls predict --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.predict import main

if __name__ == "__main__":
    sys.exit(run_main(main))
