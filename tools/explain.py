#!/usr/bin/env python
"""Explain one prediction: Grad-CAM heatmaps over a video's frames and the text tokens that weighed most.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/explain.py
(installed: ``python -m mmcls explain --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.explain import main

if __name__ == "__main__":
    sys.exit(run_main(main))
