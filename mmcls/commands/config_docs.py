"""Write docs/CONFIG.md, the reference of every config key, from the config dataclasses.

Example:
    python tools/config_docs.py            # rewrite docs/CONFIG.md
    python tools/config_docs.py --check    # exit 1 if docs/CONFIG.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mmcls.config import config_reference_markdown
from mmcls.io import atomic_write_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Only check that the file is current.")
    args = parser.parse_args(argv)
    text = config_reference_markdown()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
        if current != text:
            print(f"{DOC} is out of date: run python tools/config_docs.py", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(DOC, text)
    print(f"wrote {DOC}")
    return 0
