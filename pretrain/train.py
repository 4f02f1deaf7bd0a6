#!/usr/bin/env python
"""Pretrain the fusion model on unlabelled videos (MLM, masked frame modelling, video-text matching).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/pretrain.py
(installed: ``python -m mmcls pretrain --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.pretrain import main

if __name__ == "__main__":
    sys.exit(run_main(main))
