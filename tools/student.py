#!/usr/bin/env python
"""Teacher to student under a speed budget (code and help: mmcls/commands/student.py).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/student.py
(installed: ``python -m mmcls student --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.student import main

if __name__ == "__main__":
    sys.exit(run_main(main))
