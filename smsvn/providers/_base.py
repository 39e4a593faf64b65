"""What every provider client shares: its options and transport, lifecycle, recipient parsing
and the bulk entry points. A provider declares its credentials, URLs and wire format; this base
builds the transport from the options every client takes alike (``ClientOptions``)."""

from __future__ import annotations

import abc
import inspect
import os
import urllib.parse
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Self, TypedDict

import aiohttp

from smsvn import bulk, phone, text
from smsvn._checks import checked_int, checked_seconds
from smsvn.bulk import BatchSender, BulkOutcome, BulkProgress, BulkReport
from smsvn.errors import ValidationError
from smsvn.limits import LimiterBackend, RateLimit
from smsvn.models import Balance, InvalidNumber, Message, SendResult
from smsvn.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    Hooks,
    Response,
    RetryPolicy,
    Transport,
    retry_after_seconds,
)

__all__ = [
    "BaseClient",
    "ClientOptions",
    "Credential",
    "Recipients",
    "checked_content",
    "checked_credential",
    "checked_seconds",
    "checked_text",
    "checked_url",
    "recipient_list",
    "split_recipients",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """One credential the client takes positionally, in order: ``SpeedSMS(token)``."""

    name: str
    """The constructor's argument name (``"token"``, ``"api_key"``): also the CLI flag."""
    env: str
    """The environment variable the CLI and ``from_env`` read it from."""
    help: str
    """What it is, in a few words, for ``--help``."""


class ClientOptions(TypedDict, total=False):
    """The keyword options every client takes, with the same meaning on every provider."""

    session: aiohttp.ClientSession | None
    """A session to borrow (never closed by the client); by default the client owns one."""
    timeout: float
    """Seconds one attempt may take, from queueing for a connection to the last body byte."""
    connect_timeout: float
    """Seconds to get a connection; past it nothing was sent (``ConnectError``)."""
    max_connections: int
    """Connections in the client's own pool."""
    rate_limit: RateLimit | None
    """The account's limit; the provider's documented (or a conservative) one by default,
    ``None`` for none (a simulator, a benchmark)."""
    retry: RetryPolicy | None
    """When and how long to wait before trying a call again."""
    hooks: Hooks | None
    """Per-attempt callbacks for metrics and tracing."""
    limiter: LimiterBackend | None
    """Where the account's limit is counted: this process (the default) or shared by every
    process, such as ``smsvn.RedisLimiter``. The limit itself is still ``rate_limit``."""
    max_wait: float | None
    """The longest one call may wait for the account's turn; past it ``RateLimited`` is raised
    at once, before anything is sent. None (the default): as long as the turn takes."""
    deadline: float | None
    """A bound on a whole call, attempts and backoff included. None (the default): none."""


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


def recipient_list(to: object, provider: str, endpoint: str) -> Sequence[str]:
    """``to`` as a sequence of what was given: one number (a ``str``) or a list or tuple of them;
    anything else (None, an int, bytes, a dict) is a ``ValidationError``, not a ``TypeError``."""
    if isinstance(to, str):
        return (to,)
    if isinstance(to, list | tuple):
        return to
    raise ValidationError(
        f"to must be a phone number (str) or a list or tuple of them, not {type(to).__name__}",
        provider=provider,
        endpoint=endpoint,
    )


def split_recipients(to: str | Iterable[str]) -> Recipients:
    """Normalise ``to`` (one number or several) and set aside what cannot be a VN mobile number."""
    out = Recipients()
    if isinstance(to, str):
        # One number (an OTP): what the loop below does for a 1-tuple, without the loop.
        try:
            canonical = phone.normalize(to)
        except ValidationError as exc:
            out.invalid.append(InvalidNumber(str(to), exc.message))
            return out
        out.valid.append(canonical)
        if canonical is not to:  # written otherwise (a canonical ``str`` comes back as is)
            out.given[canonical] = to
        return out
    if isinstance(to, list | tuple):
        if phone._all_canonical(to):
            # The common case (numbers from a database): all canonical already, so nothing to
            # normalise or record as written; only repeats to drop. Same result, 40 % of the
            # time.
            out.valid = list(to) if len(set(to)) == len(to) else list(dict.fromkeys(to))
            return out
    elif not isinstance(to, Iterable) or isinstance(to, bytes | bytearray | Mapping):
        raise ValidationError(
            f"to must be a phone number or a sequence of them, not {type(to).__name__}"
        )
    given = out.given
    for number in to:
        try:
            if not isinstance(number, str):
                raise ValidationError(f"not a phone number string: {type(number).__name__}")
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
    together with ``unicode=True``. A ``str`` subclass is taken as the plain ``str`` it holds
    (see ``checked_text``)."""
    if content.__class__ is not str:
        content = checked_text(content, "content", provider, endpoint)
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


def not_plain(
    content: str, mode: str, advice: str, provider: str, endpoint: str
) -> ValidationError:
    """The error of a content asked to go as plain text (GSM-7: ``mode`` says how it was
    asked) that holds characters only Unicode carries, named (at most ten): sent anyway, it
    would go as UCS-2 at two or three times the segments."""
    bad = sorted({c for c in content if text.needs_unicode(c)})
    shown = ", ".join(repr(c) for c in bad[:10]) + (", ..." if len(bad) > 10 else "")
    return ValidationError(
        f"{mode} sends plain text, which cannot carry {shown}; {advice}",
        provider=provider,
        endpoint=endpoint,
    )


class BaseClient(abc.ABC):
    """What every client shares: an async context manager owning one transport, and the bulk
    entry points, which each provider feeds through ``batch_sender`` and ``batch_size``."""

    provider: ClassVar[str]
    """The registry name of the provider (``"speedsms"``)."""
    batch_size: ClassVar[int] = 1
    """Numbers one request may carry (SpeedSMS: 100; eSMS and Fibo: one)."""
    default_rate_limit: ClassVar[RateLimit | None] = None
    """The limit a client gets when it is given no ``rate_limit``."""
    credentials: ClassVar[tuple[Credential, ...]] = ()
    """What the constructor takes positionally, in order, each with the environment variable
    ``from_env`` reads it from. The provider's registry entry uses the same tuple (the CLI reads
    the same variables), so the client is its own description: no registry lookup needed."""
    price: ClassVar[float | None] = None
    """The usual price of one SMS segment, in ``unit``: the CLI's estimate before a send and a
    bulk report's ``estimated_cost`` where the provider reports no price (None: no estimate)."""
    unit: ClassVar[str | None] = None
    """``"VND"``, or ``"messages"`` where the account counts messages (Fibo)."""
    sender_option: ClassVar[str | None] = None
    """The keyword option naming the sender (``"sender"``, ``"brandname"``), if there is one."""
    env_options: ClassVar[tuple[tuple[str, type[str] | type[int]], ...]] = (("base_url", str),)
    """Keyword options ``from_env`` reads besides the credentials and the sender, as (name,
    ``str`` or ``int``), each from ``SMSVN_<PROVIDER>_<NAME>`` (``SMSVN_SPEEDSMS_BASE_URL``)."""

    def __init__(
        self,
        *,
        base_url: str,
        account: str,
        secrets: Iterable[str],
        options: ClientOptions,
        headers: Mapping[str, str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        """Check the common ``options`` and build the transport. ``account`` names the account
        for its limiter (only its digest is kept); ``secrets`` are redacted everywhere."""
        unknown = sorted(set(options) - _CLIENT_OPTIONS)
        if unknown:
            # A misspelt option (``rate_limits=``) would otherwise be dropped in silence, and the
            # client send at the default limit with no bound on its wait.
            raise _UnknownOption(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"{self.provider} clients take {', '.join(sorted(_CLIENT_OPTIONS))} and their "
                "own keywords",
                provider=self.provider,
            )
        timeout = checked_seconds(options.get("timeout", DEFAULT_TIMEOUT), "timeout", self.provider)
        connect_timeout = checked_seconds(
            options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            "connect_timeout",
            self.provider,
        )
        max_connections = checked_int(
            options.get("max_connections", DEFAULT_MAX_CONNECTIONS),
            "max_connections",
            low=1,
            provider=self.provider,
        )
        max_wait = options.get("max_wait")
        if max_wait is not None:
            max_wait = checked_seconds(max_wait, "max_wait", self.provider, zero=True)
        deadline = options.get("deadline")
        if deadline is not None:
            deadline = checked_seconds(deadline, "deadline", self.provider)
        limiter = options.get("limiter")
        if limiter is not None and not callable(getattr(limiter, "for_account", None)):
            raise ValidationError(
                "limiter must be a limiter backend such as smsvn.RedisLimiter",
                provider=self.provider,
            )
        rate_limit = options.get("rate_limit", self.default_rate_limit)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise ValidationError(
                "rate_limit must be a smsvn.RateLimit or None", provider=self.provider
            )
        self.base_url = checked_url(base_url, "base_url", self.provider)
        self._transport = Transport(
            provider=self.provider,
            session=options.get("session"),
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            retry=options.get("retry"),
            rate_limit=rate_limit,
            account=account,
            secrets=secrets,
            hooks=options.get("hooks"),
            headers=headers,
            max_body=max_body,
            retry_after=self._retry_after,
            limiter=limiter,
            max_wait=max_wait,
            deadline=deadline,
        )

    @classmethod
    def count_segments(cls, content: str, *, strip_diacritics: bool = False) -> text.Segments:
        """How ``send`` will send ``content`` by default (no ``unicode`` option): its encoding
        and segments, the plain form when ``strip_diacritics``. The CLI's estimate before a
        send asks this. Here: GSM-7 when it can carry the content, else UCS-2; a client whose
        provider decides otherwise overrides it."""
        return text.segments(text.strip_diacritics(content) if strip_diacritics else content)

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """A client configured from ``SMSVN_*`` environment variables (``environ``, by default
        ``os.environ``), the ones the CLI reads: the credentials (``SMSVN_SPEEDSMS_TOKEN``, ...),
        and, when set, ``SMSVN_<PROVIDER>_BASE_URL``, the sender (``SMSVN_SPEEDSMS_SENDER``,
        ``SMSVN_ESMS_BRANDNAME``, ``SMSVN_FIBO_SENDER``) and the provider's other
        ``env_options`` (``SMSVN_<PROVIDER>_SMS_TYPE``, ``SMSVN_ESMS_VOICE_BASE_URL``).

        ``options`` are the constructor's keyword options (``max_wait=5.0``, ``hooks=...``) and
        win over the environment, a credential included (``token=...``). Values are stripped
        of surrounding whitespace (a secret file's newline); a variable set to nothing is
        unset. A missing credential, or a value that cannot be read, is a ``ValidationError``
        naming the variable, never its value.
        """
        env: Mapping[str, str] = os.environ if environ is None else environ
        provider = cls.provider
        prefix = f"SMSVN_{provider.upper()}_"
        arguments: list[object] = []
        missing: list[Credential] = []
        for credential in cls.credentials:
            if credential.name in options:
                arguments.append(options.pop(credential.name))
                continue
            value = _env_value(env, credential.env)
            if value is None:
                missing.append(credential)
            else:
                arguments.append(value)
        if missing:
            names = " and ".join(c.env for c in missing)
            what = "; ".join(c.help for c in missing)
            raise ValidationError(
                f"{names} {'is' if len(missing) == 1 else 'are'} not set ({what})",
                provider=provider,
            )
        wanted: dict[str, type[str] | type[int]] = dict(cls.env_options)
        if cls.sender_option is not None:
            wanted[cls.sender_option] = str
        for name, kind in wanted.items():
            variable = prefix + name.upper()
            value = _env_value(env, variable)
            if name in options or value is None:
                continue
            if kind is int:
                try:
                    options[name] = int(value)
                except ValueError:
                    raise ValidationError(
                        f"{variable} must be a whole number", provider=provider
                    ) from None
            elif name.endswith("_url") and not value.startswith(("http://", "https://")):
                raise ValidationError(
                    f"{variable} must be an http:// or https:// URL", provider=provider
                )
            else:
                options[name] = value
        build: Callable[..., Self] = cls
        return build(*arguments, **options)

    @abc.abstractmethod
    async def send(self, to: str | Sequence[str], content: str) -> SendResult:
        """Send ``content`` to ``to`` with the client's sending defaults; ``send(number,
        content)`` works alike on every provider (each adds its own keyword options)."""

    @abc.abstractmethod
    async def balance(self) -> Balance:
        """The account balance."""

    @abc.abstractmethod
    def batch_sender(self, *, content: str | None) -> BatchSender:
        """Check a campaign's send options (each provider adds its own keywords) and ``content``
        (when it is shared) once, up front; return the function that sends one batch of
        canonical numbers with them. The bulk engine and ``Failover`` send through it."""

    def sender_for(self, options: Mapping[str, Any]) -> str | None:
        """The sender (brandname) a send with these keyword ``options`` goes out under, or None
        when it goes out under none (the advertising guard checks it: Decree 91 Art. 13(8))."""
        option = type(self).sender_option
        if option is None:
            return None
        given = options.get(option)
        sender = given if given is not None else getattr(self, option, None)
        return sender if isinstance(sender, str) and sender else None

    def _retry_after(self, response: Response) -> float | None:
        """The provider's wait hint on a 429, in seconds (``Retry-After`` unless overridden)."""
        return retry_after_seconds(response.headers.get("Retry-After"))

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
        self.check_send_options(options)
        return await bulk.run(
            recipients,
            provider=self.provider,
            send_batch=self.batch_sender(content=content, **options),
            content=content,
            batch_size=self.batch_size,
            concurrency=concurrency,
            dedupe=dedupe,
            keep_results=keep_results,
            on_result=on_result,
            on_progress=on_progress,
            price=self.price,
            unit=self.unit,
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
        self.check_send_options(options)
        return await bulk.run(
            messages,
            provider=self.provider,
            send_batch=self.batch_sender(content=None, **options),
            content=None,
            batch_size=1,
            concurrency=concurrency,
            dedupe=dedupe,
            keep_results=keep_results,
            on_result=on_result,
            on_progress=on_progress,
            price=self.price,
            unit=self.unit,
        )

    def check_send_options(self, options: Mapping[str, Any]) -> None:
        """Refuse a bulk send's or a campaign's option this client's ``batch_sender`` does not
        take, naming it (a ``TypeError`` about ``batch_sender()`` told the caller nothing they
        had called), before anything is sent."""
        known = _batch_options(type(self))
        unknown = sorted(set(options) - known) if known is not None else ()
        if unknown:
            raise _UnknownOption(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"{self.provider} takes {', '.join(sorted(known or ())) or 'none'}",
                provider=self.provider,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


_CLIENT_OPTIONS: Final = ClientOptions.__optional_keys__ | ClientOptions.__required_keys__


class _UnknownOption(ValidationError, TypeError):
    """A keyword option the call does not take: a ``ValidationError`` like every bad argument,
    and a ``TypeError`` too, which is what Python raises for an unexpected keyword (and what
    code written before this check catches)."""


_BATCH_OPTIONS: dict[type[BaseClient], frozenset[str] | None] = {}


def _batch_options(cls: type[BaseClient]) -> frozenset[str] | None:
    """The keyword options ``cls.batch_sender`` takes besides ``content`` (read once per class),
    or None when it takes any (``**options``)."""
    if cls in _BATCH_OPTIONS:
        return _BATCH_OPTIONS[cls]
    parameters = inspect.signature(cls.batch_sender).parameters.values()
    known: frozenset[str] | None = frozenset(
        p.name
        for p in parameters
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "content")
    )
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        known = None
    _BATCH_OPTIONS[cls] = known
    return known


def _env_value(environ: Mapping[str, str], variable: str) -> str | None:
    """``variable``'s value without surrounding whitespace, or None when unset or blank."""
    value = environ.get(variable)
    if value is None:
        return None
    value = value.strip()
    return value or None


def checked_url(value: object, name: str, provider: str) -> str:
    """A base URL given as a string, without its trailing slash; anything ``urlsplit`` cannot
    read (``http://[::1``), or that cannot go in a request line, is a ``ValidationError``."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValidationError(f"{name} must be an http:// or https:// URL", provider=provider)
    netloc = _netloc(value)
    if netloc is None or not text.is_encodable(value):
        raise ValidationError(
            f"{name} is not a URL that can be requested (a malformed host, control characters "
            "or lone surrogates)",
            provider=provider,
        )
    if "@" in netloc:
        # A user or password in the URL would be shown wherever the URL is (reprs, the CLI's
        # resume command), and aiohttp refuses one beside the client's own Authorization.
        raise ValidationError(
            f"{name} must not carry a user or password (user:password@host): the client sends "
            "its credentials itself",
            provider=provider,
        )
    return value.rstrip("/")


def _netloc(url: str) -> str | None:
    """The host part of ``url``, or None when ``urlsplit`` refuses it (an unclosed ``[``)."""
    try:
        return urllib.parse.urlsplit(url).netloc
    except ValueError:
        return None


def checked_text(
    value: object,
    name: str,
    provider: str,
    endpoint: str | None = None,
) -> str:
    """A text option as it goes on the wire: a plain ``str`` (a subclass, such as a web
    framework's safe string, is taken as the text it holds: msgspec encodes no subclass) with no
    control characters or lone surrogates (which no provider takes and the UTF-8 encoder refuses
    mid-request); else a ``ValidationError`` naming the option."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{name} must be a str, not {type(value).__name__}",
            provider=provider,
            endpoint=endpoint,
        )
    if value.__class__ is not str:
        value = str.__str__(value)  # the characters it holds, not its own ``__str__``
    if not text.is_encodable(value):
        raise ValidationError(
            f"{name} has control characters or lone surrogates",
            provider=provider,
            endpoint=endpoint,
        )
    return value


def checked_credential(value: object, name: str, provider: str) -> str:
    """A credential: a non-empty ``str`` that encodes as UTF-8 and holds no control character
    (a lone surrogate failed deep in the account digest with ``UnicodeEncodeError``). The
    message names the credential, never its value."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{name} (a non-empty str) is required", provider=provider)
    if not text.is_encodable(value):
        raise ValidationError(
            f"{name} has control characters or lone surrogates", provider=provider
        )
    return value
