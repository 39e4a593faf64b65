"""Readers shared by the providers' webhook parsers: ids, phone numbers, counts and amounts.

A callback is attacker-reachable input (anyone who learns the URL can send one), so every reader
here is strict and bounded, and every failure is a :class:`~smsvn.errors.ValidationError` that
names the provider and the ``webhook`` endpoint, never a bare ``KeyError`` or ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from smsvn import phone as _phone
from smsvn.errors import ValidationError
from smsvn.providers._wire import finite_number, is_count

__all__ = [
    "MAX_ID",
    "MAX_REASON",
    "amount",
    "clip",
    "count",
    "get",
    "identifier",
    "invalid",
    "phone",
]

MAX_ID: Final = 256
"""The longest id (tranId, SMSID, ReferenceId) a callback may carry."""
MAX_REASON: Final = 200
"""The most characters of attacker-controlled text an error message quotes."""


def invalid(provider: str, reason: str) -> ValidationError:
    """The ValidationError of a malformed callback from ``provider``."""
    return ValidationError(reason, provider=provider, endpoint="webhook")


def clip(text: str) -> str:
    """Bound attacker-controlled text that goes into an error message."""
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


def identifier(provider: str, field: str, value: str) -> str:
    """Check an opaque id: non-empty, bounded and printable (no NUL, control character or lone
    surrogate, which a journal cannot store and a handler would fail on, answering 500 to a
    report the provider then retries for ever), surrounding whitespace dropped (eSMS has been
    seen to pad SMSIDs). Never parsed: an id is compared as written."""
    text = value.strip()
    if not text:
        raise invalid(provider, f"{field} is empty")
    if len(text) > MAX_ID:
        raise invalid(provider, f"{field} is longer than {MAX_ID} characters")
    if not text.isprintable():
        raise invalid(provider, f"{field} holds a control character")
    return text


def phone(provider: str, number: str) -> str:
    """Normalise a callback's phone number, naming the provider on failure."""
    try:
        return _phone.normalize(number)
    except ValidationError as exc:
        raise invalid(provider, f"bad phone number: {clip(exc.message)}") from None


def get(provider: str, query: Mapping[str, str], names: Iterable[str]) -> str | None:
    """The first of ``names`` present in ``query``, or None; a key's spelling varies between a
    provider's callbacks (``ReferenceId``, ``referenceid``), so each field lists its spellings."""
    for name in names:
        value = query.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise invalid(provider, f"{name} is not a string")
            return value
    return None


def count(provider: str, text: str, field: str) -> int:
    """A non-negative integer (a count or a numeric status) written in ASCII digits."""
    text = text.strip()
    if not is_count(text):
        raise invalid(provider, f"{field} is not a non-negative integer")
    return int(text)


def amount(provider: str, text: str | None, field: str) -> float | None:
    """An optional non-negative finite number (a price, a duration); empty means absent."""
    if text is None or not text.strip():
        return None
    value = finite_number(text)
    if value is None or value < 0:
        raise invalid(provider, f"{field} is not a non-negative finite number")
    return value
