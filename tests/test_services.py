"""tests/services.py: a missing service skips a test on a developer's machine and fails it in CI;
the fixtures find the services this machine runs."""

from __future__ import annotations

import importlib
import socket
from types import ModuleType

import pytest

# Registered as a plugin (its fixtures); imported by name only once pytest has it, so that its
# asserts are rewritten like any test module's.


def services() -> ModuleType:
    return importlib.import_module("tests.services")


def test_a_missing_service_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Redis at"):
        services().unavailable("no Redis at 127.0.0.1:1")


def test_a_missing_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        services().unavailable("no Redis at 127.0.0.1:1")


def test_reachable_is_a_plain_tcp_connect(closed_port: int) -> None:
    assert not services().reachable("127.0.0.1", closed_port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert services().reachable("127.0.0.1", server.getsockname()[1])


def test_the_fixtures_find_this_machines_services(redis_url: str, postgres_dsn: str) -> None:
    assert redis_url.startswith("redis://")
    assert postgres_dsn.startswith("postgresql://")
