"""One timer for all the attempts in flight on a transport's own session, instead of one each.

aiohttp bounds a request's total time with a timer per request: a ``TimerHandle`` pushed on the
loop's heap and cancelled again, and a context entered around every wait. That is ~400 bytecodes
of asyncio and aiohttp a request, about a tenth of a single send's CPU (benchmarks/README.md).
So the transport's own session has no total timeout; each attempt registers its task and the
moment it must end here, and one periodic tick cancels the tasks past theirs, which is what
aiohttp's timer does too: the attempt turns that cancellation into the same ``TimeoutError``.

The tick is an eighth of the timeout, at most a second (and at least a millisecond): an attempt
ends between ``timeout`` and ``timeout`` + tick after it began (aiohttp rounds a timeout of 5 s
or more up to the next whole second the same way). It ticks only while attempts are in flight.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

__all__ = ["AttemptTimer"]

_MAX_TICK = 1.0
_MIN_TICK = 0.001
_now = time.monotonic
"""The deadlines' clock, read in C: ``loop.time()`` is a Python frame around the same clock (and
the loop only schedules the tick; an attempt's end is measured here). So an event loop with a
clock of its own (a test's virtual time) does not hasten a timeout: it comes in real seconds."""


class AttemptTimer:
    """The deadlines of one transport's attempts, checked by one tick (see the module)."""

    __slots__ = ("_due", "_fired", "_handle", "_loop", "_tick", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._tick = max(min(timeout / 8, _MAX_TICK), _MIN_TICK)
        self._due: dict[asyncio.Task[Any], tuple[float, int]] = {}
        """Each attempt's task: when it must end, and its pending cancellations when it began."""
        self._fired: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
        """The tasks the tick cancelled, not yet told (``expired``)."""
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> asyncio.Task[Any] | None:
        """Register the running task's attempt; None outside a task (nothing registered)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            return None
        self._due[task] = (_now() + self._timeout, task.cancelling())
        if self._handle is None or self._loop is not loop:
            self._loop = loop
            self._handle = loop.call_later(self._tick, self._sweep, loop)
        return task

    def stop(self, task: asyncio.Task[Any]) -> None:
        """The attempt of ``task`` has ended, however it ended."""
        self._due.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether a ``CancelledError`` in ``task``'s attempt is this timer's alone (the attempt
        ran out of time). The timer's cancellation is taken back either way; when something
        else cancelled the task too, the answer is no and the cancellation goes on."""
        cancelling = self._fired.pop(task, None)
        if cancelling is None:
            return False
        return task.uncancel() <= cancelling

    def close(self) -> None:
        """Stop ticking (the transport is closed)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = _now()
        due = self._due
        late = [(task, entry[1]) for task, entry in due.items() if entry[0] <= now]
        for task, cancelling in late:
            del due[task]
            if task.done():
                continue
            self._fired[task] = cancelling
            task.cancel()
        self._handle = loop.call_later(self._tick, self._sweep, loop) if due else None
