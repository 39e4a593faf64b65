"""Hostile servers on 127.0.0.1: unsolicited answers on idle keep-alive connections, endless
and compressed bodies, malformed heads. Each test fails on a client that trusts them.

- A server (or a proxy in between) that writes an answer nobody asked for on an idle pooled
  connection: the next request on it must not read those bytes as its own answer. A stale 429
  made the transport resend a send that had gone out (Fibo GET, eSMS VoiceOTP), a stale refusal
  made Failover hand a sent message to the backup.
- A chunked 300 MiB answer or a gzip bomb: memory stays bounded (a running cap, compressed or
  not), and the request ends ``MalformedResponse``.
- aiohttp's exceptions carry the full URL, credentials in its query string: none may ride on an
  smsvn error's ``__context__`` or ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from smsvn import errors
from smsvn.failover import Failover
from smsvn.providers.fibo import Fibo
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from smsvn.transport import AttemptInfo, Hooks
from tests.conftest import SENTINEL_PASS, SENTINEL_TOKEN, client_at, per_provider
from tests.faults.conftest import FAST_RETRY, no_duplicates

NUMBER = "0912345678"
OTHER = "0987654321"

STALE_429 = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"Retry-After: 0\r\nX-Rate-Limit-Reset: 0\r\nContent-Length: 2\r\n\r\n{}"
)
"""A 429 saying "go again now": read as the next request's answer, it makes a resend."""


async def _message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 message (head and Content-Length body) as bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


class UnsolicitedProxy:
    """Forwards every request of a kept-alive client connection to ``upstream`` and, ``delay``
    seconds after each answer, writes ``stale`` on the idle connection: an answer to nothing."""

    def __init__(self, upstream_port: int, stale: bytes, delay: float = 0.02) -> None:
        self.upstream_port = upstream_port
        self.stale = stale
        self.delay = delay
        self.port = 0
        self.forwarded = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> UnsolicitedProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _message(reader)
                self.forwarded += 1
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
                try:
                    up_writer.write(request)
                    await up_writer.drain()
                    answer = await _message(up_reader)
                finally:
                    up_writer.close()
                head, _, body = answer.partition(b"\r\n\r\n")
                lines = [
                    line
                    for line in head.split(b"\r\n")
                    if not line.lower().startswith(b"connection:")
                ]
                writer.write(b"\r\n".join([*lines, b"Connection: keep-alive"]) + b"\r\n\r\n" + body)
                await writer.drain()
                await asyncio.sleep(self.delay)
                writer.write(self.stale)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


Send = Callable[[Any, str], Awaitable[Any]]

SENDS: dict[str, list[tuple[str, str, Send]]] = dict(
    per_provider(
        {
            "speedsms": [
                ("send", "send", lambda c, n: c.send(n, "hi")),
                ("voice_otp", "voice", lambda c, n: c.voice_otp(n, "1234")),
            ],
            "esms": [
                ("send", "send", lambda c, n: c.send(n, "hi")),
                ("voice_otp", "voice_otp", lambda c, n: c.voice_otp(n, "1234")),
            ],
            "fibo": [("send", "send", lambda c, n: c.send(n, "hi"))],
        }
    )
)


@pytest.mark.parametrize(
    ("provider", "route", "send"),
    [(p, r, s) for p, cases in SENDS.items() for _, r, s in cases],
    ids=[f"{p}-{name}" for p, cases in SENDS.items() for name, _, _ in cases],
)
async def test_an_unsolicited_answer_on_an_idle_connection_is_never_read(
    provider: str, route: str, send: Send
) -> None:
    async with (
        Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb,
        UnsolicitedProxy(sb.port, STALE_429) as proxy,
    ):
        root = f"http://127.0.0.1:{proxy.port}"
        retries: list[AttemptInfo] = []
        hooks = Hooks(on_retry=retries.append)
        async with client_at(
            sb, provider, root, retry=FAST_RETRY, rate_limit=None, hooks=hooks
        ) as client:
            await send(client, NUMBER)
            await asyncio.sleep(0.1)  # the stale 429 is on the idle connection by now
            await send(client, OTHER)
            await asyncio.sleep(0.2)  # a resend, if any, reaches the sandbox
        assert retries == [], "a stale 429 was read as a send's answer and made a resend"
        assert sb.requests[(provider, route)] == 2, "a send went out twice"
        assert proxy.forwarded == 2
        no_duplicates(sb)


class ThreadedKeepAlive:
    """A keep-alive HTTP server on a thread of its own, so that it can write while the client's
    event loop is not running: answers every request (GETs, no body) with ``answer`` and keeps
    each connection open for the next."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.connections: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> ThreadedKeepAlive:
        self._threads[0].start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2)
        for conn in self.connections:
            conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                _, _, pending = pending.partition(b"\r\n\r\n")
                conn.sendall(self.answer)


async def test_bytes_that_arrived_while_the_loop_was_busy_keep_a_connection_from_being_lent() -> (
    None
):
    """An unsolicited answer can land on an idle pooled connection after the event loop last
    looked (a busy loop, a blocking call): aiohttp has not read it, so ``should_close`` does not
    know. The pool's check polls the socket itself: the connection is never lent, and the next
    request goes on a new one and reads its own answer, not the stale 429."""
    body = b'{"status":"success","code":"00","data":{"balance":1234,"currency":"VND"}}'
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    with ThreadedKeepAlive(answer) as server:
        root = f"http://127.0.0.1:{server.port}/index.php"
        retries: list[AttemptInfo] = []
        hooks = Hooks(on_retry=retries.append)
        async with SpeedSMS(SENTINEL_TOKEN, base_url=root, retry=FAST_RETRY, hooks=hooks) as sms:
            assert (await sms.balance()).amount == 1234
            connector = sms._transport.session().connector
            assert connector is not None
            [(idle, _)] = [held for queue in connector._conns.values() for held in queue]
            # No await from here to the check: the loop does not run, nobody reads the socket.
            server.connections[0].sendall(STALE_429)
            sock = idle.transport.get_extra_info("socket")
            assert select.select([sock.fileno()], [], [], 2.0)[0], "the stale 429 never came"
            assert not idle.should_close  # aiohttp has not read it: only a poll can know
            assert not idle.is_connected()
            assert (await sms.balance()).amount == 1234
        assert retries == [], "the stale 429 was read as the balance's answer"
        assert len(server.connections) == 2


async def test_failover_never_acts_on_a_stale_refusal() -> None:
    """A stale "balance not enough" from the primary is not this send's answer: the primary
    sent it, so the backup must not send it again."""
    refusal = b'{"status":"error","code":"300","message":"balance not enough"}'
    stale = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(refusal)}\r\n\r\n".encode()
        + refusal
    )
    async with (
        Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sb,
        UnsolicitedProxy(sb.port, stale) as proxy,
    ):
        primary = client_at(sb, "speedsms", f"http://127.0.0.1:{proxy.port}", retry=FAST_RETRY)
        backup = sb.client("fibo", retry=FAST_RETRY)
        async with Failover(primary, backup) as failover:
            first = await failover.send(NUMBER, "hi")
            await asyncio.sleep(0.1)
            second = await failover.send(OTHER, "hi")
        assert first.provider == second.provider == "speedsms"
        assert sb.outbox.phones("fibo") == []
        no_duplicates(sb)


# -- bodies that would fill memory -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def _raw_server(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[int, list[int]]]:
    """A server that reads one request and calls ``answer``; yields its port and a list that
    gets the number of body bytes it managed to write before the client hung up."""
    written: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _message(reader)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], written
    finally:
        server.close()
        await server.wait_closed()


async def _refused_within_memory(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> None:
    """A balance call against a server answering with ``answer`` is refused as over the body
    cap, and the client's traced peak memory meanwhile stays under 16 MiB."""
    async with _raw_server(answer) as (port, _):
        tracemalloc.start()
        try:
            async with SpeedSMS(
                SENTINEL_TOKEN, base_url=f"http://127.0.0.1:{port}", rate_limit=None
            ) as sms:
                with pytest.raises(errors.MalformedResponse, match="over 1048576 bytes"):
                    await sms.balance()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


async def test_an_endless_chunked_answer_is_cut_at_the_cap() -> None:
    sent = [0]

    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(300 * 16):  # 300 MiB
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent[0] += len(chunk)
            await writer.drain()

    await _refused_within_memory(endless)
    assert sent[0] < 64 * 1024 * 1024, "the client kept reading after the cap"


async def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(squeeze.compress(zeros) for _ in range(256)) + squeeze.flush()  # 256 MiB

    async def gzip(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )
        await writer.drain()

    await _refused_within_memory(gzip)


async def test_a_small_gzip_answer_is_still_read() -> None:
    body = b'{"status":"success","code":"00","data":{"balance":1234,"currency":"VND"}}'
    packed = zlib.compress(body, wbits=31)

    async def gzip(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(packed)}\r\n\r\n".encode()
            + packed
        )
        await writer.drain()

    async with (
        _raw_server(gzip) as (port, _),
        SpeedSMS(SENTINEL_TOKEN, base_url=f"http://127.0.0.1:{port}", rate_limit=None) as sms,
    ):
        assert (await sms.balance()).amount == 1234


# -- no aiohttp exception (and its URL) behind an smsvn error -----------------------------------


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend((item.__cause__, item.__context__))
    return seen


async def test_a_malformed_answer_chains_no_aiohttp_error() -> None:
    async def bad_head(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nNo colon in this header line\r\n\r\n")
        await writer.drain()

    async with (
        _raw_server(bad_head) as (port, _),
        Fibo(
            "CL1", SENTINEL_PASS, base_url=f"http://127.0.0.1:{port}", rate_limit=None, sender="X"
        ) as fibo,
    ):
        with pytest.raises(errors.OutcomeUnknown) as caught:
            await fibo.send(NUMBER, "hi")
    for item in _chain(caught.value):
        assert isinstance(item, errors.SmsError), f"{type(item).__module__}.{type(item).__name__}"
        assert "SENTINEL" not in f"{item!s} {item!r} {item.args!r}"


async def test_a_refused_connection_chains_no_aiohttp_error(closed_port: int) -> None:
    async with Fibo(
        "CL1",
        SENTINEL_PASS,
        base_url=f"http://127.0.0.1:{closed_port}",
        rate_limit=None,
        sender="X",
        retry=FAST_RETRY,
    ) as fibo:
        with pytest.raises(errors.ConnectError) as caught:
            await fibo.balance()
    for item in _chain(caught.value):
        assert isinstance(item, errors.SmsError), type(item)
        assert "SENTINEL" not in f"{item!s} {item!r}"
