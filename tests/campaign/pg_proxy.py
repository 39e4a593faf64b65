"""A hostile network between a journal and PostgreSQL: a TCP proxy on 127.0.0.1 that reads the
PostgreSQL wire protocol as it passes, for the red-team tests of the PostgreSQL journal.

    proxy = await PgProxy.start_on("127.0.0.1", 5432)
    url = proxy.url(schema_url)              # the same database, through the proxy

What it can do to the traffic:

- ``latency``: every chunk, each way, is held that many seconds (a slow network);
- ``stall()`` / ``flow()``: hold everything, each way, on every connection (a partition: the
  sockets stay open, nothing passes; the server's answers wait in the proxy);
- ``rule``: a function of each client message (its type, the SQL it runs, the SQL run in its
  transaction so far) that answers ``PASS``, ``DROP`` (reset both sides, this message not
  forwarded), ``DROP_ON_REPLY`` (forward it, then reset both sides as soon as the server
  answers, the answer not forwarded: "the COMMIT was received, its outcome is unknown") or
  ``STALL`` (forward it, then ``stall()``);
- ``reset()``: reset every connection; ``down()`` / ``up()``: the server goes away (listener
  closed, every connection reset, new ones refused) and comes back on the same port.

The client must not ask for TLS (``sslmode=disable``): the proxy reads the protocol in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DROP", "DROP_ON_REPLY", "PASS", "STALL", "Message", "PgProxy", "Rule"]

PASS: Final = "pass"
DROP: Final = "drop"
DROP_ON_REPLY: Final = "drop-on-reply"
STALL: Final = "stall"

_SSL_REQUEST: Final = 80877103
_CANCEL_REQUEST: Final = 80877102


@dataclass
class Message:
    """One client message as the rule sees it."""

    kind: str
    """The protocol's type byte (``Q`` a simple query, ``P`` parse, ``B`` bind, ``S`` sync,
    ``d`` copy data, ...)."""
    sql: str | None
    """The SQL it runs (``Q``; ``B``: its prepared statement's), else None."""
    transaction: list[str]
    """The SQL run since the connection's last ``BEGIN`` (this message's included)."""
    connection: int
    """The proxy's number of the connection."""


Rule = Callable[[Message], str]


@dataclass(eq=False)
class _Link:
    number: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    statements: dict[str, str] = field(default_factory=dict)
    transaction: list[str] = field(default_factory=list)
    drop_on_reply: bool = False
    dead: bool = False

    def abort(self) -> None:
        self.dead = True
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


def _cstring(body: bytes, start: int) -> tuple[str, int]:
    end = body.index(b"\x00", start)
    return body[start:end].decode("utf-8", "replace"), end + 1


class PgProxy:
    """See the module's docstring."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.latency = 0.0
        self.rule: Rule | None = None
        self.connections = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start_on(cls, upstream_host: str, upstream_port: int) -> PgProxy:
        proxy = cls(upstream_host, upstream_port)
        await proxy.up()
        return proxy

    def url(self, url: str) -> str:
        """``url`` (a ``postgresql://`` URL) through this proxy, without TLS."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        query = f"{parts.query}&sslmode=disable" if parts.query else "sslmode=disable"
        return urlunsplit(
            (parts.scheme, f"{netloc}127.0.0.1:{self.port}", parts.path, query, parts.fragment)
        )

    # -- what the network does ----------------------------------------------------------------

    def stall(self) -> None:
        """Hold every byte, each way, on every connection, until ``flow()``."""
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def reset(self) -> None:
        """Reset every connection (both sides see it closed)."""
        for link in list(self._links):
            link.abort()

    async def down(self) -> None:
        """The server goes away: no new connection is accepted, every one is reset."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.reset()
        if server is not None:
            await server.wait_closed()

    async def up(self) -> None:
        """Listen (again, on the same port once it has one)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        self.flow()
        await self.down()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- the pumps ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(self.connections, writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._from_client(link, reader)),
            asyncio.create_task(self._from_server(link, up_reader)),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.abort()
            self._links.discard(link)

    async def _send(self, link: _Link, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        await self._flowing.wait()
        if link.dead:
            raise ConnectionResetError
        writer.write(data)
        await writer.drain()

    async def _from_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if link.drop_on_reply:
                    link.abort()
                    return
                await self._send(link, link.client, data)

    async def _from_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            # The startup message (or a cancel request) has no type byte.
            head = await reader.readexactly(8)
            (length, code) = struct.unpack("!ii", head)
            rest = await reader.readexactly(length - 8)
            if code == _SSL_REQUEST:
                raise AssertionError("the proxy reads the protocol in clear: sslmode=disable")
            await self._send(link, link.server, head + rest)
            if code == _CANCEL_REQUEST:
                return
            while True:
                head = await reader.readexactly(5)
                kind = chr(head[0])
                (length,) = struct.unpack("!i", head[1:])
                body = await reader.readexactly(length - 4)
                action = self._judge(link, kind, body)
                if action == DROP:
                    link.abort()
                    return
                if action == DROP_ON_REPLY:
                    link.drop_on_reply = True
                await self._send(link, link.server, head + body)
                if action == STALL:
                    self.stall()

    def _judge(self, link: _Link, kind: str, body: bytes) -> str:
        sql: str | None = None
        if kind == "Q":
            sql, _ = _cstring(body, 0)
            if sql.lstrip().upper().startswith("BEGIN"):
                link.transaction = []
        elif kind == "P":
            name, at = _cstring(body, 0)
            link.statements[name], _ = _cstring(body, at)
        elif kind == "B":
            _, at = _cstring(body, 0)
            name, _ = _cstring(body, at)
            sql = link.statements.get(name)
        if sql is not None:
            link.transaction.append(sql)
        if self.rule is None:
            return PASS
        return self.rule(Message(kind, sql, list(link.transaction), link.number))
