"""Receive providers' callbacks: delivery reports, inbound SMS and voice-call results.

Providers sign nothing, retry on failure and send duplicates, so the receiver built by
:func:`app` authenticates each callback by an unguessable secret in its URL path (compared in
constant time), caps and strictly parses the body, suppresses duplicates, and answers 200 only
once the user's handler has succeeded (500 otherwise, so the provider retries and nothing is
lost).

The receiver knows no provider: it serves one route per registered provider that makes
callbacks (``smsvn.providers.all_providers()``, those with a ``webhook``), relative to wherever
it is mounted::

    {methods} /{provider}/{secret}    the provider's parser turns body and query into an event

Each provider module owns its wire format, its parser and its status rules. Answers: 200 ``OK``
(processed, or a duplicate of something processed); 404 with an empty body for a wrong secret or
an unknown path; 405 for a wrong method (only with the right secret); 413 for a body over the
cap; 400 with a short reason for a malformed callback; 500 when the handler raised.

The path holds the secret, and aiohttp logs paths: its access log, and the request line of a
malformed request (in the exception of an ``aiohttp.server`` ERROR record). :func:`app` and
:func:`run` therefore attach a filter to the ``aiohttp.access``, ``aiohttp.server`` and
``aiohttp.web`` loggers (once per process) that writes what follows ``/{provider}/`` as
``***``, the name in any case or percent-encoded, in each record's message, arguments, extras
and traceback. For an access
log on another logger, give the runner :class:`MaskedAccessLogger`
(``web.run_app(app, access_log_class=MaskedAccessLogger)``, ``web.AppRunner(...)``, or
:func:`run`), which masks before formatting.

Duplicates: a delivery report is the same as another when (provider, message id, phone, status,
state) agree, a status written in digits being compared by value (``05`` is ``5``); a call
result when (reference id, status, sent, duration) agree. The key is remembered only after the
handler succeeded, so a retry after a 500 is processed; a duplicate arriving while the first is
being handled waits for it. Inbound SMS carry no id and are never suppressed (a retry cannot be
told from a second identical reply).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import inspect
import logging
import re
import secrets as _secrets
import string
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias, cast

from aiohttp import web
from aiohttp.web_log import AccessLogger
from yarl import URL

from smsvn._checks import checked_int, checked_seconds
from smsvn.errors import ValidationError
from smsvn.models import CallReport, DeliveryReport, DeliveryState
from smsvn.providers import all_providers
from smsvn.providers._spec import Event, Webhook
from smsvn.providers._webhook import clip
from smsvn.providers._wire import is_count

# The providers' parsers and wire structs, importable from here as before.
from smsvn.providers.esms import parse_esms
from smsvn.providers.speedsms import SpeedSmsInbound, SpeedSmsReport, parse_speedsms

__all__ = [
    "DEFAULT_DEDUP_MAX",
    "DEFAULT_DEDUP_WINDOW",
    "DEFAULT_MAX_BODY",
    "MIN_SECRET_LENGTH",
    "TRACKER_KEY",
    "DeliveryTracker",
    "Event",
    "Handler",
    "MaskedAccessLogger",
    "SpeedSmsInbound",
    "SpeedSmsReport",
    "app",
    "callback_url",
    "new_secret",
    "parse_esms",
    "parse_speedsms",
    "run",
]

Handler: TypeAlias = Callable[[Event], Awaitable[None] | None]
"""The user's ``async def handler(event) -> None`` (a plain function is called as it is);
raising makes the provider retry."""

DEFAULT_DEDUP_WINDOW: Final = 3600.0
DEFAULT_MAX_BODY: Final = 64 * 1024
DEFAULT_DEDUP_MAX: Final = 100_000
DEFAULT_TRACKER_MAX: Final = 100_000
MIN_SECRET_LENGTH: Final = 16

_log = logging.getLogger("smsvn.webhooks")

_HISTORY_MAX: Final = 32
_SECRET_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-_.~")

_RANK: Final[dict[DeliveryState, int]] = {
    DeliveryState.PENDING: 0,
    DeliveryState.TEMPORARY_FAILURE: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.FAILED: 2,
}


# --------------------------------------------------------------------------------------------
# Forward-only delivery state


class _Tracked:
    """One message to one number: its current state and the reports received for it."""

    __slots__ = ("history", "state")

    def __init__(self, report: DeliveryReport) -> None:
        self.state = report.state
        self.history: collections.deque[DeliveryReport] = collections.deque(
            (report,), maxlen=_HISTORY_MAX
        )


class DeliveryTracker:
    """Delivery state per (provider, message id, phone) that only moves forward.

    The rank is PENDING < TEMPORARY_FAILURE < DELIVERED = FAILED: a report of a lower or equal
    rank (a late "temporary failure" after "delivered") is kept in the history but does not
    change the state, and a final state is never overwritten. Memory is bounded: beyond
    ``max_entries`` messages the least recently updated are forgotten, and each history keeps
    its last 32 reports.
    """

    def __init__(self, max_entries: int = DEFAULT_TRACKER_MAX) -> None:
        checked_int(max_entries, "max_entries", low=1)
        self._max = max_entries
        self._entries: collections.OrderedDict[tuple[str, str, str], _Tracked] = (
            collections.OrderedDict()
        )
        self._counts: collections.Counter[DeliveryState] = collections.Counter()

    def record(self, report: DeliveryReport) -> DeliveryState:
        """Add a report and return the message's state after it (which may be unchanged)."""
        key = (report.provider, report.message_id, report.phone)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Tracked(report)
            self._counts[report.state] += 1
            while len(self._entries) > self._max:
                _, evicted = self._entries.popitem(last=False)
                self._counts[evicted.state] -= 1
            return report.state
        self._entries.move_to_end(key)
        entry.history.append(report)
        if _RANK[report.state] > _RANK[entry.state]:
            self._counts[entry.state] -= 1
            self._counts[report.state] += 1
            entry.state = report.state
        return entry.state

    def state(self, provider: str, message_id: str, phone: str) -> DeliveryState | None:
        """Return the current state of one message to one number, or None if never reported."""
        entry = self._entries.get((provider, message_id, phone))
        return None if entry is None else entry.state

    def history(self, provider: str, message_id: str, phone: str) -> tuple[DeliveryReport, ...]:
        """Return the reports received for one message to one number, oldest first."""
        entry = self._entries.get((provider, message_id, phone))
        return () if entry is None else tuple(entry.history)

    def counts(self) -> dict[DeliveryState, int]:
        """Return how many tracked messages are in each state (every state listed)."""
        return {state: self._counts[state] for state in DeliveryState}

    def __len__(self) -> int:
        """Return the number of (provider, message id, phone) entries tracked."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DeliveryTracker(entries={len(self._entries)}, max_entries={self._max})"


# --------------------------------------------------------------------------------------------
# Duplicate suppression

_DedupKey: TypeAlias = tuple[str, str, str, str, str]


def _dedup_key(event: Event) -> _DedupKey | None:
    """Return what makes two callbacks the same report, or None for inbound SMS.

    The state joins (provider, id, phone, status) because a provider's status alone may not
    distinguish "sent, no result yet" from "sent and delivered". Inbound SMS carry no id, so a
    retry cannot be told from a second identical reply: they are never suppressed.
    """
    if isinstance(event, DeliveryReport):
        return (
            event.provider,
            event.message_id,
            event.phone,
            _canonical(event.raw_status),
            event.state.value,
        )
    if isinstance(event, CallReport):
        return (
            event.provider,
            "call:" + event.reference_id,
            "",
            event.status.value,
            f"{event.sent}:{event.duration}",
        )
    return None


def _canonical(status: str) -> str:
    """A raw status as duplicates compare it: digits by value (``05`` is ``5``), text stripped.

    A provider may write one status two ways in two retries of one callback; whatever the
    parser kept as ``raw_status``, the key must not tell them apart.
    """
    text = status.strip()
    return str(int(text)) if is_count(text) else text


class _Deduplicator:
    """Keys processed within the last ``window`` seconds, at most ``max_entries`` of them,
    plus the keys whose handler is running right now."""

    def __init__(
        self,
        window: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._done: collections.OrderedDict[_DedupKey, float] = collections.OrderedDict()
        self.in_flight: dict[_DedupKey, asyncio.Event] = {}

    def seen(self, key: _DedupKey) -> bool:
        """Return whether ``key`` was processed and has not expired."""
        expiry = self._done.get(key)
        if expiry is None:
            return False
        if expiry > self._clock():
            return True
        del self._done[key]
        return False

    def add(self, key: _DedupKey) -> None:
        """Remember ``key`` as processed; drop expired keys and the oldest beyond the cap."""
        now = self._clock()
        self._done[key] = now + self._window
        self._done.move_to_end(key)
        done = self._done
        while done:
            oldest, expiry = next(iter(done.items()))
            if expiry > now and len(done) <= self._max:
                break
            del done[oldest]


# --------------------------------------------------------------------------------------------
# The aiohttp application

TRACKER_KEY: Final = web.AppKey("smsvn_delivery_tracker", DeliveryTracker)
"""``application[TRACKER_KEY]`` is the DeliveryTracker the receiver records reports in."""

_Route: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Body413(Exception):
    """The request body is larger than the cap."""


class _Garbled(Exception):
    """The request body is not in the ``Content-Encoding`` it claims (or one we read)."""


def app(
    handler: Handler,
    *,
    secret: str | Sequence[str],
    dedup_window: float = DEFAULT_DEDUP_WINDOW,
    max_body: int = DEFAULT_MAX_BODY,
    store: DeliveryTracker | None = None,
    dedup_max: int = DEFAULT_DEDUP_MAX,
) -> web.Application:
    """Build the aiohttp application that receives every registered provider's callbacks.

    ``handler`` is awaited once per new event; if it raises, the callback is answered 500 so
    the provider retries. ``secret`` is one secret, or several during a rotation (each at least
    16 URL-safe characters; see :func:`new_secret`). Duplicates within ``dedup_window``
    seconds (at most a year) are answered 200 without calling the handler. Delivery reports
    are recorded in ``store`` (a new :class:`DeliveryTracker` by default), reachable as
    ``app[TRACKER_KEY]``. Mount it with ``parent.add_subapp("/hooks", app(...))`` or run it
    alone with :func:`run`. Alone, it inflates a gzip or deflate body itself, within
    ``max_body``; mounted, the parent's server inflates bodies first (aiohttp's own limit)
    unless the parent is made with ``handler_args={"auto_decompress": False}``, which makes a
    compressed callback a 400 (no provider compresses them). The routes are those of the
    providers registered now; aiohttp's loggers get the filter that masks secrets (see the
    module's documentation).
    """
    if not callable(handler):
        raise TypeError("handler must be an async callable taking one event")
    accepted = tuple(s.encode("ascii") for s in _check_secrets(secret))
    checked_int(max_body, "max_body", low=1)
    # At most a year: past any provider's retries; checked before any arithmetic, so a str, a
    # timedelta or an int past a float's range (10**400) is a ValidationError.
    window = checked_seconds(dedup_window, "dedup_window", zero=True)
    checked_int(dedup_max, "dedup_max", low=1)
    if store is not None and not callable(getattr(store, "record", None)):
        # Caught here, not as an AttributeError after the handler ran: that would answer 500
        # and the provider would retry the report, and the handler see it, again and again.
        raise ValidationError(
            f"store must be a DeliveryTracker (or None), not {type(store).__name__}"
        )
    tracker = DeliveryTracker() if store is None else store
    dedup = _Deduplicator(window, dedup_max)

    def authentic(request: web.Request) -> bool:
        """Compare the path's secret with every accepted one, in constant time."""
        given = request.match_info.get("secret", "").encode("utf-8", "replace")
        ok = False
        for candidate in accepted:
            ok |= hmac.compare_digest(candidate, given)
        return ok

    async def process(event: Event) -> web.Response:
        """Call the handler once per distinct event, then record it; 500 if it raised."""
        key = _dedup_key(event)
        if key is None:
            return _ok() if await _call(handler, event, tracker) else _failed()
        while True:
            if dedup.seen(key):
                _log.debug("%s webhook: duplicate suppressed", event.provider)
                return _ok()
            running = dedup.in_flight.get(key)
            if running is None:
                break
            await running.wait()
        finished = asyncio.Event()
        dedup.in_flight[key] = finished
        try:
            ok = await _call(handler, event, tracker)
            if ok:
                dedup.add(key)
        finally:
            del dedup.in_flight[key]
            finished.set()
        return _ok() if ok else _failed()

    def route(name: str, webhook: Webhook) -> _Route:
        """The request handler of one provider's callbacks: secret, method, cap, parse."""
        methods = tuple(method.upper() for method in webhook.methods)
        allow = ", ".join(methods)

        async def receive(request: web.Request) -> web.StreamResponse:
            """One callback of the provider ``name``, in one of its ``methods``."""
            if not authentic(request):
                _log.info("%s webhook: wrong secret from %s", name, request.remote)
                return _not_found()
            if request.method not in methods:
                return web.Response(status=405, headers={"Allow": allow})
            try:
                body = await _read_capped(request, max_body)
                if len(request.match_info.apps) == 1:
                    # Served as it is (not mounted), so with our handler_args: nothing inflated
                    # the body yet. Mounted, the parent's server did (see ``app``).
                    body = _inflated(body, request.headers.get("Content-Encoding"), max_body)
            except _Body413:
                return web.Response(status=413, text="body too large")
            except web.RequestPayloadError:
                return _unreadable(name, request)
            except _Garbled:
                _log.info("%s webhook: rejected a body that could not be inflated", name)
                return web.Response(status=400, text="bad request: malformed body")
            try:
                event = webhook.parse(body, request.query)
            except ValidationError as exc:
                return _bad_request(name, exc)
            return await process(event)

        return receive

    # aiohttp's server would inflate a compressed body as it arrives, before any cap (up to
    # 32 MiB a request, a wrong secret's too); served as it is, the receiver inflates it itself.
    application = web.Application(
        client_max_size=max_body,
        middlewares=[_quiet_not_found],
        handler_args={"auto_decompress": False},
    )
    application[TRACKER_KEY] = tracker
    for provider in all_providers():
        if provider.webhook is not None:
            application.router.add_route(
                "*",
                f"/{provider.name}/{{secret}}",
                route(provider.name, provider.webhook),
                name=f"smsvn-{provider.name}",
            )
    _mask_aiohttp_logs()
    return application


async def _call(handler: Handler, event: Event, tracker: DeliveryTracker) -> bool:
    """Run the user's handler (awaited when it is a coroutine function's); on success record a
    delivery report and return True."""
    try:
        result = handler(event)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        _log.warning(
            "%s webhook handler raised %s: answering 500 so the provider retries",
            event.provider,
            type(exc).__name__,
        )
        _log.debug("webhook handler traceback", exc_info=True)
        return False
    if isinstance(event, DeliveryReport):
        tracker.record(event)
    return True


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """Read the body, raising _Body413 past ``limit`` bytes (Content-Length is not trusted)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _Body413
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _Body413
        chunks.append(chunk)


def _inflated(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body in ``encoding`` (gzip or deflate) inflated, never to more than ``limit``
    bytes: ``_Body413`` past it, ``_Garbled`` for a stream that is not what it says."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit)
    if coding == "deflate":
        # zlib-wrapped, as the standard says, or raw deflate, as some senders write it.
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except _Garbled:
            return _inflate(body, -zlib.MAX_WBITS, limit)
    raise _Garbled


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """One stream of ``zlib.decompressobj(wbits)``, whole and alone, within ``limit``."""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise _Garbled from None
    if len(out) > limit:
        raise _Body413
    if not inflater.eof or inflater.unused_data:
        raise _Garbled  # truncated, or bytes after the stream
    return out


@web.middleware
async def _quiet_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer unknown paths with the same empty 404 as a wrong secret."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _not_found()


def _ok() -> web.Response:
    """The 200 that tells a provider to stop retrying."""
    return web.Response(text="OK")


def _failed() -> web.Response:
    """The 500 that makes a provider retry after the handler failed."""
    return web.Response(status=500, text="handler failed")


def _not_found() -> web.Response:
    """An empty 404 that reveals nothing about the routes or secrets."""
    return web.Response(status=404)


def _unreadable(provider: str, request: web.Request) -> web.Response:
    """The 400 of a body that could not be read as sent (a ``Content-Encoding`` it is not in,
    a truncated chunk): the same request will never succeed, so not the 500 that makes the
    provider retry it forever. The connection is closed after it (the body's framing is lost),
    and the body marked read: aiohttp would otherwise read the rest of it, meet the same error
    and log it as an unhandled exception with its traceback."""
    _log.info("%s webhook: rejected a body that could not be read", provider)
    request.content.feed_eof()
    response = web.Response(status=400, text="bad request: malformed body")
    response.force_close()
    return response


def _bad_request(provider: str, exc: ValidationError) -> web.Response:
    """A 400 naming what was wrong with the callback (no secret can be in it)."""
    _log.info("%s webhook: rejected malformed callback: %s", provider, exc.message)
    return web.Response(status=400, text=f"bad request: {clip(exc.message)}")


# --------------------------------------------------------------------------------------------
# Secrets, URLs and logging


def new_secret() -> str:
    """Return a fresh random secret for a callback URL (32 URL-safe characters)."""
    return _secrets.token_urlsafe(24)


def _check_secrets(secret: object) -> tuple[str, ...]:
    """Validate one secret (a str) or a rotation list (a sequence of them); the messages
    never quote a secret."""
    if isinstance(secret, str):
        candidates: tuple[object, ...] = (secret,)
    elif isinstance(secret, Iterable) and not isinstance(secret, bytes | bytearray | Mapping):
        candidates = tuple(secret)  # a list, a tuple, a set: several during a rotation
    else:
        raise ValidationError(
            f"secret must be a str or a list of them, not {type(secret).__name__}"
        )
    if not candidates:
        raise ValidationError("at least one webhook secret is required")
    return tuple(_check_secret(candidate) for candidate in candidates)


def _check_secret(secret: object) -> str:
    """``secret`` when it is a str of at least 16 URL-safe characters (letters, digits,
    ``-_.~``); ``ValidationError`` otherwise."""
    if not isinstance(secret, str):
        raise ValidationError(f"a webhook secret must be a str, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            f"a webhook secret must be at least {MIN_SECRET_LENGTH} characters "
            "(use smsvn.webhooks.new_secret())"
        )
    if not _SECRET_CHARS.issuperset(secret):
        raise ValidationError(
            "a webhook secret may contain only letters, digits and '-', '_', '.', '~'"
        )
    return secret


def _webhook_names() -> tuple[str, ...]:
    """The registered providers that make callbacks: the first segment of their routes."""
    return tuple(provider.name for provider in all_providers() if provider.webhook is not None)


def callback_url(base_url: str, provider: str, secret: str) -> str:
    """Return the URL to register with ``provider`` (a registered provider that makes
    callbacks, named in any case).

    ``base_url`` is where the application is reachable, mount prefix included: for
    ``parent.add_subapp("/hooks", app(...))`` served at https://example.com, pass
    ``"https://example.com/hooks"``.
    """
    names = _webhook_names()
    name = provider.lower() if isinstance(provider, str) else None
    if name not in names:
        raise ValidationError(f"provider must be one of {', '.join(names)}")
    _check_secret(secret)
    try:
        base = URL(base_url)
    except (TypeError, ValueError):
        raise ValidationError("base_url is not a URL") from None
    if base.scheme not in ("http", "https") or not base.host:
        raise ValidationError("base_url must be an absolute http(s) URL")
    if base.query_string or base.fragment:
        raise ValidationError("base_url must not have a query or a fragment")
    return f"{str(base).rstrip('/')}/{name}/{secret}"


@functools.lru_cache(maxsize=8)
def _secret_segment(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """The regex of ``/{name}`` for any of ``names`` (group 1), in any case and with any of its
    characters percent-encoded (aiohttp routes ``/speed%73ms/...`` as ``/speedsms/...``), and
    the whole rest of the path after it: ``_mask`` keeps the first and masks the second.

    It matches text, not routes: a path no route matched (a provider's name in capitals, a dot
    segment before the secret: 404s) and a request line quoted in an exception are masked
    alike; extra slashes and segments go too, and an encoded slash (``%2F``) after the name.
    """
    if not names:
        return None
    spelled = "|".join("".join(_any_spelling(c) for c in name) for name in names)
    return re.compile(f"(/(?:{spelled}))(?:/|%2f)[^?#\\s]+", re.IGNORECASE)


def _any_spelling(char: str) -> str:
    """A regex of ``char`` as written or percent-encoded (hex in either case)."""
    return f"(?:{re.escape(char)}|%{ord(char):02x})" if char.isascii() else re.escape(char)


_MASKED: Final = r"\1/***"
"""What a match of ``_secret_segment`` becomes."""


def _mask(text: str) -> str:
    """Replace what follows ``/{provider}/`` in a path with ``***``."""
    pattern = _secret_segment(_webhook_names())
    return text if pattern is None else pattern.sub(_MASKED, text)


class _MaskedRequest:
    """A stand-in for a request whose path (and URL) has its secret segment masked."""

    __slots__ = ("_request", "path", "path_qs", "raw_path")

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        self.path = _mask(request.path)
        self.path_qs = _mask(request.path_qs)
        self.raw_path = _mask(request.raw_path)

    @property
    def rel_url(self) -> URL:
        """The request's relative URL, secret masked."""
        return URL(self.path_qs)

    @property
    def url(self) -> URL:
        """The request's absolute URL, secret masked."""
        return self._request.url.with_path(self.path, encoded=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class MaskedAccessLogger(AccessLogger):
    """aiohttp's access logger, with the secret of each ``/{provider}/{secret}`` path written
    as ``***`` (in the message and the record's extras alike), whatever its case.

    Give it to the runner: ``web.run_app(app, access_log_class=MaskedAccessLogger)`` or
    ``web.AppRunner(app, access_log_class=MaskedAccessLogger)``.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """Log the request with its secret masked."""
        super().log(cast(web.BaseRequest, _MaskedRequest(request)), response, time)


_MASKED_LOGGERS: Final = ("aiohttp.access", "aiohttp.server", "aiohttp.web")
"""aiohttp's loggers that may quote a request's path: access lines, bad requests, handler errors."""
_RECORD_FIELDS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_TRACEBACKS: Final = logging.Formatter()


class _SecretFilter(logging.Filter):
    """Masks webhook secrets in every record of the logger it is attached to.

    aiohttp logs a malformed request line (``GET /{provider}/{secret} HTTP/1.1 garbage``) as
    the message of the exception of an ``aiohttp.server`` record, before any route or access
    logger sees the request: only a filter on the logger reaches it, whatever runs the app.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's secret-bearing parts in place; never drop a record."""
        pattern = _secret_segment(_webhook_names())
        if pattern is not None:
            _mask_record(record, pattern)
        return True


def _mask_record(record: logging.LogRecord, pattern: re.Pattern[str]) -> None:
    """Mask ``pattern`` in a record's message, extras, traceback and stack; a record with
    nothing to mask is left as it was (its format and arguments intact)."""
    try:
        message = record.getMessage()
    except Exception:
        # logging would print such a record, arguments included, on stderr: drop them here.
        record.msg, record.args = "unformattable log record (its arguments dropped)", None
    else:
        masked = pattern.sub(_MASKED, message)
        if masked != message:
            record.msg, record.args = masked, None
    fields = record.__dict__
    for key, value in list(fields.items()):
        if key in _RECORD_FIELDS:
            continue
        if isinstance(value, str):
            fields[key] = pattern.sub(_MASKED, value)
        elif isinstance(value, dict):  # the access log's request_header / response_header
            fields[key] = {
                k: pattern.sub(_MASKED, v) if isinstance(v, str) else v for k, v in value.items()
            }
    if record.exc_info and record.exc_info[1] is not None:
        text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
        masked = pattern.sub(_MASKED, text)
        if masked != text:
            # Formatters print exc_text as it is; handlers that read exc_info get nothing.
            record.exc_text, record.exc_info = masked, None
    elif record.exc_text:
        record.exc_text = pattern.sub(_MASKED, record.exc_text)
    if record.stack_info:
        record.stack_info = pattern.sub(_MASKED, record.stack_info)


_SECRET_FILTER: Final = _SecretFilter()


def _mask_aiohttp_logs() -> None:
    """Attach the secret filter to aiohttp's loggers (``addFilter`` adds it only once)."""
    for name in _MASKED_LOGGERS:
        logging.getLogger(name).addFilter(_SECRET_FILTER)


def run(
    application: web.Application,
    *,
    host: str | None = None,
    port: int = 8080,
    **kwargs: Any,
) -> None:
    """Serve ``application`` alone (blocking), with the masked access log and log filter."""
    _mask_aiohttp_logs()
    kwargs.setdefault("access_log_class", MaskedAccessLogger)
    web.run_app(application, host=host, port=port, **kwargs)
