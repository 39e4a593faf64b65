"""What every provider client shares: lifecycle, recipient parsing and the bulk entry points."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, Self

from smsvn import bulk, phone, text
from smsvn.bulk import BatchSender, BulkOutcome, BulkProgress, BulkReport
from smsvn.errors import SmsError, ValidationError
from smsvn.models import Balance, InvalidNumber, Message, SendResult
from smsvn.transport import Transport

__all__ = ["BaseClient", "Recipients", "checked_content", "split_recipients"]


class Recipients:
    """Numbers of one send, split into the valid (canonical national form, input order, no
    repeats) and the invalid (as written, with the reason). ``given`` maps a valid number to the
    form it was written in; a number written in canonical form may be absent from it (look it
    up with ``given.get(n, n)``)."""

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
    if isinstance(to, list | tuple) and phone._all_canonical(to):
        # The common case (numbers from a database): all canonical already, so nothing to
        # normalise or record as written; only repeats to drop. Same result, 40 % of the time.
        out.valid = list(to) if len(set(to)) == len(to) else list(dict.fromkeys(to))
        return out
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


def checked_content(
    content: str,
    *,
    strip: bool,
    unicode: bool | None,
    provider: str,
    endpoint: str,
    refused_as: str = "",
) -> str:
    """The content as it will be sent (stripped of diacritics when asked), or a
    ValidationError for what no provider takes: an empty content, characters no SMS encoding
    can carry (``refused_as`` names the provider's own code for them), or ``strip_diacritics``
    together with ``unicode=True``."""
    if strip:
        if unicode:
            raise ValidationError(
                "strip_diacritics=True sends plain text; it cannot go with unicode=True",
                provider=provider,
                endpoint=endpoint,
            )
        content = text.strip_diacritics(content)
    if not content:
        raise ValidationError("content is empty", provider=provider, endpoint=endpoint)
    if not text.is_encodable(content):
        raise ValidationError(
            "content has characters no SMS encoding can carry (control characters or lone "
            f"surrogates){refused_as}",
            provider=provider,
            endpoint=endpoint,
        )
    return content


class BaseClient:
    """What every client shares: an async context manager owning one transport, and the bulk
    entry points, which each provider feeds through ``_bulk_sender`` and ``_batch_size``."""

    provider: ClassVar[str]
    _batch_size: ClassVar[int] = 1
    send: Callable[..., Awaitable[SendResult]]
    """Each provider's own ``send(to, content, ...)``; ``send(number, content)`` works on all."""
    balance: Callable[[], Awaitable[Balance]]
    """The account balance."""
    _bulk_sender: Callable[..., BatchSender]
    """Validates a campaign's send options (and content, when it is one) once, up front, and
    returns the function that sends one batch of canonical numbers with them."""

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

    async def send_bulk(
        self,
        recipients: Iterable[str] | AsyncIterable[str],
        content: str,
        *,
        concurrency: int | None = None,
        on_progress: Callable[[BulkProgress], object] | None = None,
        on_result: Callable[[BulkOutcome], object] | None = None,
        keep_results: bool = True,
        dedupe: bool = True,
        **options: Any,
    ) -> BulkReport:
        """Send one ``content`` to every number ``recipients`` yields, streaming, in
        provider-sized batches at the account's rate; ``options`` are those of ``send``.

        Bad options or content raise ``ValidationError`` before any request. See ``smsvn.bulk``
        for how each input is accounted for.
        """
        return await bulk.run(
            recipients,
            provider=self.provider,
            send_batch=self._bulk_sender(content=content, **options),
            content=content,
            batch_size=self._batch_size,
            concurrency=concurrency,
            dedupe=dedupe,
            keep_results=keep_results,
            on_result=on_result,
            on_progress=on_progress,
        )

    async def send_many(
        self,
        messages: Iterable[Message] | AsyncIterable[Message],
        *,
        concurrency: int | None = None,
        on_progress: Callable[[BulkProgress], object] | None = None,
        on_result: Callable[[BulkOutcome], object] | None = None,
        keep_results: bool = True,
        dedupe: bool = False,
        **options: Any,
    ) -> BulkReport:
        """Send personalised ``Message``s (OTPs, reminders), one request each, streaming.

        Duplicates are kept by default (a number may get several different messages).
        """
        return await bulk.run(
            messages,
            provider=self.provider,
            send_batch=self._bulk_sender(content=None, **options),
            content=None,
            batch_size=1,
            concurrency=concurrency,
            dedupe=dedupe,
            keep_results=keep_results,
            on_result=on_result,
            on_progress=on_progress,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _error(self, cls: type[SmsError], message: str, endpoint: str) -> SmsError:
        return cls(message, provider=self.provider, endpoint=endpoint)
