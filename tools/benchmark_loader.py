#!/usr/bin/env python
"""Loader throughput: frames/s and videos/s delivered by the DataLoader, per frame source and worker count.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/benchmark_loader.py
(installed: ``python -m mmcls benchmark_loader --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.benchmark_loader import main

if __name__ == "__main__":
    sys.exit(run_main(main))
