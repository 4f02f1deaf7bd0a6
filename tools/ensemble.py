#!/usr/bin/env python
"""Ensemble saved logits: search the model weights (and optionally a per-class bias) on out-of-fold predictions to

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/ensemble.py
(installed: ``python -m mmcls ensemble --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.ensemble import main

if __name__ == "__main__":
    sys.exit(run_main(main))
