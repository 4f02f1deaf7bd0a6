#!/usr/bin/env python
"""Write the built-in synthetic short-video dataset (WBDC layout) for demos, tests and benchmarks.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/make_synthetic.py
(installed: ``python -m mmcls make_synthetic --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.make_synthetic import main

if __name__ == "__main__":
    sys.exit(run_main(main))
