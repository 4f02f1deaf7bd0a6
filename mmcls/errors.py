"""User-facing errors.

Anything a user can cause (a bad config key, a malformed annotation file, a missing file) raises a subclass of
:class:`UserError`. Entry points catch it and print its message as one line with a non-zero exit
(see :func:`mmcls.cli.run_main`), instead of a traceback from deep inside a library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): a library error in the
    one line an entry point prints."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UserError(Exception):
    """An error caused by user input; its message is meant to be shown as-is."""


class ConfigError(UserError):
    """Unknown config key, wrong type, or invalid value."""


class DataError(UserError):
    """Bad annotation, category or submission data; names the file, the record and the field."""

    def __init__(self, message: str, *, path: str | None = None, record: str | int | None = None,
                 field: str | None = None) -> None:
        self.path, self.record, self.field = path, record, field
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(f"record {record}" if isinstance(record, int) else str(record))
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


_MENTION = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class ArgumentError(UserError):
    """A bad value of a library function's argument, named by the parameter, not by a command-line flag.

    ``argument`` is the parameter's name (``offsets``), or None for a message about several; the message may name
    other parameters as ``{name}``. ``str()`` names them as they are (``offsets: must be >= 1, got 0``); a command
    shows :meth:`for_flags` instead, with its own flags (``--tta-offsets: must be >= 1, got 0``; see
    :func:`mmcls.cli.run_main` and :func:`mmcls.cli.flags`).
    """

    def __init__(self, argument: str | None, message: str) -> None:
        self.argument, self.message = argument, message
        super().__init__(self.for_flags(None))

    def for_flags(self, flags: Mapping[str, str] | None) -> str:
        """The message with every parameter shown as ``flags[name]`` (flags None: the parameter names)."""

        def shown(name: str) -> str:
            if flags is None:
                return name
            return flags.get(name, "--" + name.replace("_", "-"))

        text = _MENTION.sub(lambda match: shown(match.group(1)), self.message)
        return f"{shown(self.argument)}: {text}" if self.argument else text
