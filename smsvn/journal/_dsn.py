"""Passwords in a journal's URL: found and masked by one function, whatever form they take.

A journal URL reaches reprs, logs, error messages and task queues' brokers, so its password must
be masked everywhere (``redact_url``) and refused where it would travel (a task: ``smsvn.workers``
uses ``has_password``). A password may sit in the userinfo (``postgresql://u:pw@h/db``), in the
query (``?password=``, ``?sslpassword=``, in any case, percent-encoded or not), or in a libpq
key=value string (``host=h password=pw``, quoted values too). A password with an unencoded
``/``, ``?`` or ``#`` (``postgresql://u:a/b@h/db``) fools ``urllib.parse``, so none is used: the
userinfo is everything between ``://`` and the *last* ``@``. When in doubt, more is masked (a
masked URL is only ever shown, never used).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote_plus

__all__ = ["has_password", "is_keyword_dsn", "redact_url"]

_MASK: Final = "***"
_KEYWORD_DSN: Final = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
# libpq key=value: the key, "=", then a quoted value (backslash escapes) or a bare one. A bare
# value after "=" and spaces runs to the next space, as libpq reads it.
_KEYWORD_PASSWORD: Final = re.compile(
    r"(?P<key>[A-Za-z0-9_]*password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE
)
_QUERY_SPLIT: Final = re.compile(r"([?&#;])")


def _secret_key(key: str) -> bool:
    """Whether a query field named ``key`` holds a password (``password``, ``sslpassword``, in
    any case, percent-encoded or not)."""
    return "password" in unquote_plus(key).strip().lower()


def _redact(url: str) -> tuple[str, bool]:
    """``url`` with every password masked, and whether there was one."""
    if "://" not in url:
        found = False

        def mask(match: re.Match[str]) -> str:
            nonlocal found
            if match["value"] in ("''", "'"):
                return match[0]
            found = True
            return f"{match['key']}{_MASK}"

        return _KEYWORD_PASSWORD.sub(mask, url), found
    scheme, rest = url.split("://", 1)
    found = False
    at = rest.rfind("@")
    if at >= 0:
        userinfo, tail = rest[:at], rest[at:]
        colon = userinfo.find(":")
        if colon < 0:
            colon = userinfo.lower().find("%3a")  # "u%3Apw": a user name that hides one
            width = 3
        else:
            width = 1
        if colon >= 0 and colon + width < len(userinfo):
            userinfo = userinfo[: colon + width] + _MASK
            found = True
        rest = userinfo + tail
    pieces = _QUERY_SPLIT.split(rest)
    for i, piece in enumerate(pieces):
        key, equals, value = piece.partition("=")
        if equals and value and _secret_key(key):
            pieces[i] = f"{key}={_MASK}"
            found = True
    return f"{scheme}://{''.join(pieces)}", found


def redact_url(url: str) -> str:
    """``url`` without its passwords (for reprs, logs and error messages)."""
    return _redact(url)[0]


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password in any form ``redact_url`` masks."""
    return _redact(url)[1]


def is_keyword_dsn(url: str) -> bool:
    """Whether ``url`` is a libpq key=value string (``host=h dbname=db``) rather than a URL or a
    path."""
    return "://" not in url and _KEYWORD_DSN.match(url) is not None
