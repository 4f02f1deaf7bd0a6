#!/usr/bin/env python
"""Assign the labelled videos to K stratified folds and write them as an ``id,fold`` CSV.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/make_folds.py
(installed: ``python -m mmcls make_folds --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.make_folds import main

if __name__ == "__main__":
    sys.exit(run_main(main))
