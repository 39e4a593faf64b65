"""Which ``Records`` a guard uses: ``records_for``.

A guard is given a journal (its records then live in the journal's SQLite file or PostgreSQL
database, shared by every process that opens it), a ``Records`` of the caller's own, or nothing
(records in memory). The stores are imported only when chosen: ``import smsvn`` loads neither
``sqlite3`` nor asyncpg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from smsvn.advertising._records import Records
from smsvn.errors import ValidationError
from smsvn.journal import Journal

if TYPE_CHECKING:
    from smsvn.journal._store import Store

__all__ = ["records_for"]

_METHODS: Final = (
    "open",
    "close",
    "reserve",
    "record",
    "count",
    "forget",
    "latest",
    "load_do_not_call",
    "do_not_call",
    "events",
    "prune",
)


def records_for(source: object) -> Records:
    """The records of ``source``: a ``smsvn.Journal`` -> records in its store (SQLite or
    PostgreSQL); an object with every ``Records`` method -> itself; None -> a new
    ``MemoryRecords``. Anything else is a ``ValidationError``."""
    if source is None:
        from smsvn.advertising._memory import MemoryRecords

        return MemoryRecords()
    if isinstance(source, Journal):
        return _journal_records(source._store)
    if all(callable(getattr(source, name, None)) for name in _METHODS):
        return source  # type: ignore[return-value]  # checked by its methods' names
    raise ValidationError(
        "advertising records come from a smsvn.Journal, an object implementing "
        f"smsvn.advertising Records, or None (in memory); not a {type(source).__name__}"
    )


def _journal_records(store: Store) -> Records:
    """The records kept in a journal's ``store`` (imported by its type: a PostgreSQL journal
    loads no ``sqlite3``)."""
    from smsvn.journal._postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from smsvn.advertising._postgres import PostgresRecords

        return PostgresRecords(store)
    from smsvn.journal._sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        from smsvn.advertising._sqlite import SqliteRecords

        return SqliteRecords(store)
    raise ValidationError(  # pragma: no cover - a journal has one of the two stores
        f"advertising records cannot be kept in a journal store of type {type(store).__name__}"
    )
