"""The crash tests' journals: each test runs on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from tests.campaign.journals import journal_url, postgres_dsn

__all__ = ["journal_url", "postgres_dsn"]
