#!/usr/bin/env python
"""Train K folds in one command: stratified folds, one finetuning run per fold, out-of-fold logits, and the test

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/kfold.py
(installed: ``python -m mmcls kfold --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.kfold import main

if __name__ == "__main__":
    sys.exit(run_main(main))
