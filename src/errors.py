"""One error type for bad input, so every command can report it the same way.

An :class:`InputError` names the file and, where there is one, the row and the column.
The command-line entry points catch it, print its one-line message and exit with code 2.
"""

from __future__ import annotations

from pathlib import Path

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad user input: a file, a row, a column and what is wrong with them."""

    def __init__(self, message: str, file: str | Path | None = None,
                 row: int | None = None, column: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split())  # always one line
