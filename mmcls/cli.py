"""Helpers shared by the entry points: one-line errors and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from mmcls.errors import UserError

EXIT_USER_ERROR = 2


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; turn a :class:`UserError` into one line on stderr and exit code 2."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
