#!/usr/bin/env python
"""Write docs/CONFIG.md, the reference of every config key, from the config dataclasses.

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/config_docs.py
(installed: ``python -m mmcls config_docs --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.config_docs import main

if __name__ == "__main__":
    sys.exit(run_main(main))
