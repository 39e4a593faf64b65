"""The exception hierarchy shared by every provider.

Every error carries ``provider``, ``code`` (the provider's own code as a string, or None),
``message``, ``http_status``, ``endpoint`` and ``attempts``. Messages are built by the library
from redacted material only, so ``str()`` and ``repr()`` never contain a secret.

Which class an error has answers the question a caller cares about most: *was anything sent?*

- ``ValidationError``: refused locally, before any request.
- ``AuthenticationError``, ``InsufficientBalance``, ``SenderNotRegistered``, ``InvalidRecipient``,
  ``InvalidRequest``, ``RateLimited``, ``ProviderUnavailable``: the provider answered and refused.
- ``ConnectError``: the request never left; safe to retry.
- ``OutcomeUnknown``: the request left and no usable answer came back; it may have been delivered.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "InsufficientBalance",
    "InvalidRecipient",
    "InvalidRequest",
    "JournalUnavailable",
    "LimiterUnavailable",
    "MalformedResponse",
    "OutcomeUnknown",
    "ProviderUnavailable",
    "RateLimited",
    "SenderNotRegistered",
    "SmsError",
    "TransportError",
    "ValidationError",
]


class SmsError(Exception):
    """Base of every error smsvn raises."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        code: str | None = None,
        http_status: int | None = None,
        endpoint: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code
        self.http_status = http_status
        self.endpoint = endpoint
        self.attempts = attempts

    def __str__(self) -> str:
        where = ".".join(p for p in (self.provider, self.endpoint) if p)
        details = []
        if self.code is not None:
            details.append(f"code {self.code}")
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.attempts > 1:
            details.append(f"{self.attempts} attempts")
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({', '.join(details)})" if details else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, code={self.code!r}, "
            f"message={self.message!r}, http_status={self.http_status!r}, "
            f"endpoint={self.endpoint!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[SmsError], message: str, state: dict[str, object]) -> SmsError:
    err = cls.__new__(cls)
    SmsError.__init__(err, message)
    err.__dict__.update(state)
    return err


class ValidationError(SmsError, ValueError):
    """Refused locally before any request: a bad number, a non-numeric OTP, too many recipients,
    content the provider would refuse, a bad argument. Also a ``ValueError``, which is what it
    is to code that does not know smsvn."""


class AuthenticationError(SmsError):
    """The credentials were refused, or the account is locked, blocked or not allowed the API."""


class InsufficientBalance(SmsError):
    """The account's balance does not cover the send."""


class InvalidRecipient(SmsError):
    """The provider refused the recipient number(s)."""


class SenderNotRegistered(SmsError):
    """The brandname / sender name is not registered (or not on some carrier) for this account."""


class InvalidRequest(SmsError):
    """The provider refused the request's parameters or content."""


class RateLimited(SmsError):
    """The provider's rate limit refused the request; ``retry_after`` is its wait in seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        code: str | None = None,
        http_status: int | None = None,
        endpoint: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            code=code,
            http_status=http_status,
            endpoint=endpoint,
            attempts=attempts,
        )
        self.retry_after = retry_after


class ProviderUnavailable(SmsError):
    """The provider says it failed internally and asks to try again later."""


class TransportError(SmsError):
    """The exchange with the provider failed below the level of its API."""


class ConnectError(TransportError):
    """The request never left this machine (refused, DNS, connect timeout): safe to retry."""


class LimiterUnavailable(ConnectError):
    """A shared limiter's store (Redis) could not be reached with ``on_unavailable="raise"``, or
    the limiter was closed: nothing was sent, and it is safe to retry."""


class JournalUnavailable(SmsError):
    """A campaign journal's database (PostgreSQL) could not be reached, or lost the connection
    in the middle of a write: that write may or may not have been made. A batch whose in-flight
    mark was not confirmed was not sent; the journal says the rest when it is back (run
    again to resume)."""


class OutcomeUnknown(TransportError):
    """The request left, but no usable answer came back: it may have been processed.

    Sends that end this way are never retried automatically (except where the provider
    deduplicates, as eSMS does by ``RequestId``)."""


class MalformedResponse(OutcomeUnknown):
    """The provider answered with a body that could not be understood (garbage, truncated,
    a proxy's error page). Since the request was received, its outcome is unknown."""
