#!/usr/bin/env python
"""Pseudo-label unlabelled videos: keep the confident predictions of a model or ensemble and write them as an

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/pseudo_label.py
(installed: ``python -m mmcls pseudo_label --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.pseudo_label import main

if __name__ == "__main__":
    sys.exit(run_main(main))
