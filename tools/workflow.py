#!/usr/bin/env python
"""A whole competition on the synthetic dataset, with the test mean-F1 of every stage (docs/WORKFLOW.md).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/workflow.py
(installed: ``python -m mmcls workflow --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.workflow import main

if __name__ == "__main__":
    sys.exit(run_main(main))
