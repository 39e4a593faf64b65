"""The simulator: one aiohttp.web server on 127.0.0.1 serving SpeedSMS, eSMS and Fibo.

``Sandbox`` owns the server, the injected faults and the public view of what happened;
``Engine`` owns the accounts, the outbox, delivery scheduling and the HTTP calls the simulator
makes back to callback URLs. Each provider module (``speedsms``, ``esms``, ``fibo``) owns its
wire format and asks the engine to charge, record and schedule.

Delivery rules (see ``smsvn.sandbox._base``): a number ending ``0000`` fails permanently, one
ending ``0001`` fails temporarily once and is delivered one ``delivery_delay`` later, every other
number is delivered ``delivery_delay`` seconds after the send was accepted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TextIO, overload

import aiohttp
from aiohttp import web
from aiohttp.log import access_logger
from yarl import URL

from smsvn.limits import RateLimit
from smsvn.sandbox import esms as _esms
from smsvn.sandbox import fibo as _fibo
from smsvn.sandbox import speedsms as _speedsms
from smsvn.sandbox._base import Batch, Handler, Outbox, Route, Simulator, Stats
from smsvn.sandbox.faults import Faults

if TYPE_CHECKING:
    from smsvn.providers.esms import ESMS
    from smsvn.providers.fibo import Fibo
    from smsvn.providers.speedsms import SpeedSMS

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_PRICES",
    "DEFAULT_SPEEDSMS_RATE_LIMIT",
    "Engine",
    "Sandbox",
    "serve",
]

DEFAULT_SPEEDSMS_RATE_LIMIT: Final = RateLimit(requests=60, period=60.0)
"""SpeedSMS's documented limit: 60 requests in any 60 seconds per access token."""
DEFAULT_BALANCES: Final[Mapping[str, float]] = {
    "speedsms": 1_000_000_000.0,
    "esms": 1_000_000_000.0,
    "fibo": 10_000_000.0,
}
"""Starting balances: VND for SpeedSMS and eSMS, messages for Fibo (enough for 1M sends)."""
DEFAULT_PRICES: Final[Mapping[str, float]] = {
    "speedsms": 250.0,
    "speedsms_voice": 400.0,
    "esms": 350.0,
    "esms_voice": 450.0,
    "fibo": 1.0,
}
"""Price of one SMS segment (or one call) per provider; Fibo counts messages, not VND."""
SHUTDOWN_TIMEOUT: Final = 0.25
"""Seconds ``close()`` lets in-flight requests finish before cancelling them."""
CALLBACK_TIMEOUT: Final = 5.0
"""Seconds one callback attempt may wait to connect, and then for each read."""

_PROVIDERS: Final = ("speedsms", "esms", "fibo")
_GARBAGE: Final = b'\xff\xfe<?xml {"status": \x00garbage\x9c</string'
_UNAVAILABLE: Final = (
    b"<!DOCTYPE html>\r\n<html><head><title>503 Service Unavailable</title></head>\r\n"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    b"request. Please try again later.</p></body></html>\r\n"
)
_DRIBBLE_CHUNK: Final = 4


class Engine:
    """Accounts, the outbox, delivery scheduling and outgoing callbacks of one sandbox."""

    def __init__(
        self,
        *,
        delivery_delay: float,
        record_outbox: bool,
        balances: Mapping[str, float],
        prices: Mapping[str, float],
        seed: int,
        callback_retry_delay: float,
    ) -> None:
        self.delivery_delay = delivery_delay
        self.record_outbox = record_outbox
        self.balances = dict(balances)
        self.prices = dict(prices)
        self.callback_retry_delay = callback_retry_delay
        self.outbox = Outbox()
        self.stats = Stats()
        self._ids = random.Random(seed * 7919 + 17)
        self._serial = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._settled_at = 0.0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the running loop and open the callback session."""
        self._closed = False
        self._loop = loop
        self._session = aiohttp.ClientSession(
            # Per-socket timeouts, not a total: waiting for one of the pool's connections
            # behind a burst of thousands of reports is not the receiver's failure.
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CALLBACK_TIMEOUT, sock_read=CALLBACK_TIMEOUT
            ),
            connector=aiohttp.TCPConnector(limit=32),
        )

    async def close(self) -> None:
        """Cancel every pending delivery and callback, then close the callback session."""
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the sandbox runs in (only once started)."""
        if self._loop is None:
            raise RuntimeError("the sandbox is not started")
        return self._loop

    def now(self) -> float:
        """The event loop's clock (delivery times are on it)."""
        return self.loop.time()

    async def idle(self) -> None:
        """Wait until no delivery is pending and no callback is in flight."""
        while True:
            last = max((h.when() for h in self._timers.values()), default=self._settled_at)
            wait = max(last, self._settled_at) - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            elif self._timers:
                await asyncio.sleep(0)
            elif self._tasks:
                await asyncio.wait(list(self._tasks))
            else:
                return

    # -- money and ids ---------------------------------------------------------------------

    def charge(self, provider: str, amount: float) -> bool:
        """Take ``amount`` from ``provider``'s balance; False (nothing taken) when too little."""
        balance = self.balances[provider]
        if amount > balance + 1e-9:
            return False
        self.balances[provider] = balance - amount
        return True

    def guid(self) -> str:
        """A GUID from the seeded generator (reproducible ids)."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def serial(self) -> int:
        """The next number of a sandbox-wide sequence."""
        return next(self._serial)

    # -- accepting and delivering ----------------------------------------------------------

    def times(self, start: float | None = None) -> tuple[float, float]:
        """(due, retry_at) loop times for a batch starting now, or at Unix time ``start``."""
        now = self.now()
        if start is not None:
            now += max(0.0, start - time.time())
        due = now + self.delivery_delay
        return due, due + self.delivery_delay

    def accept(self, batch: Batch) -> None:
        """Record an accepted batch: the outbox (unless off), the counters, the settle time."""
        if self.record_outbox:
            self.outbox.add(batch)
        self.stats.accepted[batch.provider] += len(batch.numbers)
        if not batch.sandbox and batch.retry_at > self._settled_at:
            self._settled_at = batch.retry_at

    def schedule(self, when: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` at loop time ``when`` (cancelled if the sandbox closes first)."""
        if self._closed:
            return
        tid = self.serial()
        self._timers[tid] = self.loop.call_at(when, self._fire, tid, job)

    def spawn(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` now as a tracked task (cancelled if the sandbox closes first)."""
        if self._closed:
            return
        task = self.loop.create_task(self._guarded(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fire(self, tid: int, job: Callable[[], Awaitable[None]]) -> None:
        """A timer went off: forget its handle and run its job as a tracked task."""
        self._timers.pop(tid, None)
        self.spawn(job)

    async def _guarded(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run a job so that no error escapes as an unretrieved task exception."""
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # counted, never left as an unretrieved task exception
            self.stats.callback_failures += 1

    async def callback(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        attempts: int = 1,
    ) -> bool:
        """Call a callback URL until it answers 200, at most ``attempts`` times, backing off
        ``callback_retry_delay`` x 2^n between tries; True when one got 200."""
        for attempt in range(attempts):
            if await self.call(method, url, params=params, body=body) == 200:
                return True
            if attempt + 1 < attempts:
                await asyncio.sleep(self.callback_retry_delay * 2**attempt)
        return False

    async def call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> int:
        """One counted callback attempt: the HTTP status, or 0 when there was no answer.
        ``params`` replace same-named parameters already in the URL; ``body`` goes as JSON."""
        session = self._session
        stats = self.stats
        stats.callback_attempts += 1
        status = 0
        if session is not None:
            headers = {"Content-Type": "application/json"} if body is not None else None
            try:
                target = URL(url)
                if params:
                    target = target.update_query(params)
                async with session.request(method, target, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                status = 0
        if status == 200:
            stats.callbacks_delivered += 1
        else:
            stats.callback_failures += 1
        return status


class Sandbox:
    """A faithful local fake of SpeedSMS, eSMS and Fibo on one aiohttp.web server.

    Use it as an async context manager (or ``start()`` / ``close()``) and point clients at
    ``speedsms_url``, ``esms_url`` / ``esms_voice_url`` and ``fibo_url`` with the test
    credentials below, or let ``client(name)`` build one. ``outbox`` is the ground truth of what
    was accepted, ``requests`` counts requests per (provider, route), ``stats`` counts 429s,
    faults and callbacks, and ``faults`` injects failures.

    ``keepalive_timeout`` (seconds; aiohttp's default when None) is how long the server keeps an
    idle connection open: a tiny one makes clients meet stale pooled connections.
    """

    speedsms_token: Final = "sandbox-speedsms-token"
    speedsms_sender: Final = "SMSVN"
    esms_api_key: Final = "SANDBOXESMSAPIKEY"
    esms_secret_key: Final = "SANDBOXESMSSECRET"
    esms_brandname: Final = "SMSVN"
    esms_ad_brandname: Final = "SMSVN.QC"
    esms_call_template_id: Final = "1001"
    esms_call_record_id: Final = "2001"
    fibo_client_no: Final = "CL0000000001"
    fibo_client_pass: Final = "sandbox-fibo-pass"
    fibo_sender: Final = "SMSVN"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speedsms_rate_limit: RateLimit | None = DEFAULT_SPEEDSMS_RATE_LIMIT,
        delivery_delay: float = 0.05,
        latency: float = 0.0,
        speedsms_webhook_url: str | None = None,
        balances: Mapping[str, float] | None = None,
        prices: Mapping[str, float] | None = None,
        record_outbox: bool = True,
        seed: int = 0,
        access_log: bool = False,
        callback_retry_delay: float = 0.02,
        keepalive_timeout: float | None = None,
    ) -> None:
        if delivery_delay < 0 or latency < 0 or callback_retry_delay < 0:
            raise ValueError("delays must not be negative")
        if keepalive_timeout is not None and keepalive_timeout < 0:
            raise ValueError("keepalive_timeout must not be negative")
        unknown = set(balances or ()) - set(DEFAULT_BALANCES)
        unknown |= set(prices or ()) - set(DEFAULT_PRICES)
        if unknown:
            raise ValueError(f"unknown balance or price keys: {sorted(unknown)}")
        self.host = host
        self.latency = latency
        self.keepalive_timeout = keepalive_timeout
        self._port = port
        self._access_log = access_log
        self._engine = Engine(
            delivery_delay=delivery_delay,
            record_outbox=record_outbox,
            balances={**DEFAULT_BALANCES, **(balances or {})},
            prices={**DEFAULT_PRICES, **(prices or {})},
            seed=seed,
            callback_retry_delay=callback_retry_delay,
        )
        self.requests: Counter[tuple[str, str]] = Counter()
        self._speedsms = _speedsms.SpeedSMSSimulator(
            self._engine,
            token=self.speedsms_token,
            senders=(self.speedsms_sender,),
            rate_limit=speedsms_rate_limit,
            webhook_url=speedsms_webhook_url,
        )
        self._esms = _esms.ESMSSimulator(
            self._engine,
            api_key=self.esms_api_key,
            secret_key=self.esms_secret_key,
            brandnames={self.esms_brandname: 2, self.esms_ad_brandname: 1},
            call_templates={self.esms_call_template_id: 2},
            call_records=(self.esms_call_record_id,),
        )
        self._fibo = _fibo.FiboSimulator(
            self._engine,
            client_no=self.fibo_client_no,
            client_pass=self.fibo_client_pass,
            senders=(self.fibo_sender,),
        )
        self._simulators: tuple[Simulator, ...] = (self._speedsms, self._esms, self._fibo)
        self.faults = Faults(
            random.Random(seed),
            {sim.provider: frozenset(r.name for r in sim.routes()) for sim in self._simulators},
        )
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> Self:
        """Bind the server (to ``port``, or a free one when 0) and start serving."""
        if self._closed:
            raise RuntimeError("a closed sandbox cannot be started again")
        if self._runner is not None:
            return self
        self._closing = asyncio.Event()
        self._engine.start(asyncio.get_running_loop())
        app = web.Application()
        for sim in self._simulators:
            for route in sim.routes():
                app.router.add_route(
                    route.method, route.path, self._wrap(sim.provider, route, sim.too_many)
                )
            for method, path, handler in sim.fallbacks():
                app.router.add_route(method, path, handler)
        options: dict[str, Any] = {}
        if self.keepalive_timeout is not None:
            options["keepalive_timeout"] = self.keepalive_timeout
        runner = web.AppRunner(
            app,
            access_log=access_logger if self._access_log else None,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            **options,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._engine.close()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        return self

    async def close(self) -> None:
        """Stop serving: end hung requests, cancel deliveries and callbacks, free the port.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._closing is not None:
            self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._engine.close()

    async def settle(self, within: float = 10.0) -> None:
        """Wait until every accepted message reached its final state and every callback
        finished (TimeoutError after ``within`` seconds: a far ``SendDate`` never settles)."""
        async with asyncio.timeout(within):
            await self._engine.idle()

    # -- where and who ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def speedsms_url(self) -> str:
        """SpeedSMS's base URL (give it to ``SpeedSMS(base_url=...)``)."""
        return self.url + _speedsms.PREFIX

    @property
    def esms_url(self) -> str:
        """eSMS's SMS base URL (``ESMS(base_url=...)``)."""
        return self.url + _esms.PREFIX

    @property
    def esms_voice_url(self) -> str:
        """eSMS's voice base URL (``ESMS(voice_base_url=...)``)."""
        return self.url + _esms.VOICE_PREFIX

    @property
    def fibo_url(self) -> str:
        """Fibo's base URL (``Fibo(base_url=...)``; the default paths apply under it)."""
        return self.url + _fibo.PREFIX

    @property
    def speedsms_webhook_url(self) -> str | None:
        """Where SpeedSMS delivery reports and inbound SMS are POSTed (settable)."""
        return self._speedsms.webhook_url

    @speedsms_webhook_url.setter
    def speedsms_webhook_url(self, url: str | None) -> None:
        """Point SpeedSMS's delivery reports and inbound SMS elsewhere (None: off)."""
        self._speedsms.webhook_url = url

    @property
    def speedsms_rate_limit(self) -> RateLimit | None:
        """The SpeedSMS limit the server enforces (None = none)."""
        return self._speedsms.rate_limit

    @property
    def delivery_delay(self) -> float:
        """Seconds from acceptance to the first delivery attempt."""
        return self._engine.delivery_delay

    # -- what happened ---------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        """Every accepted message, one record per recipient (empty with record_outbox=False)."""
        return self._engine.outbox

    @property
    def stats(self) -> Stats:
        """Counters: accepted recipients, 429s, duplicates, faults, callback attempts."""
        return self._engine.stats

    def balance(self, provider: str) -> float:
        """``provider``'s balance now (VND; messages for Fibo)."""
        return self._engine.balances[_provider(provider)]

    def set_balance(self, provider: str, amount: float) -> None:
        """Set ``provider``'s balance, say to 0 to see "balance not enough"."""
        self._engine.balances[_provider(provider)] = float(amount)

    async def inbound_sms(self, phone: str, content: str) -> int:
        """POST an inbound SMS (a reply) to the SpeedSMS webhook; returns the HTTP status, or
        0 when the webhook could not be reached."""
        return await self._speedsms.inbound(phone, content)

    # -- clients ---------------------------------------------------------------------------

    @overload
    def client(self, name: Literal["speedsms"], **overrides: Any) -> SpeedSMS: ...

    @overload
    def client(self, name: Literal["esms"], **overrides: Any) -> ESMS: ...

    @overload
    def client(self, name: Literal["fibo"], **overrides: Any) -> Fibo: ...

    def client(self, name: str, **overrides: Any) -> SpeedSMS | ESMS | Fibo:
        """A client of ``name`` pointed at this sandbox with its credentials and sender;
        SpeedSMS gets the sandbox's rate limit, eSMS and Fibo none; ``overrides`` win (also
        ``token``, ``api_key``, ``secret_key``, ``client_no``, ``client_pass``)."""
        if name == "speedsms":
            from smsvn.providers.speedsms import SpeedSMS

            token = overrides.pop("token", self.speedsms_token)
            options: dict[str, Any] = {
                "base_url": self.speedsms_url,
                "rate_limit": self.speedsms_rate_limit,
                "sms_type": 3,
                "sender": self.speedsms_sender,
            }
            return SpeedSMS(token, **{**options, **overrides})
        if name == "esms":
            from smsvn.providers.esms import ESMS

            api_key = overrides.pop("api_key", self.esms_api_key)
            secret_key = overrides.pop("secret_key", self.esms_secret_key)
            options = {
                "base_url": self.esms_url,
                "voice_base_url": self.esms_voice_url,
                "rate_limit": None,
                "sms_type": 2,
                "brandname": self.esms_brandname,
            }
            return ESMS(api_key, secret_key, **{**options, **overrides})
        if name == "fibo":
            from smsvn.providers.fibo import Fibo

            client_no = overrides.pop("client_no", self.fibo_client_no)
            client_pass = overrides.pop("client_pass", self.fibo_client_pass)
            options = {"base_url": self.fibo_url, "rate_limit": None, "sender": self.fibo_sender}
            return Fibo(client_no, client_pass, **{**options, **overrides})
        raise ValueError(f"unknown provider {name!r}; one of {list(_PROVIDERS)}")

    def describe(self) -> str:
        """The URLs, credentials and rules, as ``serve`` prints them."""
        limit = self.speedsms_rate_limit
        rate = "off" if limit is None else f"{limit.requests} requests / {limit.period:g} s"
        return "\n".join(
            (
                f"smsvn sandbox listening on {self.url}",
                "",
                f"SpeedSMS  base_url={self.speedsms_url}",
                f"          token={self.speedsms_token}  sender={self.speedsms_sender}"
                f"  rate limit: {rate}",
                f"eSMS      base_url={self.esms_url}",
                f"          voice_base_url={self.esms_voice_url}",
                f"          api_key={self.esms_api_key}  secret_key={self.esms_secret_key}",
                f"          brandname={self.esms_brandname} (advertising: "
                f"{self.esms_ad_brandname})  call template={self.esms_call_template_id}"
                f" (2 variables)  recording={self.esms_call_record_id}",
                f"Fibo      base_url={self.fibo_url}",
                f"          client_no={self.fibo_client_no}  client_pass={self.fibo_client_pass}"
                f"  sender={self.fibo_sender}",
                "",
                f"Delivery after {self.delivery_delay:g} s: numbers ending 0000 fail, 0001 fail "
                "once then arrive, the rest arrive.",
            )
        )

    # -- serving ---------------------------------------------------------------------------

    def _wrap(
        self, provider: str, route: Route, too_many: Callable[[float], web.Response]
    ) -> Handler:
        """The route's handler with request counting, global latency and fault injection."""
        key = (provider, route.name)
        name = route.name
        requests = self.requests
        faults = self.faults
        handler = route.handler

        async def handle(request: web.Request) -> web.StreamResponse:
            """Count the request, then answer it directly or through latency and faults."""
            requests[key] += 1
            if faults or self.latency:
                return await self._misbehave(request, provider, name, handler, too_many)
            return await handler(request)

        return handle

    async def _misbehave(
        self,
        request: web.Request,
        provider: str,
        route: str,
        handler: Handler,
        too_many: Callable[[float], web.Response],
    ) -> web.StreamResponse:
        """Answer one request through whatever faults fire for it."""
        extra, fault = self.faults.select(provider, route) if self.faults else (0.0, None)
        delay = self.latency + extra
        kind = None if fault is None else fault.kind
        if fault is not None:
            self.stats.faults[fault.kind] += 1
            if extra:
                self.stats.faults["latency"] += 1
        elif extra:
            self.stats.faults["latency"] += 1
        if kind == "drop_before":
            return _drop(request)
        if kind == "hang":
            return await self._hang(request)
        response: web.StreamResponse
        if kind == "status_5xx":
            response = web.Response(status=503, body=_UNAVAILABLE, content_type="text/html")
        elif kind == "rate_limit":
            assert fault is not None
            self.stats.rate_limited += 1
            response = too_many(fault.delay)
        else:
            response = await handler(request)
        if delay > 0:
            await asyncio.sleep(delay)
        if kind is None or kind in ("status_5xx", "rate_limit"):
            return response
        if kind == "drop_after":
            return _drop(request)
        assert fault is not None
        body = _body_of(response)
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        if kind == "garbage":
            return web.Response(status=200, body=_GARBAGE, headers={"Content-Type": content_type})
        if kind == "empty":
            return web.Response(status=200, body=b"", headers={"Content-Type": content_type})
        if kind == "truncate":
            return await self._stream(request, response.status, content_type, body, cut=True)
        return await self._stream(
            request, response.status, content_type, body, cut=False, pause=fault.delay
        )

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """Never answer: wait until the client gives up (this handler is then cancelled) or
        the sandbox closes (then drop the connection)."""
        assert self._closing is not None
        await self._closing.wait()
        return _drop(request)

    async def _stream(
        self,
        request: web.Request,
        status: int,
        content_type: str,
        body: bytes,
        *,
        cut: bool,
        pause: float = 0.0,
    ) -> web.StreamResponse:
        """Send ``body`` with its full Content-Length, either only its first half followed by
        a closed connection (``cut``) or a few bytes at a time ``pause`` seconds apart."""
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        response.content_length = len(body)
        response.force_close()
        closing = self._closing
        try:
            await response.prepare(request)
            if cut:
                await response.write(body[: len(body) // 2])
                _drop(request)
                return response
            for start in range(0, len(body), _DRIBBLE_CHUNK):
                if closing is not None and closing.is_set():
                    _drop(request)
                    return response
                await response.write(body[start : start + _DRIBBLE_CHUNK])
                await asyncio.sleep(pause)
            await response.write_eof()
        except ConnectionError:
            _drop(request)
        return response


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; the returned response is never sent (aiohttp
    quietly ignores writing to a closed connection)."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response()


def _body_of(response: web.StreamResponse) -> bytes:
    """The bytes of a handler's answer (every simulator answer is a bytes-bodied Response)."""
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        return response.body
    return b""


def _provider(name: str) -> str:
    """A provider name checked against the three simulated ones."""
    if name not in _PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; one of {list(_PROVIDERS)}")
    return name


async def serve(
    port: int = 8787,
    *,
    host: str = "127.0.0.1",
    speedsms_rate_limit: RateLimit | None = DEFAULT_SPEEDSMS_RATE_LIMIT,
    delivery_delay: float = 0.05,
    latency: float = 0.0,
    speedsms_webhook_url: str | None = None,
    access_log: bool = False,
    out: TextIO | None = None,
) -> None:
    """Run a sandbox until cancelled (the ``smsvn sandbox`` command), printing its URLs and
    credentials to ``out`` (stdout by default) once it listens."""
    sandbox = Sandbox(
        host=host,
        port=port,
        speedsms_rate_limit=speedsms_rate_limit,
        delivery_delay=delivery_delay,
        latency=latency,
        speedsms_webhook_url=speedsms_webhook_url,
        access_log=access_log,
    )
    async with sandbox:
        stream = out if out is not None else sys.stdout
        print(sandbox.describe(), file=stream, flush=True)
        await asyncio.Event().wait()
