"""Stale keep-alive connections: the client reuses a pooled connection the server has just
given up on. A send on it must never be silently resent (aiohttp resends a GET on a dropped
keep-alive connection by itself: Fibo's and eSMS's voice sends are GETs), and a read on it must
still succeed.

Two servers: the sandbox with a tiny ``keepalive_timeout`` (the server closes idle connections
after 50 ms, and the client sends at moments around it), and ``StaleProxy``, which forwards the
first request of each connection to the sandbox and drops the connection when a second one
arrives on it without forwarding it (never processed): the race, made certain.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from smsvn import errors
from smsvn.sandbox import Sandbox
from tests.conftest import PROVIDERS, client_at, per_provider
from tests.faults.conftest import FAST_RETRY, no_duplicates

NUMBER = "0912345678"


class StaleProxy:
    """Forwards the first request of each client connection to ``upstream`` (a new upstream
    connection each time) and answers it with ``Connection: keep-alive``; reads a second
    request on the same connection whole, then closes it without forwarding or answering."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.dropped = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> StaleProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        await self._server.wait_closed()

    @staticmethod
    async def _message(reader: asyncio.StreamReader) -> bytes:
        """One HTTP/1.1 message (head and Content-Length body) as bytes."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + (await reader.readexactly(length) if length else b"")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            request = await self._message(reader)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                up_writer.write(request)
                await up_writer.drain()
                answer = await self._message(up_reader)
            finally:
                up_writer.close()
                await up_writer.wait_closed()
            head, _, body = answer.partition(b"\r\n\r\n")
            lines = [
                line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
            ]
            writer.write(b"\r\n".join([*lines, b"Connection: keep-alive"]) + b"\r\n\r\n" + body)
            await writer.drain()
            await self._message(reader)  # the reuse: read it whole, then give up on it
            self.dropped += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)


Call = Callable[[Any], Awaitable[Any]]

# provider -> (operation, sandbox route, kind, call): kind "once" = at-most-once send,
# "dedup" = eSMS send under its RequestId, "read".
CASES = per_provider(
    {
        "speedsms": [
            ("send", "send", "once", lambda c: c.send(NUMBER, "hi")),
            ("voice_otp", "voice", "once", lambda c: c.voice_otp(NUMBER, "1234")),
            ("balance", "balance", "read", lambda c: c.balance()),
        ],
        "esms": [
            ("send", "send", "dedup", lambda c: c.send(NUMBER, "hi")),
            ("send GET", "send", "dedup", lambda c: c.send(NUMBER, "hi", method="GET")),
            ("voice_otp", "voice_otp", "once", lambda c: c.voice_otp(NUMBER, "1234")),
            ("balance", "balance", "read", lambda c: c.balance()),
        ],
        "fibo": [
            ("send", "send", "once", lambda c: c.send(NUMBER, "hi")),
            ("balance", "balance", "read", lambda c: c.balance()),
            ("daily_totals", "totals", "read", lambda c: c.daily_totals()),
        ],
    }
)
OPERATIONS: list[tuple[str, str, str, str, Call]] = [
    (provider, *case) for provider, cases in CASES.items() for case in cases
]


def _through(sb: Sandbox, provider: str, port: int) -> Any:
    """A client of ``provider`` whose requests go through the proxy on ``port``."""
    return client_at(sb, provider, f"http://127.0.0.1:{port}", retry=FAST_RETRY, timeout=2.0)


@pytest.mark.parametrize(
    ("provider", "route", "kind", "call"),
    [(p, r, k, c) for p, _, r, k, c in OPERATIONS],
    ids=[f"{p}-{op}" for p, op, *_ in OPERATIONS],
)
async def test_a_stale_pooled_connection(
    provider: str, route: str, kind: str, call: Call, sb: Sandbox
) -> None:
    async with StaleProxy(sb.port) as proxy, _through(sb, provider, proxy.port) as client:
        await client.balance()  # leaves one idle connection in the pool, which goes stale
        assert proxy.connections == 1
        requests_before = sb.requests[(provider, route)]
        if kind == "once":
            with pytest.raises(errors.OutcomeUnknown) as caught:
                await call(client)
            assert not isinstance(caught.value, errors.MalformedResponse)
            assert caught.value.attempts == 1
            await asyncio.sleep(0.05)  # room for a silent resend to arrive, if there were one
            assert sb.requests[(provider, route)] == requests_before  # never processed...
            assert proxy.connections == 1  # ...and never resent on a new connection
            assert len(sb.outbox) == 0
        else:
            await call(client)  # retried on a fresh connection (eSMS: same RequestId)
            assert proxy.dropped == 1 and proxy.connections == 2
            assert len(sb.outbox) == (1 if kind == "dedup" else 0)
        if kind != "read":  # and a send after it, on a fresh connection, goes out once
            result = await client.send("0987654321", "again")
            assert result.recipients == ("0987654321",)
    no_duplicates(sb)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sends_and_reads_around_a_tiny_server_keep_alive(provider: str) -> None:
    """The sandbox closes idle connections after 50 ms; the client alternates sends and reads
    with pauses around that, meeting connections just closed or closing."""
    rng = random.Random(provider)
    async with Sandbox(speedsms_rate_limit=None, keepalive_timeout=0.05) as sb:
        client = sb.client(provider, retry=FAST_RETRY, timeout=2.0)  # type: ignore[call-overload]
        unknown: list[str] = []
        sent: list[str] = []
        async with client:
            for i in range(16):
                await asyncio.sleep(rng.choice([0.0, 0.045, 0.05, 0.055, 0.06]))
                await client.balance()  # a read always succeeds
                await asyncio.sleep(rng.uniform(0.04, 0.06))
                number = f"09123{i:05d}"
                try:
                    await client.send(number, "hi")
                    sent.append(number)
                except errors.OutcomeUnknown:
                    unknown.append(number)  # the race: the request met a closing connection
        no_duplicates(sb)
        accepted = sb.outbox.phones(provider)
        assert set(sent) <= set(accepted)
        assert set(accepted) <= set(sent) | set(unknown)
        if provider == "esms":
            assert not unknown  # resent under its RequestId
