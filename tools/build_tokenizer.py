#!/usr/bin/env python
"""Train a tokenizer on a dataset's text: BERT WordPiece, or SentencePiece unigram with --kind unigram (for the demo
and tests; real runs use the text tower's own).

A thin wrapper, so the command runs from a checkout: the code and its help are in mmcls/commands/build_tokenizer.py
(installed: ``python -m mmcls build_tokenizer --help``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcls.cli import run_main
from mmcls.commands.build_tokenizer import main

if __name__ == "__main__":
    sys.exit(run_main(main))
