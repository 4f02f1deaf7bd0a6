#!/usr/bin/env python
"""Inference engines side by side (code and help: mmcls/commands/benchmark_inference.py).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/benchmark_inference.py
(installed: ``python -m mmcls benchmark_inference --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.benchmark_inference import main

if __name__ == "__main__":
    sys.exit(run_main(main))
