#!/usr/bin/env python
"""Linear probes of frozen features on the synthetic dataset's hidden concepts: what did pretraining learn?

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/probe_concepts.py
(installed: ``python -m mmcls probe_concepts --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.probe_concepts import main

if __name__ == "__main__":
    sys.exit(run_main(main))
