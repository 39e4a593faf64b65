"""Shared fixtures: sentinel credentials that tests search for, and fast retry policies."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pytest
from aiohttp import web
from aiohttp.payload import BytesPayload
from aioresponses import aioresponses

from smsvn import providers
from smsvn.bulk import BulkReport
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from smsvn.transport import RetryPolicy

if TYPE_CHECKING:
    from smsvn.providers._base import BaseClient
    from smsvn.sandbox import Sandbox

_T = TypeVar("_T")

pytest_plugins = ["tests.services"]
"""The service fixtures (``redis_url``, ``postgres_dsn``): registered here, first, so that pytest
rewrites their asserts before any test module imports ``tests.services`` by name."""

_SERIAL: Final = (
    "tests/multiprocess/",
    "tests/campaign/test_fencing.py",  # a runner paused past its lease: timing
    "tests/taskiq/test_workers.py",
    "tests/test_redis_limiter.py",
    "tests/test_limits.py",
    # A 5 ms margin on a 250 ms window (the simulator's is 5 % shorter): timing, so alone.
    "tests/integration/test_clients_sandbox.py::test_speedsms_matching_limiter_never_gets_429",
)
"""Suites that measure rates, windows or timing: ``make test`` runs them on their own (``-m
serial``), after the rest has run on two workers. The crash fleets (``tests/campaign/
test_crash.py``) and the soak (its memory is traced, not timed) measure nothing that a busy
neighbour changes and spend most of their time waiting (rate limits, kills): they run with the
rest."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(_SERIAL):
            item.add_marker(pytest.mark.serial)


PROVIDERS: tuple[str, ...] = providers.names()
"""Every registered provider: the one list that cross-provider tests take their cases from."""


def per_provider(table: Mapping[str, _T]) -> Mapping[str, _T]:
    """A table of provider-specific cases, checked complete against the registry at collection:
    a provider added to the registry but not to the table fails loudly instead of silently
    going untested."""
    missing, extra = set(PROVIDERS) - set(table), set(table) - set(PROVIDERS)
    if missing or extra:
        raise AssertionError(
            f"per-provider table: missing {sorted(missing)}, extra {sorted(extra)}"
        )
    return table


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """Each registered provider in turn."""
    name: str = request.param
    return name


def client_at(sb: Sandbox, name: str, root: str, **overrides: Any) -> BaseClient:
    """A client of ``name`` with ``sb``'s credentials and defaults whose every base URL is moved
    from ``sb`` onto ``root`` (a proxy in front of it, a dead port, another process)."""
    moved = {
        key: root + value.removeprefix(sb.url)
        for key, value in sb.client_options(name).items()
        if isinstance(value, str) and value.startswith(sb.url)
    }
    return sb.client(name, **{**moved, **overrides})


SENTINEL_TOKEN = "tok-SENTINEL-7f3a9c"
SENTINEL_KEY = "key-SENTINEL-51d0e2"
SENTINEL_SECRET = "sec-SENTINEL-b84c11"
SENTINEL_PASS = "pass-SENTINEL-c0ffee"
SENTINELS = ("SENTINEL",)

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    """The simulator with SpeedSMS's limit off (a suite that needs another overrides it)."""
    async with Sandbox(speedsms_rate_limit=None) as sandbox:
        yield sandbox


@pytest.fixture
async def sms(sb: Sandbox) -> AsyncIterator[SpeedSMS]:
    """A SpeedSMS client of ``sb``, limiter off, retrying fast."""
    async with sb.client("speedsms", rate_limit=None, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses that lets loopback through (for the sandbox) and mocks everything else."""
    with aioresponses(passthrough=["http://127.0.0.1"]) as m:
        yield m


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it: connecting is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def free_port() -> int:
    """A loopback port that was free a moment ago (for a server started by the test)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def payload_bytes(data: object) -> bytes:
    """The bytes of a request body as the transport hands it to aiohttp: a ``BytesPayload``
    carrying its own ``Content-Type``, never bare bytes."""
    assert isinstance(data, BytesPayload), type(data)
    return data.decode("latin-1").encode("latin-1")  # latin-1: every byte as it is


def sent_body(call: Any) -> bytes:
    """The body of a request aioresponses recorded."""
    return payload_bytes(call.kwargs["data"])


def sent_type(call: Any) -> str:
    """The ``Content-Type`` a recorded request's body goes with (none among its headers)."""
    headers = call.kwargs.get("headers") or {}
    assert "Content-Type" not in headers, headers
    payload = call.kwargs["data"]
    assert isinstance(payload, BytesPayload), type(payload)
    return str(payload.headers["Content-Type"])


def taken_count(report: BulkReport) -> int:
    """Every input taken, counted once across the report's buckets."""
    return (
        report.accepted
        + report.failed_count
        + report.unknown_count
        + len(report.invalid)
        + report.duplicates
        + len(report.skipped)
    )


@contextlib.asynccontextmanager
async def http_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 answering every request with ``handler``; its base URL."""
    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
