#!/usr/bin/env python
"""Score a submission CSV against a truth CSV with the WBDC 2022 mean-F1.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/evaluate.py
(installed: ``python -m mmcls evaluate --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(run_main(main))
