#!/usr/bin/env python
"""Cost of one training step with each trick that adds passes (FGM, PGD, R-Drop, SAM, ...), relative to a plain step.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/benchmark_step.py
(installed: ``python -m mmcls benchmark_step --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.benchmark_step import main

if __name__ == "__main__":
    sys.exit(run_main(main))
