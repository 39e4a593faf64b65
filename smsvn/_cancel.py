"""Cancellation delivered once, whoever asks for it again and again."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["cancelled_once"]

T = TypeVar("T")


async def cancelled_once(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` in a task of its own, which a cancellation of the caller reaches once.

    asyncio cancels a task once; an anyio cancel scope (taskiq's job timeout, a Starlette or
    FastAPI scope) cancels it again at every await until it ends, and so interrupts the
    clean-up ``work`` does when cancelled (handing back batches that have not left, retiring
    a journal runner). Here the first cancellation is passed on to ``work`` and the caller
    waits, taking the others, until ``work`` has finished cleaning up; then it is cancelled
    as asked.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        while not task.done():
            try:
                await asyncio.wait((task,))
            except asyncio.CancelledError:
                continue
        if not task.cancelled():
            task.exception()  # retrieved: the caller is cancelled, whatever ``work`` ended with
        raise
