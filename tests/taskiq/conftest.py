"""The taskiq tests' processes: one simulator for the module, two ``taskiq worker`` processes
shared by the tests that need no special worker, each on the machine's Redis with keys of its
own (deleted afterwards). Without Redis the tests skip with one line; under ``CI`` they fail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.campaign.journals import journal_url, postgres_dsn
from tests.services import delete_keys
from tests.taskiq.harness import (
    REQUESTS,
    SIMULATOR_WINDOW,
    Config,
    Simulator,
    Worker,
    cleanup,
    new_config,
    stop_all,
    worker_env,
)

__all__ = ["journal_url", "postgres_dsn"]


@pytest.fixture(scope="module")
def limiter_prefix(redis_url: str) -> Iterator[str]:
    """One shared limiter for every worker of the module: they all send to one account."""
    prefix = f"smsvn-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    sim = Simulator(REQUESTS, SIMULATOR_WINDOW)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def pool_config(redis_url: str, limiter_prefix: str) -> Iterator[Config]:
    config = new_config(redis_url, limiter_prefix)
    yield config
    cleanup(config)


@pytest.fixture(scope="module")
def pool(pool_config: Config, simulator: Simulator) -> Iterator[list[Worker]]:
    """Two plain workers (the tests that use them wait until the stream is drained)."""
    env = worker_env(pool_config, "speedsms", simulator.client_options["speedsms"])
    workers = [Worker(env, f"worker-{i}") for i in range(2)]
    try:
        yield workers
    finally:
        stop_all(workers)
