#!/usr/bin/env python
"""Cache frame features: run a frozen vision tower once over every video of a split -> <data.root>/feats/<split>.zip.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/extract_features.py
(installed: ``python -m mmcls extract_features --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.extract_features import main

if __name__ == "__main__":
    sys.exit(run_main(main))
