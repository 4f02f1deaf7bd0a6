#!/usr/bin/env python
"""Finetune the multimodal classifier (single process, or any number under `accelerate launch`).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/finetune.py
(installed: ``python -m mmcls finetune --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.finetune import main

if __name__ == "__main__":
    sys.exit(run_main(main))
