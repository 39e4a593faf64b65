"""HTTP for every client: one aiohttp session, timeouts, retries, classification and redaction.

The one question this module answers for each failed attempt is *did the request leave?*

- it never left (refused, DNS, no connection, pooled or new, within the connect timeout) ->
  ``ConnectError``, retried with backoff;
- it left and no usable answer came back (read timeout, dropped connection, cut-off body)
  -> ``OutcomeUnknown``, retried only for read-only calls or where the provider deduplicates;
  once an attempt of a send ended so, the call's outcome stays unknown however later ones end;
- the provider said 429 -> the whole account pauses for the provider's hint (at least the
  backoff from the second 429 of a call on), then the same request goes again (a 429 was not
  processed).

Every retry is this module's: aiohttp's own silent resend of a GET is switched off.

aiohttp's own exceptions print the full URL (query string and its secrets included), so none is
ever chained into ours or logged: errors are raised ``from None`` with a message built here.
Redirects are never followed (a redirect would carry credentials in a URL to another host, and a
send to a second place); answers over ``max_body`` bytes are refused unread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import select
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar, cast

import aiohttp
import msgspec
from aiohttp.client_proto import ResponseHandler
from aiohttp.payload import BytesPayload
from multidict import CIMultiDict, CIMultiDictProxy

from smsvn._attempt_timer import AttemptTimer
from smsvn._checks import checked_int, checked_seconds
from smsvn._redact import Redactor
from smsvn.errors import (
    ConnectError,
    MalformedResponse,
    OutcomeUnknown,
    ProviderUnavailable,
    RateLimited,
    SmsError,
    ValidationError,
)
from smsvn.limits import (
    AccountLimit,
    InProcessLimiter,
    LimiterBackend,
    RateLimit,
    WaitTooLong,
    account_key,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "MAX_RETRIES",
    "AttemptInfo",
    "Bounds",
    "Departure",
    "Hooks",
    "Response",
    "RetryPolicy",
    "Transport",
    "bounded",
    "departure",
    "retry_after_seconds",
]

_log = logging.getLogger("smsvn")

DEFAULT_TIMEOUT = 30.0
"""Seconds a whole request may take, from queueing for a connection to the last body byte."""
DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to get a connection (from the pool or a new one); past it nothing was sent."""
DEFAULT_MAX_CONNECTIONS = 64
"""Connections per client: enough for 32-64 requests in flight; more only costs CPU."""
DEFAULT_MAX_RETRIES = 2
"""Automatic retries of one call after a failure that is safe to retry."""
MAX_RETRIES = 100
"""The most ``RetryPolicy.max_retries`` may be: past any use (the backoff is capped long before)."""
DEFAULT_MAX_BODY = 1024 * 1024
"""The largest answer read: every real one is a few hundred bytes; past it is a misdirected
request (a proxy's page, a download) and is refused as malformed instead of filling memory."""

_USER_AGENT = "smsvn/0.1"
_MERGED_HEADERS: Final = 16
"""Distinct per-call header mappings whose aiohttp form (``_all_headers``) is kept."""
_CONTENT_ENCODING: Final = aiohttp.hdrs.CONTENT_ENCODING  # an istr: no case folding per lookup
_CONTENT_LENGTH: Final = aiohttp.hdrs.CONTENT_LENGTH
_CONTENT_TYPE: Final = aiohttp.hdrs.CONTENT_TYPE
_DEBUG: Final = logging.DEBUG
_OCTET_STREAM: Final = "application/octet-stream"
_IN_PROCESS: Final = InProcessLimiter()

T = TypeVar("T")


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When and how long to wait before trying a call again.

    Backoff is ``backoff_base * 2**n`` seconds (capped at ``backoff_max``) with jitter. A
    provider's 429 wait hint replaces the backoff; one call waits at most ``max_rate_limit_wait``
    seconds in all for 429s before raising ``RateLimited``.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_rate_limit_wait: float = 120.0

    def __post_init__(self) -> None:
        """Refuse at construction what would fail (or switch a bound off) mid-call: a
        ``max_retries`` that is not an int (``"2"`` failed at the first retry), a NaN wait
        (``waited + hint > nan`` is never true, so the cap on waiting for 429s was off)."""
        checked_int(self.max_retries, "RetryPolicy.max_retries", low=0, high=MAX_RETRIES)
        for name in ("backoff_base", "backoff_max", "max_rate_limit_wait"):
            checked_seconds(getattr(self, name), f"RetryPolicy.{name}", zero=True)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), jittered to spread herds."""
        ceiling: float = min(self.backoff_max, self.backoff_base * 2.0**retry)
        return ceiling * random.uniform(0.5, 1.0)


class AttemptInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the observability hooks are told about one attempt (never a URL or a secret)."""

    provider: str
    endpoint: str
    method: str
    attempt: int
    status: int | None = None
    elapsed: float | None = None
    error: str | None = None
    delay: float | None = None


class Hooks(msgspec.Struct, frozen=True, kw_only=True):
    """Per-attempt callbacks for metrics and tracing; each receives an ``AttemptInfo``."""

    on_request: Callable[[AttemptInfo], None] | None = None
    on_response: Callable[[AttemptInfo], None] | None = None
    on_retry: Callable[[AttemptInfo], None] | None = None

    def __post_init__(self) -> None:
        """Each hook is a callable or None: a wrong one is refused here, not at the first
        attempt (where it failed with ``AttributeError``, the request already gone)."""
        for name in ("on_request", "on_response", "on_retry"):
            hook = getattr(self, name)
            if hook is not None and not callable(hook):
                raise ValidationError(
                    f"Hooks.{name} must be a callable or None, not {type(hook).__name__}"
                )


class Response(msgspec.Struct, gc=False):
    """A provider's answer: status, headers, the whole body, which attempt got it, and whether
    an earlier attempt of the same call may have been processed (``resent``).

    A Struct: made once per request, at C speed (a class with ``__init__`` cost a few times
    more, benchmarks/README.md). It holds no reference cycle, so the collector need not track
    it."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    attempt: int
    resent: bool = False


class Departure:
    """Whether a request of the current task may have left. The transport sets ``left`` just
    before it hands a request to aiohttp; a caller that sets a fresh ``Departure`` in
    ``departure`` around a send (the bulk engine does, per batch) can then tell a send cancelled
    before that moment, which certainly sent nothing, from one whose outcome is unknown."""

    __slots__ = ("left", "unbounded")

    def __init__(self, *, unbounded: bool = False) -> None:
        self.left = False
        self.unbounded = unbounded
        """Set by a bulk run: its batches wait for the account's turn however long it is, so the
        client's ``max_wait`` and ``deadline`` (bounds for a web request) do not apply."""


departure: ContextVar[Departure | None] = ContextVar("smsvn_departure", default=None)
"""The ``Departure`` of the running task's send, if its caller asked to know."""


class Bounds(msgspec.Struct, frozen=True, kw_only=True):
    """Per-call bounds set by ``bounded()``: the tighter of these and the client's apply."""

    max_wait: float | None = None
    deadline: float | None = None


_bounds: ContextVar[Bounds | None] = ContextVar("smsvn_bounds", default=None)


@contextmanager
def bounded(*, max_wait: float | None = None, deadline: float | None = None) -> Iterator[None]:
    """Bound every smsvn call made inside the block (in this task and the tasks it starts):
    ``max_wait`` for the account's turn, ``deadline`` for each whole call. The tighter of these
    and the client's own options applies, so a web request (or ``smsvn.otp``) can say "this
    request may not wait more than 2 s" on a client shared with slower work.

        with smsvn.transport.bounded(max_wait=2.0, deadline=5.0):
            await sms.send(number, text)
    """
    if max_wait is not None:
        max_wait = checked_seconds(max_wait, "max_wait", zero=True)
    if deadline is not None:
        deadline = checked_seconds(deadline, "deadline", zero=True)
    outer = _bounds.get()
    if outer is not None:
        max_wait = _tighter(max_wait, outer.max_wait)
        deadline = _tighter(deadline, outer.deadline)
    token = _bounds.set(Bounds(max_wait=max_wait, deadline=deadline))
    try:
        yield
    finally:
        _bounds.reset(token)


def _check_kinds(provider: str, session: object, retry: object, hooks: object) -> None:
    """Refuse a ``session``, ``retry`` or ``hooks`` of the wrong type when the client is made:
    each was taken and failed later, ``retry="fast"`` only on a 429, after the request left."""
    for name, value, kind, what in (
        ("session", session, aiohttp.ClientSession, "an aiohttp.ClientSession"),
        ("retry", retry, RetryPolicy, "a smsvn.RetryPolicy"),
        ("hooks", hooks, Hooks, "a smsvn.Hooks"),
    ):
        if value is not None and not isinstance(value, kind):
            raise ValidationError(
                f"{name} must be {what} or None, not {type(value).__name__}", provider=provider
            )


def _tighter(a: float | None, b: float | None) -> float | None:
    """The smaller of two optional bounds (None is no bound)."""
    if a is None:
        return b
    return a if b is None else min(a, b)


class _Dropped(Exception):
    """The connection failed after the request was handed to it (see ``_no_resend``)."""


async def _no_resend(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Client middleware that stops aiohttp from silently resending a GET.

    aiohttp (3.10+) resends an idempotent-method request once when its connection drops
    (RFC 9112 9.3.1). That is wrong for a send that goes as GET (Fibo, eSMS voice calls): the
    first copy may have been processed. For a read it is harmless but doubles the requests
    behind ``max_retries`` and the hooks' backs, so ``Transport.call`` uses it on every GET.
    The resend is triggered by ``ClientOSError`` / ``ServerDisconnectedError`` escaping the
    handler, so this middleware turns those into an exception aiohttp does not retry on.
    """
    try:
        return await handler(request)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
        raise
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise _Dropped(type(exc).__name__) from None


_NO_RESEND = (_no_resend,)

_FAILURES = (TimeoutError, aiohttp.ClientError, _Dropped, OSError)
"""What one attempt's request may raise: each becomes an smsvn error (``Transport._failure``)."""


class _CleanConnector(aiohttp.TCPConnector):
    """A connector that never lends a connection holding unread bytes.

    A server or a proxy may write an unsolicited answer (a 429, a timeout page) on an idle
    keep-alive connection; aiohttp parses it into the connection's buffer and the next request
    on that connection would read it as its own answer, concluding "rate limited, not
    processed" about a request that was. So a pooled connection that holds parsed but unread
    data (``should_close``), or whose socket has bytes the event loop has not read yet, is
    closed and another one taken, before any request is written on it.

    The check is the connections' own (``_CleanHandler.is_connected``): aiohttp asks it of every
    pooled connection before lending it, closes one that says no and takes the next (or a new
    one), so a request costs no coroutine layer of ours around ``connect`` (benchmarks/README.md).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        factory = functools.partial(_CleanHandler, loop=self._loop, lent=self._acquired)
        self._factory = cast("functools.partial[ResponseHandler]", factory)

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> ResponseHandler:
        """A new connection, for a request that then leaves on it: its ``Departure`` says so
        (a pooled one's is set by ``_CleanHandler.is_connected`` when lent). Before this, a
        request cancelled while it waited for a connection sent nothing."""
        protocol = await super()._create_connection(req, traces, timeout)
        _leaving()
        return protocol


class _CleanHandler(ResponseHandler):
    """aiohttp's protocol of one connection, which says it is not connected when, idle in the
    pool, it holds bytes nobody asked for (see ``_CleanConnector``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lent: set[Any]) -> None:
        super().__init__(loop)
        self._lent = lent
        """The connector's connections in use: theirs is aiohttp's own answer."""
        self._poller: Any = None
        """A ``select.poll`` of the socket, made once (a poll per check, one system call)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN)  # errors and hang-ups come too
            except (AttributeError, OSError, ValueError):
                return  # ``_readable``'s select, then
            self._poller = poller

    def is_connected(self) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if self in self._lent:
            return True
        # Idle in the pool (aiohttp is about to lend it, or its cleanup is looking). Whether
        # the socket has bytes (or an EOF, an error) the loop has not read: one poll, inline
        # (every request on a pooled connection asks): a list of ready events, or a bool.
        poller = self._poller
        try:
            unread: object = poller.poll(0) if poller is not None else _readable(transport)
        except (OSError, ValueError):
            unread = True
        if unread or self.should_close:
            _log.info(
                "%s: a pooled connection held unread bytes; closed it",
                _peer(transport),
            )
            return False
        # Lent to the running task's request, which leaves on it. (Asked by aiohttp's cleanup
        # instead, in the context of the task that released a connection, this may mark that
        # task's send as left: the safe side, never the other.)
        mark = departure.get()
        if mark is not None:
            mark.left = True
        return True


def _leaving() -> None:
    """The running task's request now has a connection and leaves on it."""
    mark = departure.get()
    if mark is not None:
        mark.left = True


_TRACKS_CONNECTIONS: Final = (
    getattr(aiohttp.TCPConnector, "_create_connection", None) is not None
    and getattr(aiohttp.TCPConnector, "_get", None) is not None
)
"""Whether aiohttp's connector has the two steps ``_CleanConnector`` hooks to mark a request
as leaving when it gets its connection; if a version renamed them, every request is marked
before it is handed to aiohttp, as with a borrowed session."""


def _peer(transport: asyncio.BaseTransport) -> str:
    """The host a connection goes to, for the log."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _readable(transport: asyncio.BaseTransport | None) -> bool:
    """Whether the socket under ``transport`` has bytes (or an EOF) the loop has not read."""
    if transport is None:
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        ready, _, _ = select.select((sock.fileno(),), (), (), 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class Transport:
    """One provider client's HTTP: a lazily created session, the limiter, retries and hooks."""

    def __init__(
        self,
        *,
        provider: str,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        account: str = "",
        secrets: Iterable[str] = (),
        hooks: Hooks | None = None,
        headers: Mapping[str, str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        retry_after: Callable[[Response], float | None] | None = None,
        limiter: LimiterBackend | None = None,
        max_wait: float | None = None,
        deadline: float | None = None,
    ) -> None:
        _check_kinds(provider, session, retry, hooks)
        self.provider = provider
        self._backend: LimiterBackend = limiter if limiter is not None else _IN_PROCESS
        self.max_wait = max_wait
        self.deadline = deadline
        self._connect_timeout = connect_timeout
        self._retry_after = retry_after or _no_hint
        self._max_body = max_body
        self._max_body_digits = (
            len(str(max_body)) if max_body.__class__ is int and max_body >= 0 else 0
        )
        """A ``Content-Length`` of fewer digits is within ``max_body`` without parsing it."""
        self._session = session
        self._owns_session = session is None
        # The connect timeout (which covers waiting for a pooled connection too) must end before
        # the total one: a total timeout that fires first would report a request that never
        # left as ``OutcomeUnknown``. Half the total keeps it first even after aiohttp rounds
        # timeouts of 5 s and more up to the next whole second.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, connect=min(connect_timeout, timeout / 2)
        )
        self._timer = AttemptTimer(timeout)
        self._session_timeout = aiohttp.ClientTimeout(connect=self._timeout.connect)
        """Our own session's: the connect timeout only. ``call`` bounds an attempt's whole time
        with the attempt timer, or passes ``_timeout`` where it does not (a deadline's shorter
        one, outside a task)."""
        self._max_connections = max_connections
        self.retry = retry or RetryPolicy()
        self.rate_limit = rate_limit
        self._account = account_key(account)
        self._limiter: AccountLimit | None = None
        self._hooks = hooks
        # Answers are a few hundred bytes: compression saves nothing and a compressed body is
        # the one whose size is not known before it is inflated (see ``_read_capped``).
        # Our User-Agent on every request of our own session (a borrowed one keeps its own).
        self._headers = {
            **({"User-Agent": _USER_AGENT} if session is None else {}),
            "Accept-Encoding": "identity",
            **(headers or {}),
        }
        self._merged: dict[int, tuple[Mapping[str, str] | None, CIMultiDict[str] | None]] = {}
        self._no_headers = self._all_headers(None)
        """What a call without headers of its own sends (None on our own session)."""
        self.redactor = Redactor(secrets)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use inside the running loop (never per request)."""
        if self._session is None:
            if self._closed:
                raise ValidationError("the client is closed", provider=self.provider)
            connector = _CleanConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._session_timeout,
                auto_decompress=False,  # see _read_capped; each request says so too
                # The transport's own headers once, not merged into every call's: aiohttp
                # copies these at C speed and walks only a call's own in Python.
                headers=self._headers,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session if this transport created it; safe to call twice."""
        self._closed = True
        self._timer.close()
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    @property
    def limiter(self) -> AccountLimit | None:
        """The account's limiter from the limiter backend (in-process by default), or None when
        the client has no rate limit."""
        if self._limiter is None and self.rate_limit is not None:
            self._limiter = self._backend.for_account(self.provider, self._account, self.rate_limit)
        return self._limiter

    # -- redaction -------------------------------------------------------------------------

    def _scrub(self, exc: SmsError) -> None:
        """Redact a provider's own words (an error message may echo a credential)."""
        message = self.redactor.text(exc.message)
        if message is not exc.message:
            exc.message = message
            exc.args = (message,)
        if exc.code is not None:  # a server may put anything in its "code" field
            code = self.redactor.text(exc.code)
            if code is not exc.code:
                exc.code = code

    def _too_large(self, endpoint: str, status: int, attempt: int) -> MalformedResponse:
        return MalformedResponse(
            f"unexpected answer (a body over {self._max_body} bytes)",
            provider=self.provider,
            endpoint=endpoint,
            http_status=status,
            attempts=attempt,
        )

    def malformed(
        self, endpoint: str, response: Response, why: str, redactor: Redactor | None = None
    ) -> MalformedResponse:
        """The error for an answer that cannot be understood, naming the endpoint; its excerpt
        withheld by ``redactor`` (a request's own, carrying more secrets; the client's when
        None)."""
        excerpt = (redactor or self.redactor).excerpt(response.body)
        return MalformedResponse(
            f"unexpected answer ({why}): {excerpt}",
            provider=self.provider,
            endpoint=endpoint,
            http_status=response.status,
            attempts=response.attempt,
        )

    # -- calls -----------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        parse: Callable[[Response], T],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        content_type: str = _OCTET_STREAM,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        deduplicated: bool = False,
    ) -> T:
        """Send one request (and its safe retries) and return what ``parse`` makes of the answer.

        ``data`` goes as the body, typed ``content_type`` (a ``Content-Type`` of its own, not in
        ``headers``: aiohttp takes it from the body without walking another header mapping).
        ``idempotent``: a read; any failure may be retried. ``deduplicated``: a send the provider
        recognises when it comes again (eSMS ``RequestId``), so an unknown outcome may be retried.
        Anything else is sent at most once, except after a ``ConnectError`` or a 429.
        """
        # aiohttp's own silent resend is off for every GET (a read too): retries are this loop's
        # alone, so ``max_retries`` bounds the requests and every attempt reaches the hooks.
        middlewares = _NO_RESEND if method in ("GET", "HEAD") else None
        if headers is None:
            all_headers = self._no_headers
        elif (cached := self._merged.get(id(headers))) is not None and cached[0] is headers:
            all_headers = cached[1]
        else:
            all_headers = self._all_headers(headers)
        # Bytes are reusable: one payload serves every attempt of the call.
        payload = None if data is None else BytesPayload(data, content_type=content_type)
        limiter = self._limiter
        if limiter is None and self.rate_limit is not None:
            limiter = self.limiter  # created on first use, in the running loop
        max_wait = self.max_wait
        deadline = self.deadline
        mark = departure.get()
        if mark is not None and mark.unbounded:
            max_wait = deadline = None
        elif (override := _bounds.get()) is not None:
            max_wait = _tighter(max_wait, override.max_wait)
            deadline = _tighter(deadline, override.deadline)
        end = None if deadline is None else asyncio.get_running_loop().time() + deadline
        retries = 0
        attempt = 0
        limited = 0
        waited = 0.0
        # A send retried after an unknown outcome (eSMS) may already have been processed: then
        # however a later attempt ends, the call's outcome is unknown, never "nothing sent".
        uncertain: OutcomeUnknown | None = None
        # Whether an earlier attempt may have been processed (an unknown outcome, or an answer
        # that was not a 429): an eSMS "RequestId already received" means "sent" only then.
        resent = False
        last: SmsError | None = None
        while True:
            attempt += 1
            timeout = self._timeout
            wait_cap: float | None = max_wait
            if end is not None:
                left = end - asyncio.get_running_loop().time()
                if left <= 0:
                    raise self._out_of_time(endpoint, attempt, last, uncertain)
                wait_cap = left if max_wait is None else min(max_wait, left)
                timeout = self._attempt_timeout(left)
            if limiter is not None:
                try:
                    await limiter.acquire(wait_cap)
                except WaitTooLong as exc:
                    raise self._no_turn(endpoint, attempt, exc.wait, last, uncertain) from None
                except SmsError as exc:  # a shared limiter's store is away: nothing left now
                    self._name_limiter_error(exc, endpoint, attempt - 1)
                    if uncertain is not None:
                        raise self._still_unknown(uncertain, exc) from exc
                    raise
                if end is not None:
                    # The wait for the turn came out of the call's time: the attempt gets what
                    # is left (none: the turn goes unused, nothing is sent).
                    left = end - asyncio.get_running_loop().time()
                    if left <= 0:
                        raise self._out_of_time(endpoint, attempt, last, uncertain)
                    timeout = self._attempt_timeout(left)
            try:
                # One attempt, inline: the hot path of every request (benchmarks/README.md), so
                # no coroutine of its own, no per-call dicts, and the hooks' and the debug log's
                # work only when there are hooks or the log wants it.
                hooks = self._hooks
                observed = hooks is not None or _log.isEnabledFor(_DEBUG)
                if observed:
                    if hooks is not None and hooks.on_request is not None:
                        hooks.on_request(
                            AttemptInfo(
                                provider=self.provider,
                                endpoint=endpoint,
                                method=method,
                                attempt=attempt,
                            )
                        )
                    started = time.perf_counter()
                else:
                    started = 0.0  # nobody reads the attempt's duration
                if mark is not None and not (self._owns_session and _TRACKS_CONNECTIONS):
                    # A borrowed session's connector does not say when a request gets its
                    # connection (ours does, see ``_CleanConnector``): it may leave from here.
                    mark.left = True
                failure: SmsError | None = None
                task: asyncio.Task[Any] | None = None
                try:
                    session = self._session or self.session()
                    if timeout is self._timeout and self._owns_session:
                        task = self._timer.start()  # from here until ``stop``, nothing else
                    try:
                        if task is not None and params is None and middlewares is None:
                            # Our own session already has our headers, no decompression and no
                            # total timeout (the attempt timer's): each keyword aiohttp is
                            # given costs it 3-4k instructions, its own timer ~400 bytecodes
                            # (benchmarks/README.md).
                            request: AbstractAsyncContextManager[aiohttp.ClientResponse] = (
                                session.request(
                                    method,
                                    url,
                                    data=payload,
                                    headers=all_headers,
                                    allow_redirects=False,
                                )
                            )
                        else:
                            request = self._request(
                                session,
                                method,
                                url,
                                params,
                                payload,
                                all_headers,
                                middlewares,
                                timeout if task is None else self._session_timeout,
                            )
                        async with request as resp:
                            answer_headers = resp.headers
                            length = answer_headers.get(_CONTENT_LENGTH)
                            if (
                                length is not None
                                and length.isdecimal()
                                and (
                                    len(length) < self._max_body_digits
                                    or int(length) <= self._max_body
                                )
                                and _CONTENT_ENCODING not in answer_headers
                            ):
                                # A declared length within the cap, not compressed (every real
                                # answer): aiohttp's parser stops at ``length`` bytes.
                                body = await resp.read()
                            else:
                                body = await self._read_capped(resp, endpoint, attempt)
                            response = Response(resp.status, answer_headers, body, attempt, resent)
                    finally:
                        if task is not None:
                            self._timer.stop(task)
                except _FAILURES as exc:
                    if task is not None:
                        self._timer.expired(task)  # a tick that fired as it failed: taken back
                    failure = self._failure(exc, endpoint, method, attempt, started)
                except asyncio.CancelledError:
                    if task is None or not self._timer.expired(task):
                        raise
                    # The attempt ran out of time (what aiohttp's own timer raises).
                    failure = self._failure(TimeoutError(), endpoint, method, attempt, started)
                if failure is not None:
                    # Raised here, outside the ``except``: aiohttp's exceptions carry the full
                    # URL (credentials in its query string), so none may be our error's
                    # ``__context__``.
                    raise failure
                if observed:
                    self._hook_response(endpoint, method, attempt, started, response.status, None)
                if response.status == 429:
                    raise self._rate_limited(endpoint, response)
                resent = True
                return parse(response)
            except RateLimited as exc:
                retry = self.retry
                self._scrub(exc)
                last = exc
                if mark is not None and uncertain is None:
                    # A 429 proves this attempt was not processed (nor any before it): while
                    # the call waits for the reset, nothing of it has left.
                    mark.left = False
                hint = exc.retry_after if exc.retry_after is not None else retry.backoff(limited)
                if limited:
                    # A storm of 429s: back off even when the hint says "now" (or nothing).
                    hint = max(hint, retry.backoff(limited - 1))
                limited += 1
                # With no limiter to wait in, the reset is the account's next turn: beyond
                # max_wait it is too far for this call (Failover moves on at once, as with a
                # limiter, whose next acquire holds max_wait to the pause).
                too_far = limiter is None and max_wait is not None and hint > max_wait
                if too_far or waited + hint > retry.max_rate_limit_wait:
                    exc.attempts = attempt
                    if uncertain is not None:
                        raise self._still_unknown(uncertain, exc) from exc
                    raise
                waited += hint
                if limiter is not None:
                    try:
                        await limiter.pause(hint)
                    except SmsError as failed:  # a shared limiter's store failed
                        # Never "nothing sent" when an earlier attempt may have gone through:
                        # Failover would send it again.
                        self._name_limiter_error(failed, endpoint, attempt)
                        if uncertain is not None:
                            raise self._still_unknown(uncertain, failed) from failed
                        raise
                    delay = 0.0
                else:
                    delay = hint
            except SmsError as exc:
                retry = self.retry
                exc.attempts = attempt
                self._scrub(exc)
                last = exc
                safe = isinstance(exc, ConnectError) or (
                    (idempotent or deduplicated)
                    and isinstance(exc, OutcomeUnknown | ProviderUnavailable)
                )
                if not safe or retries >= retry.max_retries:
                    if uncertain is not None and not isinstance(exc, OutcomeUnknown):
                        raise self._still_unknown(uncertain, exc) from exc
                    raise
                if isinstance(exc, OutcomeUnknown):
                    resent = True
                    if not idempotent:
                        uncertain = exc
                elif isinstance(exc, ConnectError) and mark is not None and uncertain is None:
                    # A connection refused sent nothing: while the call backs off, nothing of
                    # it has left. (A provider's "try again" is an answer to a request that
                    # did arrive: eSMS's resend under its RequestId stays the safe path.)
                    mark.left = False
                delay = retry.backoff(retries)
                retries += 1
            self._hook_retry(endpoint, method, attempt, delay)
            if delay:
                if end is not None and asyncio.get_running_loop().time() + delay >= end:
                    raise self._out_of_time(endpoint, attempt, last, uncertain)
                await asyncio.sleep(delay)

    def _name_limiter_error(self, exc: SmsError, endpoint: str, attempts: int) -> None:
        """Name this call in the error of a shared limiter whose store failed."""
        exc.provider = exc.provider or self.provider
        exc.endpoint = exc.endpoint or endpoint
        exc.attempts = attempts

    def _attempt_timeout(self, left: float) -> aiohttp.ClientTimeout:
        """This attempt's timeouts when the call's deadline is nearer than ``timeout``."""
        total = self._timeout.total
        if total is not None and total <= left:
            return self._timeout
        return aiohttp.ClientTimeout(total=left, connect=min(self._connect_timeout, left / 2))

    def _no_turn(
        self,
        endpoint: str,
        attempt: int,
        wait: float,
        last: SmsError | None,
        uncertain: OutcomeUnknown | None,
    ) -> SmsError:
        """The account's turn is further away than ``max_wait`` (or the deadline): nothing of
        this attempt was sent, so ``RateLimited`` (Failover moves on), unless an earlier
        attempt may have been processed."""
        error = RateLimited(
            f"the account's next turn is {wait:.1f} s away, more than this call may wait "
            f"(max_wait / deadline); nothing was sent",
            retry_after=wait,
            provider=self.provider,
            endpoint=endpoint,
            attempts=attempt - 1,
        )
        return error if uncertain is None else self._still_unknown(uncertain, error)

    def _out_of_time(
        self,
        endpoint: str,
        attempt: int,
        last: SmsError | None,
        uncertain: OutcomeUnknown | None,
    ) -> SmsError:
        """The call's deadline came before another attempt could be made: the last attempt's
        error stands (what it proved about sending still holds)."""
        if uncertain is not None:
            return uncertain if last is None else self._still_unknown(uncertain, last)
        if last is not None:
            return last
        return RateLimited(
            "the call's deadline passed before its first attempt; nothing was sent",
            provider=self.provider,
            endpoint=endpoint,
            attempts=attempt - 1,
        )

    def _rate_limited(self, endpoint: str, response: Response) -> RateLimited:
        """An HTTP 429, whatever its body: not processed, so it is sent again after the
        provider's wait hint (read by the provider's ``retry_after``) or the backoff."""
        return RateLimited(
            "rate limit exceeded",
            retry_after=self._retry_after(response),
            provider=self.provider,
            code="429",
            http_status=429,
            endpoint=endpoint,
            attempts=response.attempt,
        )

    def _still_unknown(self, earlier: OutcomeUnknown, last: SmsError) -> OutcomeUnknown:
        """The error of a resent request whose last attempt was refused or failed before
        leaving, while an earlier attempt may have been processed: its outcome is unknown."""
        return OutcomeUnknown(
            f"an earlier attempt may have been processed ({earlier.message}); "
            f"the last attempt then failed: {type(last).__name__}: {last.message}",
            provider=self.provider,
            code=last.code,
            http_status=last.http_status,
            endpoint=last.endpoint or earlier.endpoint,
            attempts=last.attempts,
        )

    def _all_headers(self, headers: Mapping[str, str] | None) -> CIMultiDict[str] | None:
        """A call's headers for aiohttp, made once per mapping (the providers pass module
        constants): a ``CIMultiDict`` aiohttp takes without converting it again. Our own
        session has the transport's headers as its defaults, so this is the call's own (None
        for none); a borrowed session gets the transport's and the call's merged."""
        cached = self._merged.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        merged: CIMultiDict[str] | None
        if not self._owns_session:
            merged = CIMultiDict({**self._headers, **(headers or {})})
        else:
            merged = CIMultiDict(headers) if headers else None
        if len(self._merged) < _MERGED_HEADERS:
            self._merged[id(headers)] = (headers, merged)  # the mapping kept: its id stays its own
        return merged

    def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        data: BytesPayload | None,
        headers: Mapping[str, str] | None,
        middlewares: tuple[Any, ...] | None,
        timeout: aiohttp.ClientTimeout,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """The request of one attempt, not yet sent, where ``call``'s usual path does not apply
        (a borrowed session, a deadline's shorter timeout, a query, a GET): every keyword, and
        aiohttp's own timer where ``timeout`` has a total. The body's ``Content-Type`` goes
        among the headers too (unless the call's own headers name one): a borrowed session's
        default one would otherwise win."""
        if data is not None and (headers is None or _CONTENT_TYPE not in headers):
            headers = CIMultiDict(headers or ())
            headers[_CONTENT_TYPE] = data.content_type
        return session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            auto_decompress=False,
            middlewares=middlewares,  # None: the session's own (aiohttp's default)
        )

    def _failure(
        self, exc: BaseException, endpoint: str, method: str, attempt: int, started: float
    ) -> SmsError:
        """An aiohttp failure of one attempt as a redacted smsvn error: ``ConnectError`` when
        the request never left, ``OutcomeUnknown`` when it may have been processed."""
        if isinstance(exc, aiohttp.InvalidURL):
            return ValidationError(
                "the base URL is not valid", provider=self.provider, endpoint=endpoint
            )
        self._hook_response(endpoint, method, attempt, started, None, type(exc).__name__)
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
            return ConnectError(
                f"could not connect ({_describe(exc)}); the request was not sent",
                provider=self.provider,
                endpoint=endpoint,
                attempts=attempt,
            )
        return OutcomeUnknown(
            f"no answer after the request was sent ({_describe(exc)}); it may have been processed",
            provider=self.provider,
            endpoint=endpoint,
            attempts=attempt,
        )

    async def _read_capped(
        self, resp: aiohttp.ClientResponse, endpoint: str, attempt: int
    ) -> bytes:
        """The whole body, never holding more than ``max_body`` bytes of it, compressed or not.

        A declared length over the cap is refused unread; a chunked or compressed body is read
        with a running count and inflated here with a bound (aiohttp's own decompression is
        off for smsvn's requests: it would inflate a chunk of a zip bomb whole first).
        """
        cap = self._max_body
        length = resp.content_length
        if length is not None and length > cap:
            raise self._too_large(endpoint, resp.status, attempt)
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if length is not None and encoding in ("", "identity"):
            return await resp.read()  # at most ``length`` bytes: the parser stops there
        raw = bytearray()
        async for chunk in resp.content.iter_any():
            raw += chunk
            if len(raw) > cap:
                raise self._too_large(endpoint, resp.status, attempt)
        if encoding in ("", "identity"):
            return bytes(raw)
        if encoding in ("gzip", "x-gzip", "deflate"):
            # 32 + 15: a gzip or zlib header, detected; raw deflate (-15) as some servers send.
            for wbits in (47, -15):
                inflater = zlib.decompressobj(wbits)
                try:
                    body = inflater.decompress(bytes(raw), cap + 1)
                except zlib.error:
                    continue
                if len(body) > cap or inflater.unconsumed_tail:
                    raise self._too_large(endpoint, resp.status, attempt)
                return body
        raise MalformedResponse(
            f"unexpected answer (Content-Encoding {encoding[:40]!r} cannot be read)",
            provider=self.provider,
            endpoint=endpoint,
            http_status=resp.status,
            attempts=attempt,
        )

    # -- observability -----------------------------------------------------------------------

    def _hook_response(
        self,
        endpoint: str,
        method: str,
        attempt: int,
        started: float,
        status: int | None,
        error: str | None,
    ) -> None:
        # 0.0: nobody was observing when the attempt started (debug logging turned on since).
        elapsed = time.perf_counter() - started if started else 0.0
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "%s %s: attempt %d -> %s in %.1f ms",
                self.provider,
                endpoint,
                attempt,
                status if error is None else error,
                elapsed * 1000,
            )
        hooks = self._hooks
        if hooks is not None and hooks.on_response is not None:
            hooks.on_response(
                AttemptInfo(
                    provider=self.provider,
                    endpoint=endpoint,
                    method=method,
                    attempt=attempt,
                    status=status,
                    elapsed=elapsed,
                    error=error,
                )
            )

    def _hook_retry(self, endpoint: str, method: str, attempt: int, delay: float) -> None:
        _log.info(
            "%s %s: attempt %d failed; retrying in %.2f s", self.provider, endpoint, attempt, delay
        )
        hooks = self._hooks
        if hooks is not None and hooks.on_retry is not None:
            hooks.on_retry(
                AttemptInfo(
                    provider=self.provider,
                    endpoint=endpoint,
                    method=method,
                    attempt=attempt,
                    delay=delay,
                )
            )


def _no_hint(response: Response) -> float | None:
    """A provider whose 429 carries no wait hint: the backoff applies."""
    return None


def _describe(exc: BaseException) -> str:
    """A URL-free description of an aiohttp / OS failure."""
    if isinstance(exc, _Dropped):
        return str(exc)  # the name of the aiohttp error it stands for, not "_Dropped"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"{type(exc).__name__} to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, TimeoutError):
        return f"timed out: {type(exc).__name__}"
    return type(exc).__name__


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds from now: delay-seconds (``"120"``, also ``"0.5"``) or
    an HTTP-date (RFC 9110 10.2.3); None when absent or unreadable, so the backoff applies."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
