"""A redis-py client from a URL or a client, for the shared limiter and the OTP store: the one
place that knows redis-py's message for a malformed URL quotes it (a password with an unencoded
``/`` becomes the "port"), so that it never leaves; and the checks both make of their
``url_or_client``, ``timeout`` and ``prefix`` options."""

from __future__ import annotations

from typing import Any

from smsvn import text
from smsvn._checks import checked_seconds
from smsvn.errors import ValidationError

__all__ = ["checked_prefix", "client_from_url", "redis_client"]


def redis_client(url_or_client: object, *, timeout: object, what: str) -> tuple[Any, bool]:
    """The client a store or limiter talks to, and whether it made (so owns) it: its own from a
    ``redis://`` URL, or the caller's ``redis.asyncio.Redis`` (anything with ``evalsha`` and
    ``eval``, the calls both make). ``timeout`` (seconds a connect or an answer may take, for a
    client made here) is checked either way. Anything else, None or an int, is a
    ``ValidationError`` naming ``what`` ("the limiter's"), not an ``AttributeError`` at the first
    use."""
    seconds = checked_seconds(timeout, "timeout")
    if isinstance(url_or_client, str):
        return client_from_url(url_or_client, timeout=seconds, what=what), True
    if not all(callable(getattr(url_or_client, call, None)) for call in ("evalsha", "eval")):
        raise ValidationError(
            f"{what} Redis must be a redis:// URL or a redis.asyncio.Redis client, "
            f"not {type(url_or_client).__name__}"
        )
    return url_or_client, False


def checked_prefix(prefix: object) -> str:
    """A key prefix: a non-empty ``str`` without braces (they would move keys out of their
    Redis Cluster slot) or spaces, that encodes as UTF-8 (a lone surrogate failed every call
    with ``UnicodeEncodeError``)."""
    if (
        not isinstance(prefix, str)
        or not prefix
        or any(c in prefix for c in "{} ")
        or not text.is_encodable(prefix)
    ):
        raise ValidationError(
            "prefix must be a non-empty str, without braces, spaces, control characters or lone "
            "surrogates"
        )
    return prefix


def client_from_url(url: str, *, timeout: float, what: str) -> Any:
    """``redis.asyncio.Redis.from_url(url)`` with ``timeout`` on connecting and on every call,
    and one immediate retry (it replaces a pooled connection the server closed, say after a
    restart; backing off is the caller's business). A malformed URL is a ``ValidationError``
    naming ``what`` ("the limiter's"), with no piece of the URL in it or in its chain."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    malformed = False
    try:
        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 1)
        )
    except (ValueError, TypeError):
        malformed = True
    if malformed:
        # Raised here, outside the except block: neither the message nor __context__ carries
        # redis-py's, which quotes the URL.
        raise ValidationError(
            f"{what} Redis URL is malformed (redis://[:password@]host[:port]/db; "
            "percent-encode /, ?, # and @ in a password)"
        ) from None
    return client
