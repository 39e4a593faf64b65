"""The attempt timer: one tick bounds every attempt on the transport's own session, where aiohttp
would start and cancel a timer of its own per request (``smsvn/_attempt_timer.py``).

What must hold: an attempt still ends when its time is up (as ``OutcomeUnknown``, exactly as
aiohttp's own timer made it end), a caller's cancellation still cancels (never taken for a
timeout, even when both come at once), nothing of a finished attempt stays registered, and a send
no longer costs the loop a timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from smsvn import errors
from smsvn._attempt_timer import AttemptTimer
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY, SENTINEL_TOKEN, client_at

NUMBER = "0912345678"


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[str]:
    """A server on 127.0.0.1 that takes every request and never answers; yields its base URL."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@pytest.mark.parametrize("provider", ["speedsms", "fibo"])  # a POST, a GET
async def test_an_unanswered_send_ends_when_its_time_is_up(provider: str) -> None:
    async with Sandbox(speedsms_rate_limit=None) as sb, _silent_server() as base:
        client = client_at(sb, provider, base, rate_limit=None, retry=FAST_RETRY, timeout=0.4)
        async with client:
            for _ in range(2):  # the first request of a client, and a later one
                started = time.monotonic()
                with pytest.raises(errors.OutcomeUnknown) as caught:
                    await client.send(NUMBER, "hi")
                elapsed = time.monotonic() - started
                assert 0.4 <= elapsed < 0.4 + 0.05 + 0.5, elapsed
                assert caught.value.attempts == 1  # never resent after it may have left
            transport = client._transport
            assert transport.session().timeout.total is None  # the timer did it, not aiohttp
            assert transport._timer._due == {}
        assert sb.requests == {}  # the sandbox itself was never asked


async def test_a_callers_cancellation_is_not_taken_for_a_timeout() -> None:
    async with (
        _silent_server() as base,
        SpeedSMS(SENTINEL_TOKEN, base_url=base, rate_limit=None, timeout=5.0) as sms,
    ):
        task = asyncio.create_task(sms.send(NUMBER, "hi"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sms._transport._timer._due == {}


async def test_a_send_costs_the_loop_no_timer_of_its_own() -> None:
    """aiohttp's own total timeout pushed a ``TimerHandle`` on the loop's heap per request (its
    ``TimeoutHandle``) and cancelled it again; the attempt timer's tick is one handle a tick.
    (The simulator shares the loop: its own timers are not counted.)"""
    loop = asyncio.get_running_loop()
    timers: Counter[str] = Counter()
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers[getattr(callback, "__qualname__", "?")] += 1
        return call_at(when, callback, *args, **kwargs)

    async with Sandbox(speedsms_rate_limit=None) as sb:
        async with sb.client("speedsms", rate_limit=None) as sms:  # type: ignore[call-overload]
            await asyncio.gather(*(sms.send(NUMBER, "hi") for _ in range(100)))  # the pool
            loop.call_at = counting  # type: ignore[method-assign]
            try:
                sent = await asyncio.gather(*(sms.send(NUMBER, "hi") for _ in range(100)))
                read = await asyncio.gather(*(sms.balance() for _ in range(50)))  # GETs
            finally:
                del loop.call_at  # type: ignore[method-assign]
        assert len(sent) == 100 and len(read) == 50
    assert timers["TimeoutHandle.__call__"] == 0, timers
    assert timers["AttemptTimer._sweep"] <= 3, timers


async def _attempt(timer: AttemptTimer, waits: asyncio.Future[None]) -> str:
    """An attempt as ``Transport.call`` makes one: registered, awaited, told apart, stopped."""
    task = timer.start()
    assert task is not None
    try:
        await waits
    except asyncio.CancelledError:
        if timer.expired(task):
            return "ran out of time"
        raise
    finally:
        timer.stop(task)
    return "answered"


async def test_the_tick_ends_an_attempt_past_its_time_and_takes_its_cancellation_back() -> None:
    timer = AttemptTimer(0.05)
    started = time.monotonic()
    task = asyncio.create_task(_attempt(timer, asyncio.get_running_loop().create_future()))
    assert await task == "ran out of time"
    assert 0.05 <= time.monotonic() - started < 0.5
    assert task.cancelling() == 0
    await asyncio.sleep(0.05)  # a tick with nothing in flight: the timer stops ticking
    assert timer._handle is None


async def test_a_cancellation_in_the_same_moment_as_the_tick_still_cancels() -> None:
    """The tick and the caller both cancel before the attempt runs again: the caller's
    cancellation must not be swallowed as a timeout."""
    timer = AttemptTimer(10.0)
    task = asyncio.create_task(_attempt(timer, asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0)  # registered, waiting
    timer.close()  # the tick comes by hand here, not from the loop
    timer._due[task] = (0.0, 0)  # its time is up
    timer._sweep(asyncio.get_running_loop())
    task.cancel()  # the caller, in the same moment
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    timer.close()


async def test_an_attempt_answered_in_time_is_left_alone() -> None:
    timer = AttemptTimer(0.05)
    waits: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_attempt(timer, waits))
    await asyncio.sleep(0)
    waits.set_result(None)
    assert await task == "answered"
    assert timer._due == {}
    await asyncio.sleep(0.1)  # ticks after it: nothing to cancel
    assert not task.cancelled() and task.cancelling() == 0
    timer.close()
