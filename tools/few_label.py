#!/usr/bin/env python
"""Does pretraining help? Finetune on a few labels from scratch and from a pretrained model, several seeds each.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/few_label.py
(installed: ``python -m mmcls few_label --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.few_label import main

if __name__ == "__main__":
    sys.exit(run_main(main))
