"""Small readers shared by the providers' wire parsers (answers and webhooks)."""

from __future__ import annotations

import math
from typing import Final

import msgspec

__all__ = ["DECODE_ERRORS", "MAX_DIGITS", "finite_number", "is_count", "opt_str", "why"]

MAX_DIGITS: Final = 18
"""The most digits a count read from the wire may have: no real count is longer, and Python's
``int()`` refuses strings of over 4,300 digits with a ``ValueError``."""


def is_count(text: str) -> bool:
    """Whether ``text`` is a non-negative integer in ASCII digits, at most ``MAX_DIGITS`` long.

    ``str.isdigit()`` alone also takes ``"²"`` and Arabic-Indic digits, which ``int()`` refuses
    or reads differently; this is the one check every parser uses before ``int()``.
    """
    return 0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()


_MAX_NUMBER: Final = 32


def finite_number(text: str) -> float | None:
    """``text`` as a finite number written in ASCII (a price, a balance), or None.

    ``float()`` alone also reads ``"NaN"``, ``"inf"``, ``"1e999"`` (inf) and full-width or
    Arabic-Indic digits: no provider means any of them as an amount."""
    stripped = text.strip()
    if not stripped or len(stripped) > _MAX_NUMBER or not stripped.isascii():
        return None
    try:
        value = float(stripped)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def opt_str(value: str | int | None) -> str | None:
    """A string or number field as a trimmed string; empty as None."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
"""What decoding a body may raise: msgspec skips a member it does not know by recursing, so a
few thousand nested brackets in one give a ``RecursionError``."""


def why(exc: Exception) -> str:
    """msgspec's first line: it names the JSON path, never the body's content."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split("\n", 1)[0][:120]
