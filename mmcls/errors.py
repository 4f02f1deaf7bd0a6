"""User-facing errors.

Anything a user can cause (a bad config key, a malformed annotation file, a missing file) raises a subclass of
:class:`UserError`. Entry points catch it and print its message as one line with a non-zero exit
(see :func:`mmcls.cli.run_main`), instead of a traceback from deep inside a library.
"""

from __future__ import annotations


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
