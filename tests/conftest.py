"""Shared fixtures: sentinel credentials that tests search for, and fast retry policies."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from aioresponses import aioresponses

from smsvn.transport import RetryPolicy

SENTINEL_TOKEN = "tok-SENTINEL-7f3a9c"
SENTINEL_KEY = "key-SENTINEL-51d0e2"
SENTINEL_SECRET = "sec-SENTINEL-b84c11"
SENTINEL_PASS = "pass-SENTINEL-c0ffee"
SENTINELS = ("SENTINEL",)

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)


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
