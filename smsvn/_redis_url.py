"""A redis-py client from a URL, for the shared limiter and the OTP store: the one place that
knows redis-py's message for a malformed URL quotes it (a password with an unencoded ``/``
becomes the "port"), so that it never leaves."""

from __future__ import annotations

from typing import Any

from smsvn.errors import ValidationError

__all__ = ["client_from_url"]


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
