#!/usr/bin/env python
"""The benchmark suite: measured matmul peak, loader throughput, training speed and model FLOP utilisation (MFU),

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/benchmark.py
(installed: ``python -m mmcls benchmark --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(run_main(main))
