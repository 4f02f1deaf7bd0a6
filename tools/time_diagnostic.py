#!/usr/bin/env python
"""Does the model use time? Its predictions with the frames reversed, shuffled, cut to one frame, flipped.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/time_diagnostic.py
(installed: ``python -m mmcls time_diagnostic --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.time_diagnostic import main

if __name__ == "__main__":
    sys.exit(run_main(main))
