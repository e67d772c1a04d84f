"""User-facing errors: one line naming the file, the field and what was expected.

The command line turns a :class:`UserError` into that line on stderr and exit code 2;
library callers can catch it like any exception.
"""

from __future__ import annotations

import copy

#: a longer message is cut (a 3000-character site pattern must not become a 3 KB "line")
MAX_LINE = 500


class UserError(Exception):
    """Bad input from the user (file, option, YAML field). Never a bug in acla-nas."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        prefix = ": ".join(parts)
        text = f"{prefix}: {self.message}" if prefix else self.message
        text = " ".join(text.split())  # always one line
        return text if len(text) <= MAX_LINE else text[: MAX_LINE - 5] + " ..."

    def at(self, *, file: str | None = None, field: str | None = None) -> UserError:
        """The same error (same class) with a file and/or an outer field path prepended."""
        new_field = self.field
        if field:
            new_field = f"{field}.{self.field}" if self.field else field
        new = copy.copy(self)
        new.file, new.field = (None if file is None else str(file)) or self.file, new_field
        new.args = (str(new),)
        return new


class ReplicatedError(UserError):
    """A user error found by rank 0 of a process group and raised on every rank; only rank 0
    prints it, so one bad input is one line, not one per process."""
