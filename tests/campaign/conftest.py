"""The crash tests' journals: each test runs on a real SQLite file and a real PostgreSQL; and
the simulator the in-process campaign tests send to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smsvn.sandbox import Sandbox
from tests.campaign.journals import journal_url, postgres_dsn

__all__ = ["journal_url", "postgres_dsn", "sb"]


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    """The simulator, SpeedSMS's limit off, reports after 10 ms."""
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sandbox:
        yield sandbox
