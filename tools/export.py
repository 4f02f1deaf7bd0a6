#!/usr/bin/env python
"""Export a trained model folder as one ONNX graph (code and help: mmcls/commands/export.py).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/export.py
(installed: ``python -m mmcls export --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.export import main

if __name__ == "__main__":
    sys.exit(run_main(main))
