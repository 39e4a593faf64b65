"""What every provider client shares: lifecycle, recipient parsing and the bulk entry points."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import ClassVar, Self

from smsvn import phone
from smsvn.errors import SmsError, ValidationError
from smsvn.models import InvalidNumber
from smsvn.transport import Transport

__all__ = ["BaseClient", "Recipients", "split_recipients"]


class Recipients:
    """Numbers of one send, split into the valid (canonical national form, input order, no
    repeats) and the invalid (as written, with the reason)."""

    __slots__ = ("given", "invalid", "valid")

    def __init__(self) -> None:
        self.valid: list[str] = []
        self.given: dict[str, str] = {}
        self.invalid: list[InvalidNumber] = []


def split_recipients(to: str | Iterable[str], provider: str) -> Recipients:
    """Normalise ``to`` (one number or several) and set aside what cannot be a VN mobile number."""
    if isinstance(to, str):
        to = (to,)
    out = Recipients()
    given = out.given
    for number in to:
        try:
            canonical = phone.normalize(number)
        except ValidationError as exc:
            out.invalid.append(InvalidNumber(str(number), exc.message))
            continue
        if canonical not in given:
            given[canonical] = number
            out.valid.append(canonical)
    return out


def require_recipients(recipients: Recipients, provider: str, endpoint: str) -> None:
    """Refuse a send whose numbers were all invalid, before any request."""
    if not recipients.valid:
        reasons = "; ".join(f"{n!s}: {n.reason}" for n in recipients.invalid[:3]) or "none given"
        raise ValidationError(
            f"no valid recipient ({reasons})", provider=provider, endpoint=endpoint
        )


class BaseClient:
    """Lifecycle shared by every client: an async context manager owning one transport."""

    provider: ClassVar[str]

    def __init__(self, transport: Transport, base_url: str) -> None:
        self._transport = transport
        self.base_url = base_url.rstrip("/")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection pool (unless the session was borrowed); safe to call twice."""
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _error(self, cls: type[SmsError], message: str, endpoint: str) -> SmsError:
        return cls(message, provider=self.provider, endpoint=endpoint)
