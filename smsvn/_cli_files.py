"""The command line's output files and text: CSV cells a spreadsheet will not run, text a
terminal will not obey, and no output file that is the journal itself."""

from __future__ import annotations

import os
import re
from typing import Final

from smsvn.journal._dsn import is_keyword_dsn

__all__ = ["UsageError", "cell", "check_not_journal", "printable"]


class UsageError(Exception):
    """A command-line mistake: reported on stderr with exit code 2, nothing sent."""


_CONTROL: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on (escape sequences, bell, carriage return) or that reorder
text (bidirectional controls); tab and newline are kept."""
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads a cell starting with as a formula (OWASP's list)."""


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``), for the
    terminal: a provider's message or a file's row may hold escape sequences."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string starting with a formula
    character gets a leading ``'``, and control characters are escaped. Numbers pass."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _journal_file(journal: str) -> str | None:
    """The SQLite file a ``--journal`` names, or None (PostgreSQL)."""
    if is_keyword_dsn(journal):
        return None
    if "://" in journal:
        scheme, _, rest = journal.partition("://")
        return rest[1:] if scheme.lower() == "sqlite" and rest.startswith("/") else None
    return journal


def check_not_journal(path: str, journal: str, flag: str) -> None:
    """Refuse an output file that is the journal (or its WAL or shared-memory file): writing
    it would destroy every campaign's record, and the advertising refusals with it."""
    file = _journal_file(journal)
    if file is None or path == "-" or not os.path.exists(path):
        return
    for candidate in (file, f"{file}-wal", f"{file}-shm", f"{file}-journal"):
        try:
            same = os.path.samefile(path, candidate)
        except OSError:
            continue
        if same:
            raise UsageError(
                f"{flag} {path} is the journal's file ({os.path.basename(candidate)}); writing "
                f"there would destroy it: give another {flag} file"
            )
