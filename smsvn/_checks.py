"""Checks of option values shared by every constructor and call: a number in a range, of the
right type, refused with a ``ValidationError`` naming the option (never an ``OverflowError``
or a ``TypeError`` from deeper down)."""

from __future__ import annotations

import os

from smsvn.errors import ValidationError

__all__ = ["MAX_SECONDS", "checked_int", "checked_number", "checked_path", "checked_seconds"]

# One place for "a number in a range, of the right type", so that a timeout, a limiter's period
# and a retry policy's waits refuse the same values the same way. Each compares before it
# converts: ``math.isfinite(10**400)`` raises ``OverflowError``, while ``10**400 > MAX_SECONDS``
# is simply true (and every comparison with NaN false, so NaN fails the range check too).

MAX_SECONDS: float = 366 * 86400.0
"""The longest duration any option takes (a year): past any real use, and far inside what a
float (or a timer, or a store's millisecond times) holds exactly."""


def checked_number(
    value: object,
    name: str,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
    provider: str | None = None,
    endpoint: str | None = None,
) -> float:
    """``value`` as a float if it is an int or a float (never a bool, which is an int to Python
    but never meant as one) between ``low`` and ``high`` (``low_open``/``high_open``: that end
    excluded); else a ``ValidationError`` naming ``name``, which also refuses NaN, infinities and
    ints too large for a float."""
    what = f"a number of {unit}" if unit else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(
            f"{name} must be {what}, not {type(value).__name__}", provider=provider
        )
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        lower = f"{'>' if low_open else '>='} {low:.15g}"
        upper = f"{'<' if high_open else '<='} {high:.15g}"
        raise ValidationError(
            f"{name} must be {what} {lower} and {upper}", provider=provider, endpoint=endpoint
        )
    return float(value)


def checked_seconds(
    value: object,
    name: str,
    provider: str | None = None,
    *,
    zero: bool = False,
    maximum: float = MAX_SECONDS,
) -> float:
    """A positive (with ``zero``, non-negative) number of seconds, at most ``maximum`` (a year by
    default), as a float; else a ``ValidationError`` naming the option. The one check of every
    duration smsvn takes: timeouts, ``max_wait``, ``deadline``, ``RateLimit.period``, a retry
    policy's waits, a Redis timeout."""
    return checked_number(
        value, name, low=0.0, high=maximum, low_open=not zero, unit="seconds", provider=provider
    )


def checked_int(
    value: object,
    name: str,
    *,
    low: int,
    high: int | None = None,
    provider: str | None = None,
    endpoint: str | None = None,
) -> int:
    """``value`` if it is an int (not a bool: ``True`` is not meant as 1) from ``low`` to
    ``high`` (no upper bound when None); else a ``ValidationError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{name} must be an int, not {type(value).__name__}", provider=provider
        )
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValidationError(
            f"{name} must be an int {bounds}", provider=provider, endpoint=endpoint
        )
    return int(value)


def checked_path(value: object, name: str) -> str:
    """A file path given as a str or an ``os.PathLike`` of one, that the OS can take: not an
    int (``open`` would take it as a file descriptor, writing into and closing whatever it
    is), nor a path with a NUL or a character the file system cannot encode (a lone surrogate
    ``surrogateescape`` does not make), which failed deep in ``open`` or ``sqlite3.connect``."""
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str):
        raise ValidationError(
            f"{name} is a file path (str or os.PathLike), not {type(value).__name__}"
        )
    if "\x00" in path:
        raise ValidationError(f"{name} must not contain a NUL character")
    try:
        os.fsencode(path)
    except UnicodeError:
        raise ValidationError(f"{name} has a character the file system cannot encode") from None
    return path
