"""The services some tests need (Redis, PostgreSQL): where they are, and what happens when they
are not there.

A test takes the ``redis_url`` or ``postgres_dsn`` fixture (``from tests.services import
redis_url``). The address comes from ``SMSVN_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) or ``SMSVN_TEST_POSTGRES_DSN`` (default
``postgresql://127.0.0.1:5432/test``); reachability is a plain TCP connect (no client library
needed). On a machine without the service the test is skipped with a one-line reason; when the
environment variable ``CI`` is set (``.ci/run`` sets it) it fails instead, so a CI run can never
pass by skipping.

``redis_server`` starts a private ``redis-server`` (no persistence) on a free loopback port, for
tests that stop and restart Redis without disturbing anyone else's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

__all__ = [
    "DEFAULT_POSTGRES_DSN",
    "DEFAULT_REDIS_URL",
    "RedisServer",
    "postgres_dsn",
    "reachable",
    "redis_prefix",
    "redis_server",
    "redis_url",
    "unavailable",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://127.0.0.1:5432/test"


def unavailable(reason: str) -> None:
    """Skip the test for ``reason`` (one line), or fail it when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host``:``port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis to test against (``SMSVN_TEST_REDIS_URL``); skips (fails under CI) if absent."""
    url = os.environ.get("SMSVN_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    host, port = _address(url, 6379)
    if not reachable(host, port):
        unavailable(f"no Redis at {host}:{port} (set SMSVN_TEST_REDIS_URL)")
    return url


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The PostgreSQL to test against (``SMSVN_TEST_POSTGRES_DSN``); skips (fails under CI) if
    absent."""
    dsn = os.environ.get("SMSVN_TEST_POSTGRES_DSN", DEFAULT_POSTGRES_DSN)
    host, port = _address(dsn, 5432)
    if not reachable(host, port):
        unavailable(f"no PostgreSQL at {host}:{port} (set SMSVN_TEST_POSTGRES_DSN)")
    return dsn


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of the test's own; every key under it is deleted afterwards."""
    prefix = f"smsvn-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_keys(redis_url, prefix)


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (``SCAN``, so it never blocks the server)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1 (no persistence): ``stop()`` and ``start()`` it
    to play a restart that loses every key."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        """``time.monotonic()`` when the server last started."""

    def start(self) -> None:
        if self._proc is not None:
            return
        self.started = time.monotonic()
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port, timeout=0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server at once (SIGKILL: nothing saved, every key lost)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis server for this test (stopped afterwards); skips (fails under CI) where
    there is no ``redis-server``."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("no redis-server binary on PATH")
        raise AssertionError  # unreachable: unavailable() skips or fails
    server = RedisServer(binary, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def postgres_schema(dsn: str, prefix: str = "smsvn_test_") -> AsyncIterator[str]:
    """A URL of ``dsn`` in a PostgreSQL schema of its own (``search_path``), dropped after."""
    import asyncpg

    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
    finally:
        await admin.close()
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await admin.close()
