"""What the ``smsvn`` command and its demo share: progress bars, reports and tables, and the
protocols saying what a client can look up beyond ``send`` and ``balance``.

It lives apart from ``cli`` so that the demo (``_demo``) can print the way the command does
without importing the command: ``cli`` imports ``_demo``, ``_demo`` imports this module, and this
module imports neither. rich (the ``cli`` extra) is imported only when a bar is drawn on a
terminal, so everything here works without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TextIO, TypeAlias, runtime_checkable

from smsvn._cli_files import printable
from smsvn.bulk import BulkProgress, BulkReport
from smsvn.journal import Counts
from smsvn.models import CallResult, DailyTotals, MessageStatus, ReceiverStatus

if TYPE_CHECKING:
    from smsvn.providers import Provider

__all__ = [
    "Bars",
    "CallLookup",
    "DailyTotalsLookup",
    "MessageLookup",
    "ProgressCallback",
    "amount",
    "cost_text",
    "join_titles",
    "print_counts",
    "print_report",
    "print_table",
    "progress_bars",
]

ProgressCallback: TypeAlias = Callable[[BulkProgress | None], None]
"""An ``on_progress`` callback; called once more with None when its run has ended."""

_PLAIN_EVERY: Final = 2.0
"""Seconds between two plain-text progress lines of one run (when rich draws no bar)."""


# -- what a client may offer beyond send and balance ------------------------------------------
# The command and the demo ask a client (or its registered class, with issubclass) what it can
# look up, never which provider it is.


@runtime_checkable
class MessageLookup(Protocol):
    """A client that looks up a sent message and its receivers by the id ``send`` returned."""

    async def status(self, sms_id: str) -> MessageStatus: ...

    async def receivers(self, sms_id: str) -> list[ReceiverStatus]: ...


@runtime_checkable
class CallLookup(Protocol):
    """A client that looks up a voice call by the id the call returned."""

    async def call_status(self, reference_id: str) -> CallResult: ...


@runtime_checkable
class DailyTotalsLookup(Protocol):
    """A client that counts today's messages on the account: succeeded, failed, pending."""

    async def daily_totals(self) -> DailyTotals: ...


# -- progress -----------------------------------------------------------------------------------


class Bars:
    """Progress of bulk runs: rich bars when ``bars`` is set and rich is installed (the ``cli``
    extra), else a plain line every few seconds; nothing at all when not ``enabled``. Use it as
    a context manager; it gives ``bar``."""

    def __init__(self, enabled: bool, out: TextIO, *, bars: bool) -> None:
        self._out = out
        self._enabled = enabled
        self._rich: Any = _rich_progress(out) if enabled and bars else None

    def __enter__(self) -> Callable[[str, int | None], ProgressCallback]:
        if self._rich is not None:
            self._rich.start()
        return self.bar

    def __exit__(self, *exc_info: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def bar(self, name: str, total: int | None) -> ProgressCallback:
        """A callback for ``on_progress`` of one run called ``name`` (``total`` numbers, or
        None when unknown); call it with None at the end so the bar shows the final count."""
        if not self._enabled:
            return _quiet
        if self._rich is None:
            return self._plain(name)
        progress = self._rich
        task = progress.add_task(name, total=total, detail="")

        def update(snapshot: BulkProgress | None) -> None:
            """Move the bar to ``snapshot``, or close it at the count reached (None)."""
            if snapshot is None:
                done = progress.tasks[task].completed
                progress.update(task, total=done if total is None else total, completed=done)
                return
            progress.update(
                task,
                completed=snapshot.done,
                detail=f"{snapshot.accepted:,} accepted  {snapshot.rate:,.0f}/s",
            )

        return update

    def _plain(self, name: str) -> ProgressCallback:
        """A callback printing one line at most every ``_PLAIN_EVERY`` seconds."""
        out = self._out
        last = [0.0]

        def plain(snapshot: BulkProgress | None) -> None:
            """Print ``snapshot`` if the last line is old enough; the end (None) prints nothing."""
            now = time.monotonic()
            if snapshot is not None and now - last[0] >= _PLAIN_EVERY:
                last[0] = now
                print(
                    f"{name}: {snapshot.done} done, {snapshot.accepted} accepted, "
                    f"{snapshot.rate:,.0f}/s",
                    file=out,
                    flush=True,
                )

        return plain


def _rich_progress(out: TextIO) -> Any:
    """A rich ``Progress`` writing to ``out``, or None when rich is not installed."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:  # pragma: no cover - rich is in the cli extra
        return None
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(file=out),
    )


def _quiet(snapshot: BulkProgress | None) -> None:
    """The ``on_progress`` of a run whose progress is not shown."""


def progress_bars(enabled: bool, out: TextIO) -> Bars:
    """Progress for runs printing to ``out``: rich bars on a terminal, plain lines on a file or
    a pipe (where a bar's redrawing would garble the output), nothing when not ``enabled``."""
    return Bars(enabled, out, bars=out.isatty())


# -- reports and tables ------------------------------------------------------------------------


def print_report(report: BulkReport, out: TextIO) -> None:
    """A bulk run's outcome on one line, then why it stopped and a few unknown batches."""
    rate = report.accepted / report.elapsed if report.elapsed else 0.0
    print(
        f"{report.provider}: {report.accepted} accepted, {len(report.invalid)} invalid, "
        f"{report.duplicates} duplicates, {report.failed_count} failed, "
        f"{report.unknown_count} unknown, {len(report.skipped)} skipped; "
        f"{report.requests} requests in {report.elapsed:.1f} s ({rate:,.0f}/s); "
        f"{cost_text(report.cost, report.estimated_cost, report.unit)}",
        file=out,
    )
    if report.aborted is not None:
        print(f"stopped: {printable(str(report.aborted))}", file=out)
    for numbers, error in report.unknown[:5]:
        print(f"unknown (may have been sent; not resent): {numbers[0]}...: {error}", file=out)


def amount(value: float, unit: str | None) -> str:
    """A cost with its unit: ``2,500 VND``, ``0.5 VND``, ``1 message``, ``3 messages`` (no
    unit: the number); a fraction is kept to two decimals, a whole number has none."""
    number = f"{value:,.2f}".rstrip("0").rstrip(".")
    if unit is None:
        return number
    if unit.endswith("s") and number == "1":
        unit = unit[:-1]
    return f"{number} {unit}"


def cost_text(reported: float, estimated: float | None, unit: str | None) -> str:
    """One cost story for every provider: what the provider reported (``cost 2,500 VND``),
    else an estimate from segments and the registered price, labelled so (``estimated cost
    3,500 VND``), or both when a run holds both kinds of send."""
    if estimated is None:
        return f"cost {amount(reported, unit)}"
    if reported:
        return f"cost {amount(reported, unit)} + estimated {amount(estimated, unit)}"
    return f"estimated cost {amount(estimated, unit)} (the provider reports no price)"


def print_counts(name: str, counts: Counts, out: TextIO) -> None:
    """A campaign's inputs per state, on one line."""
    print(
        f"{name}: {counts.sent:,} sent, {counts.failed:,} failed, {counts.unknown:,} unknown, "
        f"{counts.pending:,} pending, {counts.in_flight:,} in flight, {counts.invalid:,} "
        f"invalid, {counts.duplicate:,} duplicates ({counts.total:,} inputs)",
        file=out,
        flush=True,
    )


def join_titles(selected: Iterable[Provider]) -> str:
    """Providers' titles as a sentence lists them: ``SpeedSMS, eSMS and Fibo``."""
    titles = [provider.title for provider in selected]
    if len(titles) < 2:
        return "".join(titles)
    return ", ".join(titles[:-1]) + " and " + titles[-1]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """A plain-text table, each column as wide as its widest cell. A row of one cell is a note
    under the row before it: printed as it is, it widens no column."""
    cells = [row for row in rows if len(row) > 1]
    widths = [
        max([len(header), *(len(row[i]) for row in cells if len(row) > i)])
        for i, header in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        if len(row) == 1:
            print(row[0], file=out)
        else:
            print(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip(), file=out
            )
