#!/usr/bin/env python
"""Average the weights of trained models of one architecture (e.g. the folds or seeds of a run) into one model.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/average_checkpoints.py
(installed: ``python -m mmcls average_checkpoints --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.average_checkpoints import main

if __name__ == "__main__":
    sys.exit(run_main(main))
