#!/usr/bin/env python
"""Which temporal switches learn direction: the demo pipeline with each model.temporal switch, with and without the
order pretraining task, three seeds (README "Results").

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/time_study.py
(installed: ``python -m mmcls time_study --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.time_study import main

if __name__ == "__main__":
    sys.exit(run_main(main))
