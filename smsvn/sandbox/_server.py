"""The simulator: one aiohttp.web server on 127.0.0.1 serving every registered provider.

``Sandbox`` owns the server, the injected faults and the public view of what happened; it
builds one simulator per provider of ``smsvn.providers`` (each entry names its class as
``"module:Class"``, see ``smsvn.sandbox._simulator``), all over one ``Engine``, which owns the
accounts, the outbox, delivery scheduling and the HTTP calls the simulator makes back to
callback URLs. Each simulator owns its wire format and asks the engine to charge, record and
schedule.

Delivery rules (see ``smsvn.sandbox._base``): a number ending ``0000`` fails permanently, one
ending ``0001`` fails temporarily once and is delivered one ``delivery_delay`` later, every other
number is delivered ``delivery_delay`` seconds after the send was accepted.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Self, TextIO, overload

from aiohttp import web
from aiohttp.log import access_logger

from smsvn import providers
from smsvn._checks import checked_seconds
from smsvn.errors import ValidationError
from smsvn.limits import RateLimit
from smsvn.providers import Provider
from smsvn.providers._base import BaseClient
from smsvn.providers.esms import ESMS
from smsvn.providers.fibo import Fibo
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import esms as _esms
from smsvn.sandbox import fibo as _fibo
from smsvn.sandbox import speedsms as _speedsms
from smsvn.sandbox._base import Handler, Outbox, Route, Stats
from smsvn.sandbox._engine import Engine
from smsvn.sandbox._simulator import Settings, Simulator, load
from smsvn.sandbox.faults import Faults
from smsvn.sandbox.speedsms import SpeedSMSSimulator

__all__ = [
    "DEFAULT_BALANCES",
    "DEFAULT_PRICES",
    "DEFAULT_SPEEDSMS_RATE_LIMIT",
    "Sandbox",
    "serve",
]


def _simulator_classes(entries: Iterable[Provider]) -> dict[str, type[Simulator]]:
    """Each provider's simulator class by provider name, imported now; a class must serve the
    provider that names it."""
    classes: dict[str, type[Simulator]] = {}
    for entry in entries:
        cls = load(entry.simulator)
        if cls.provider != entry.name:
            raise ValueError(f"{entry.simulator} simulates {cls.provider!r}, not {entry.name!r}")
        classes[entry.name] = cls
    return classes


def _defaults(classes: Mapping[str, type[Simulator]]) -> tuple[dict[str, float], dict[str, float]]:
    """The simulators' starting balances (by provider) and prices (by price key, each key
    belonging to one provider)."""
    balances: dict[str, float] = {}
    prices: dict[str, float] = {}
    for name, cls in classes.items():
        balances[name] = cls.default_balance
        for key, price in cls.default_prices.items():
            if key in prices:
                raise ValueError(f"the price key {key!r} of {name!r} is another provider's")
            prices[key] = price
    return balances, prices


DEFAULT_SPEEDSMS_RATE_LIMIT: Final = _speedsms.DEFAULT_RATE_LIMIT
"""SpeedSMS's documented limit: 60 requests in any 60 seconds per access token."""
_BUILT_IN_BALANCES, _BUILT_IN_PRICES = _defaults(_simulator_classes(providers.all_providers()))
DEFAULT_BALANCES: Final[Mapping[str, float]] = _BUILT_IN_BALANCES
"""Starting balances of the providers registered when ``smsvn.sandbox`` was first imported (the
built-in ones): VND for SpeedSMS and eSMS, messages for Fibo (enough for 1M sends)."""
DEFAULT_PRICES: Final[Mapping[str, float]] = _BUILT_IN_PRICES
"""Price of one SMS segment (``"speedsms"``) or one call (``"speedsms_voice"``) by price key, for
the same providers; Fibo counts messages, not VND."""
_HIGHEST_PORT: Final = 65535
SHUTDOWN_TIMEOUT: Final = 0.25
"""Seconds ``close()`` lets in-flight requests finish before cancelling them."""

_GARBAGE: Final = b'\xff\xfe<?xml {"status": \x00garbage\x9c</string'
_UNAVAILABLE: Final = (
    b"<!DOCTYPE html>\r\n<html><head><title>503 Service Unavailable</title></head>\r\n"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service your "
    b"request. Please try again later.</p></body></html>\r\n"
)
_DRIBBLE_CHUNK: Final = 4


def _delay(value: object, name: str) -> float:
    """A delay in seconds, from 0 to a year (``checked_seconds``); a negative one is refused
    in those words, which say what is wrong more plainly than a range."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ValidationError(f"{name} must not be negative", provider="sandbox")
    return checked_seconds(value, name, "sandbox", zero=True)


class Sandbox:
    """A faithful local fake of SpeedSMS, eSMS, Fibo (and any other registered provider) on
    one aiohttp.web server.

    Use it as an async context manager (or ``start()`` / ``close()``) and let ``client(name)``
    build a client pointed at it, or point clients at ``client_options(name)`` (for the built-in
    providers also ``speedsms_url``, ``esms_url`` / ``esms_voice_url`` and ``fibo_url`` with the
    test credentials below). ``outbox`` is the ground truth of what was accepted, ``requests``
    counts requests per (provider, route), ``stats`` counts 429s, faults and callbacks, and
    ``faults`` injects failures. The providers are those registered when it is made.

    ``keepalive_timeout`` (seconds; aiohttp's default when None) is how long the server keeps an
    idle connection open: a tiny one makes clients meet stale pooled connections.
    """

    speedsms_token: Final = _speedsms.TOKEN
    speedsms_sender: Final = _speedsms.SENDER
    esms_api_key: Final = _esms.API_KEY
    esms_secret_key: Final = _esms.SECRET_KEY
    esms_brandname: Final = _esms.BRANDNAME
    esms_ad_brandname: Final = _esms.AD_BRANDNAME
    esms_call_template_id: Final = _esms.CALL_TEMPLATE_ID
    esms_call_record_id: Final = _esms.CALL_RECORD_ID
    fibo_client_no: Final = _fibo.CLIENT_NO
    fibo_client_pass: Final = _fibo.CLIENT_PASS
    fibo_sender: Final = _fibo.SENDER

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
        # ValidationError (a ValueError) here, not an OverflowError from bind() or a TypeError
        # from the first answer's sleep.
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= _HIGHEST_PORT:
            raise ValidationError(
                f"port must be an int from 0 (any free port) to {_HIGHEST_PORT}", provider="sandbox"
            )
        delivery_delay = _delay(delivery_delay, "delivery_delay")
        latency = _delay(latency, "latency")
        callback_retry_delay = _delay(callback_retry_delay, "callback_retry_delay")
        if keepalive_timeout is not None:
            keepalive_timeout = _delay(keepalive_timeout, "keepalive_timeout")
        entries = {entry.name: entry for entry in providers.all_providers()}
        classes = _simulator_classes(entries.values())
        default_balances, default_prices = _defaults(classes)
        unknown = set(balances or ()) - set(default_balances)
        unknown |= set(prices or ()) - set(default_prices)
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
            balances={**default_balances, **(balances or {})},
            prices={**default_prices, **(prices or {})},
            seed=seed,
            callback_retry_delay=callback_retry_delay,
        )
        self.requests: Counter[tuple[str, str]] = Counter()
        # The provider-specific keyword arguments, as each provider's simulator settings.
        settings = {
            "speedsms": Settings(rate_limit=speedsms_rate_limit, webhook_url=speedsms_webhook_url)
        }
        self._entries = entries
        self._simulators: dict[str, Simulator] = {
            name: cls(self._engine, settings.get(name, Settings())) for name, cls in classes.items()
        }
        self.faults = Faults(
            random.Random(seed),
            {
                name: frozenset(r.name for r in sim.routes())
                for name, sim in self._simulators.items()
            },
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
        for name, sim in self._simulators.items():
            for route in sim.routes():
                app.router.add_route(
                    route.method, route.path, self._wrap(name, route, sim.too_many)
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

    def client_options(self, name: str) -> dict[str, Any]:
        """The keyword arguments of a ``name`` client pointed at this sandbox: its credentials
        by name, its base URL keywords, its sending defaults and its rate limit (a new dict)."""
        return self._simulator(name).client_options(self.url)

    def base_url(self, name: str) -> str:
        """``name``'s base URL on this sandbox (its client's ``base_url``)."""
        return str(self.client_options(name)["base_url"])

    @property
    def speedsms_url(self) -> str:
        """SpeedSMS's base URL (give it to ``SpeedSMS(base_url=...)``)."""
        return self.base_url("speedsms")

    @property
    def esms_url(self) -> str:
        """eSMS's SMS base URL (``ESMS(base_url=...)``)."""
        return self.base_url("esms")

    @property
    def esms_voice_url(self) -> str:
        """eSMS's voice base URL (``ESMS(voice_base_url=...)``)."""
        return str(self.client_options("esms")["voice_base_url"])

    @property
    def fibo_url(self) -> str:
        """Fibo's base URL (``Fibo(base_url=...)``; the default paths apply under it)."""
        return self.base_url("fibo")

    @property
    def speedsms_webhook_url(self) -> str | None:
        """Where SpeedSMS delivery reports and inbound SMS are POSTed (settable)."""
        return self._speedsms_simulator().webhook_url

    @speedsms_webhook_url.setter
    def speedsms_webhook_url(self, url: str | None) -> None:
        """Point SpeedSMS's delivery reports and inbound SMS elsewhere (None: off)."""
        self._speedsms_simulator().webhook_url = url

    @property
    def speedsms_rate_limit(self) -> RateLimit | None:
        """The SpeedSMS limit the server enforces (None = none)."""
        return self._speedsms_simulator().rate_limit

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
        """``provider``'s balance now, in its unit (VND; messages for Fibo)."""
        self._simulator(provider)
        return self._engine.balances[provider]

    def set_balance(self, provider: str, amount: float) -> None:
        """Set ``provider``'s balance, say to 0 to see "balance not enough"."""
        self._simulator(provider)
        self._engine.balances[provider] = float(amount)

    async def inbound_sms(self, phone: str, content: str) -> int:
        """POST an inbound SMS (a reply) to the SpeedSMS webhook; returns the HTTP status, or
        0 when the webhook could not be reached."""
        return await self._speedsms_simulator().inbound(phone, content)

    # -- clients ---------------------------------------------------------------------------

    @overload
    def client(self, name: Literal["speedsms"], **overrides: Any) -> SpeedSMS: ...

    @overload
    def client(self, name: Literal["esms"], **overrides: Any) -> ESMS: ...

    @overload
    def client(self, name: Literal["fibo"], **overrides: Any) -> Fibo: ...

    @overload
    def client(self, name: str, **overrides: Any) -> BaseClient: ...

    def client(self, name: str, **overrides: Any) -> BaseClient:
        """A client of ``name`` pointed at this sandbox with its credentials and sending
        defaults (``client_options``: SpeedSMS gets the sandbox's rate limit, eSMS and Fibo
        none); ``overrides`` win, credentials included (``token``, ``api_key``, ...)."""
        options = {**self.client_options(name), **overrides}
        entry = self._entries[name]
        missing = [c.name for c in entry.credentials if c.name not in options]
        if missing:
            raise ValueError(f"no {', '.join(missing)} for the {entry.title} client")
        credentials = [options.pop(c.name) for c in entry.credentials]
        return entry.client(*credentials, **options)

    def describe(self) -> str:
        """The URLs, credentials and rules, as ``serve`` prints them."""
        lines = [f"smsvn sandbox listening on {self.url}", ""]
        for name, sim in self._simulators.items():
            title = self._entries[name].title
            for n, line in enumerate(sim.describe(self.url)):
                lines.append(f"{title if n == 0 else '':<9} {line}")
        lines.append("")
        lines.append(
            f"Delivery after {self.delivery_delay:g} s: numbers ending 0000 fail, 0001 fail "
            "once then arrive, the rest arrive."
        )
        return "\n".join(lines)

    def _simulator(self, name: str) -> Simulator:
        """The simulator of provider ``name``, or ValueError naming the simulated ones."""
        sim = self._simulators.get(name)
        if sim is None:
            raise ValueError(f"unknown provider {name!r}; one of {list(self._simulators)}")
        return sim

    def _speedsms_simulator(self) -> SpeedSMSSimulator:
        """The SpeedSMS simulator, behind the SpeedSMS-only conveniences."""
        sim = self._simulator("speedsms")
        if not isinstance(sim, SpeedSMSSimulator):
            raise TypeError(f"speedsms is simulated by {type(sim).__name__} here")
        return sim

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
