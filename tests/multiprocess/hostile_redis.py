"""A hostile Redis for the shared limiter's red team: a loopback TCP relay in front of a real Redis
that understands just enough RESP to act on one command's reply at a time.

``HostileRedis`` relays each client connection to its own connection to the real Redis. Every
command the client sends is matched against the relay's rules (``Rule``); the first rule that
matches (and has ``times`` left) decides what happens to that command's reply: delayed, held until
the rule is released, cut halfway through (after the command reached Redis and ran), or replaced
by an answer of the relay's own (the command never reaches Redis: an error reply such as a full or
read-only server gives). Replies leave in the order of their commands, whatever each waits for.
Besides rules: ``reset()`` resets every connection (RST), ``go_away()`` / ``come_back()`` stop and
start listening on the same port (every connection reset meanwhile), and ``mute_pubsub`` swallows
the messages published to subscribers (a pub/sub connection silently gone bad).

``worker_main`` is a worker process for the fleet tests: it takes turns from a ``RedisLimiter``
for one account and prints, as JSON on its stdout, the Unix time of every turn it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HostileRedis", "Rule", "call_number", "evalsha_of", "worker_main"]

Match = Callable[[list[bytes]], bool]

_PUSHED = (b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE")
"""Commands answered by pushes (RESP3) or by messages of the subscription (RESP2), which come
whenever they come: no reply of their own is waited for."""


def _scalar(frame: bytes) -> bytes:
    """The payload of a bulk string, simple string, error or integer frame (b"" for others)."""
    kind = frame[:1]
    if kind in (b"$", b"!", b"="):
        head = frame.index(b"\r\n")
        return frame[head + 2 : -2]
    if kind in (b"+", b"-", b":"):
        return frame[1:-2]
    return b""


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, list[bytes] | None]:
    """One whole RESP2 or RESP3 value: its bytes, and the payloads of its top-level items when it
    is an aggregate (a command, a pub/sub message)."""
    line = await reader.readuntil(b"\r\n")
    kind, body = line[:1], line[1:-2]
    if kind in (b"$", b"!", b"="):
        size = int(body)
        if size < 0:
            return line, None
        return line + await reader.readexactly(size + 2), None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(body) * (2 if kind in (b"%", b"|") else 1)
        parts = [line]
        items: list[bytes] = []
        for _ in range(max(count, 0)):
            part, _nested = await read_frame(reader)
            parts.append(part)
            items.append(_scalar(part))
        if kind == b"|":  # an attribute: the value it describes follows
            value, items_of = await read_frame(reader)
            return b"".join(parts) + value, items_of
        return b"".join(parts), items
    if kind in (b"+", b"-", b":", b"_", b"#", b",", b"("):
        return line, None
    raise ValueError(f"not RESP: {line[:40]!r}")


def _sha_of(command: list[bytes]) -> str | None:
    name = command[0].upper() if command else b""
    if name == b"EVALSHA" and len(command) > 1:
        return command[1].decode()
    if name == b"EVAL" and len(command) > 1:
        return hashlib.sha1(command[1]).hexdigest()
    return None


def evalsha_of(sha: str) -> Match:
    """Matches the commands that run the Lua script ``sha`` (``EVALSHA``, or ``EVAL`` of it)."""
    return lambda command: _sha_of(command) == sha


def call_number(command: list[bytes]) -> int | None:
    """The limiter's call number in a ``RESERVE`` command (its eighth argument)."""
    if _sha_of(command) is None:
        return None
    return int(command[3 + int(command[2]) + 7])


@dataclass(eq=False)
class Rule:
    """What happens to the reply of a command that ``match``es (``times``: how many such
    commands, None for every one)."""

    match: Match
    delay: float = 0.0
    jitter: float = 0.0  # plus a uniform random part of this many seconds
    hold: bool = False  # until ``release()``
    drop: bool = False  # cut the connection (RST) halfway through the reply
    reply: bytes | None = None  # answered by the relay; the command never reaches Redis
    times: int | None = None
    hits: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.gate.set()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (RST, not FIN): the peer reads an error, not an end of stream."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Relay:
    """One client connection and its connection to Redis."""

    def __init__(
        self,
        owner: HostileRedis,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.owner = owner
        self.cr, self.cw = client
        self.sr, self.sw = server
        self.out: asyncio.Queue[tuple[asyncio.Future[bytes], Rule | None]] = asyncio.Queue()
        self.expect: deque[asyncio.Future[bytes]] = deque()

    def kill(self) -> None:
        _rst(self.cw)
        _rst(self.sw)

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._upstream()),
            asyncio.create_task(self._downstream()),
            asyncio.create_task(self._writer()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.kill()

    async def _upstream(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            while True:
                raw, items = await read_frame(self.cr)
                command = items or []
                self.owner.commands[command[0].upper().decode() if command else "?"] += 1
                rule = self.owner.rule_for(command)
                future: asyncio.Future[bytes] = loop.create_future()
                if rule is not None and rule.reply is not None:
                    future.set_result(rule.reply)
                    self.out.put_nowait((future, rule))
                    continue
                self.owner.forwarded.append(command)
                if not command or command[0].upper() not in _PUSHED:
                    self.expect.append(future)
                    self.out.put_nowait((future, rule))
                self.sw.write(raw)
                await self.sw.drain()

    async def _downstream(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            while True:
                raw, items = await read_frame(self.sr)
                if self.expect and raw[:1] != b">":
                    self.expect.popleft().set_result(raw)
                    continue
                if self.owner.mute_pubsub and items and items[0] == b"message":
                    continue
                future: asyncio.Future[bytes] = loop.create_future()
                future.set_result(raw)
                self.out.put_nowait((future, None))

    async def _writer(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                future, rule = await self.out.get()
                raw = await future
                if rule is not None:
                    pause = rule.delay + random.uniform(0.0, rule.jitter)
                    if pause > 0:
                        await asyncio.sleep(pause)
                    if rule.hold:
                        await rule.gate.wait()
                    if rule.drop:
                        self.cw.write(raw[: max(1, len(raw) // 2)])
                        await self.cw.drain()
                        await asyncio.sleep(0.01)
                        return
                self.cw.write(raw)
                await self.cw.drain()


class HostileRedis:
    """The relay, listening on 127.0.0.1 (an async context manager)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.rules: list[Rule] = []
        self.mute_pubsub = False
        self.commands: Counter[str] = Counter()
        """Commands received from clients, by name."""
        self.forwarded: list[list[bytes]] = []
        """Commands that reached Redis, in order."""
        self._server: asyncio.Server | None = None
        self._relays: set[_Relay] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listen_port}/0"

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def rule_for(self, command: list[bytes]) -> Rule | None:
        for rule in self.rules:
            if (rule.times is None or rule.hits < rule.times) and rule.match(command):
                rule.hits += 1
                return rule
        return None

    def scripts_run(self, sha: str) -> list[list[bytes]]:
        """The commands running script ``sha`` that reached Redis."""
        match = evalsha_of(sha)
        return [c for c in self.forwarded if match(c)]

    async def __aenter__(self) -> HostileRedis:
        await self.come_back()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for rule in self.rules:
            rule.release()
        await self.go_away()
        if self._tasks:
            # Each relay ends by itself once its connections are reset.
            await asyncio.wait(set(self._tasks), timeout=2.0)

    async def come_back(self) -> None:
        """Listen (again, on the same port)."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.listen_port, reuse_address=True
            )
            self.listen_port = self._server.sockets[0].getsockname()[1]

    async def go_away(self) -> None:
        """Stop listening (a connect is refused) and reset every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        self.reset()

    def reset(self) -> None:
        """Reset every connection open now (new ones are accepted)."""
        for relay in list(self._relays):
            relay.kill()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                server = await asyncio.open_connection(self.host, self.port)
            except OSError:
                _rst(cw)
                return
            relay = _Relay(self, (cr, cw), server)
            self._relays.add(relay)
            try:
                await relay.run()
            finally:
                self._relays.discard(relay)
        finally:
            self._tasks.discard(task)


# -- a worker process for the fleet tests ------------------------------------------------------


async def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    from smsvn._shared_limits import RedisLimiter
    from smsvn.limits import RateLimit, WaitTooLong

    limiter = RedisLimiter(cfg["url"], prefix=cfg["prefix"])
    limit = RateLimit(requests=cfg["requests"], period=cfg["period"], burst=cfg["burst"])
    acc = limiter.for_account("esms", cfg["account"], limit)
    taken: list[float] = []
    errors: Counter[str] = Counter()
    try:
        await asyncio.sleep(max(0.0, cfg["start_at"] - time.time()))
        end = cfg["start_at"] + cfg["duration"]

        async def one() -> None:
            while True:
                try:
                    await acc.acquire(cfg["max_wait"])
                except WaitTooLong:
                    errors["WaitTooLong"] += 1
                    await asyncio.sleep(0.05)
                    continue
                except Exception as exc:  # reported: the test asserts what they are
                    errors[f"{type(exc).__module__}.{type(exc).__name__}"] += 1
                    await asyncio.sleep(0.05)
                    continue
                # The counter the test trusts: the moment the turn was handed over.
                taken.append(time.time())

        tasks = [asyncio.create_task(one()) for _ in range(cfg["coroutines"])]
        await asyncio.sleep(max(0.0, end - time.time()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await limiter.aclose()
    return {"taken": taken, "errors": dict(errors), "given_up": acc.given_up}


def worker_main() -> None:
    """Read the worker's configuration (JSON) from stdin; print its report (JSON) on stdout."""
    cfg = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(_worker(cfg))), flush=True)
