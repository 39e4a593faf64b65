"""Real processes for the taskiq tests: the simulator in a process of its own (the ground truth),
and ``taskiq worker tests.taskiq.app:broker`` processes on a real Redis broker.

The simulator reports every message it accepted (number, Unix time, message id) and the 429s it
answered for its SpeedSMS window (compressed to ``requests`` per ``period``). A worker is the real
``taskiq worker`` command (its process manager and one worker child) in a session of its own, so
that the test can SIGKILL the whole of it; its stderr tells the test when it listens, which
journal runners it registered (``runner <id>``), which task ids it executed and when its limiter
let each request go (``taken <Unix time>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

import smsvn.taskiq
from smsvn import providers
from smsvn.limits import RateLimit
from tests.multiprocess.harness import CTX
from tests.services import delete_keys

__all__ = [
    "PERIOD",
    "REQUESTS",
    "SIMULATOR_WINDOW",
    "Config",
    "Simulator",
    "Worker",
    "arrivals",
    "cleanup",
    "drained",
    "executing",
    "listening",
    "make_broker",
    "new_config",
    "producer",
    "provider_env",
    "stop_all",
    "worker_env",
]

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 10
PERIOD = 1.0
"""The workers' SpeedSMS limit is ``REQUESTS`` per ``PERIOD``, compressed from 60 a minute."""
SIMULATOR_WINDOW = PERIOD * 0.95
"""The simulator answers 429 to more than ``REQUESTS`` in any such window: the rest of the
period is for the trip to it, whose delay the limiter's margin (2 %) does not all cover on a
busy machine."""


@dataclass(frozen=True)
class Config:
    """What the workers' tasks module (``tests.taskiq.app``) is built from: nothing secret."""

    redis_url: str
    prefix: str
    """The broker's Redis keys are under it (stream, results)."""
    limiter: str
    """The shared limiter's prefix: one for every worker that sends to the simulator."""
    requests: int
    period: float
    idle_ms: int = 60_000
    """Milliseconds after which taskiq-redis hands an unacknowledged message to another worker."""
    kill: float = 0.0
    """The chance a worker SIGKILLs itself at each of ``moments`` (``tests.campaign.runner``)."""
    moments: tuple[str, ...] = ("claimed", "departed", "answered", "settled")
    seed: int = 0

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    @property
    def group(self) -> str:
        return f"{self.prefix}-workers"

    def json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def make_broker(config: Config) -> RedisStreamBroker:
    """The broker of the test's workers and of the test itself (which sends the tasks)."""
    broker = RedisStreamBroker(
        config.redis_url,
        queue_name=config.queue,
        consumer_group_name=config.group,
        xread_count=1,  # one message at a time: what a busy worker does not take, a free one does
        xread_block=100,
        idle_timeout=config.idle_ms,
        unacknowledged_lock_timeout=2,
    )
    backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
        config.redis_url, prefix_str=f"{config.prefix}:results", result_ex_time=600
    )
    return broker.with_result_backend(backend)


def delete_broker_keys(config: Config) -> None:
    """taskiq-redis's lock key outside the test's prefix (the rest goes with the prefix)."""
    import redis

    client = redis.Redis.from_url(config.redis_url)
    try:
        client.delete(f"autoclaim:{config.group}:{config.queue}")
    finally:
        client.close()


def new_config(redis_url: str, limiter: str, **overrides: Any) -> Config:
    return Config(
        redis_url=redis_url,
        prefix=f"smsvn-test-{uuid.uuid4().hex[:12]}",
        limiter=limiter,
        requests=REQUESTS,
        period=PERIOD,
        **overrides,
    )


def cleanup(config: Config) -> None:
    delete_keys(config.redis_url, config.prefix)
    delete_broker_keys(config)


@asynccontextmanager
async def producer(
    config: Config,
) -> AsyncIterator[tuple[RedisStreamBroker, smsvn.taskiq.CampaignTask]]:
    """The app's side: the same broker and task, started as a client (which also creates the
    stream's consumer group, so that no message is sent before it)."""
    broker = make_broker(config)
    task = smsvn.taskiq.register(broker)
    await broker.startup()
    try:
        yield broker, task
    finally:
        await broker.shutdown()


# -- the simulator process -------------------------------------------------------------------


def simulator_main(conn: Connection, requests: int, period: float, latency: float) -> None:
    asyncio.run(_simulator(conn, requests, period, latency))


async def _simulator(conn: Connection, requests: int, period: float, latency: float) -> None:
    from smsvn.sandbox import Sandbox

    async with Sandbox(
        speedsms_rate_limit=RateLimit(requests=requests, period=period),
        delivery_delay=3600.0,
        latency=latency,
    ) as sb:
        conn.send({p: sb.client_options(p) for p in providers.names()})
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "report":
                conn.send(
                    {
                        "outbox": [(r.phone, r.accepted_at, r.message_id) for r in sb.outbox],
                        "rate_limited": sb.stats.rate_limited,
                    }
                )
            else:
                conn.send(None)
                return


class Simulator:
    """The simulator's process, its SpeedSMS limit compressed to ``requests`` per ``period``."""

    def __init__(self, requests: int, period: float, latency: float = 0.005) -> None:
        self._conn, child = CTX.Pipe()
        self._proc = CTX.Process(
            target=simulator_main,
            args=(child, requests, period, latency),
            name="simulator",
            daemon=True,
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(60):
            raise RuntimeError("the simulator process did not start")
        self.client_options: dict[str, dict[str, Any]] = self._conn.recv()

    def report(self) -> dict[str, Any]:
        self._conn.send("report")
        if not self._conn.poll(30):
            raise RuntimeError("the simulator did not report")
        return dict(self._conn.recv())

    def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError, EOFError):
                self._conn.send("stop")
                self._conn.poll(10)
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


# -- worker processes --------------------------------------------------------------------------


def worker_env(config: Config, provider: str, options: dict[str, Any]) -> dict[str, str]:
    """A worker's environment: the machine's, less any ``SMSVN_*``, plus the provider's
    settings (``provider_env``) and the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
    env.update(provider_env(provider, options))
    env["SMSVN_TEST_TASKIQ"] = config.json()
    return env


def provider_env(provider: str, options: dict[str, Any]) -> dict[str, str]:
    """The provider's credentials, base URL and sending defaults (a sandbox's
    ``client_options``) as the ``SMSVN_*`` variables ``from_env`` reads."""
    env: dict[str, str] = {}
    entry = providers.get(provider)
    for credential in entry.credentials:
        env[credential.env] = str(options[credential.name])
    prefix = f"SMSVN_{provider.upper()}_"
    env[prefix + "BASE_URL"] = str(options["base_url"])
    if entry.sender_option is not None and options.get(entry.sender_option):
        env[prefix + entry.sender_option.upper()] = str(options[entry.sender_option])
    if options.get("sms_type") is not None:
        env[prefix + "SMS_TYPE"] = str(options["sms_type"])
    return env


class Worker:
    """One ``taskiq worker`` command: a process manager and one worker process, one task at a
    time; a worker process that dies is not restarted (``--max-fails 1``: the test decides)."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "taskiq", "worker", "tests.taskiq.app:broker",
                "--workers", "1", "--max-fails", "1", "--max-async-tasks", "1",
                "--shutdown-timeout", "2",
            ],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.listening = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if "Listening started." in line:
                self.listening.set()

    @property
    def runners(self) -> list[int]:
        """The journal runners this worker registered, in order."""
        return [int(line.split()[1]) for line in self.lines if line.startswith("runner ")]

    @property
    def taken(self) -> list[float]:
        """When this worker's limiter let each request go (Unix times), in order."""
        return [float(line.split()[1]) for line in self.lines if line.startswith("taken ")]

    @property
    def executed(self) -> list[str]:
        """The task ids this worker started executing, in order."""
        return [line.rsplit("ID: ", 1)[1] for line in self.lines if "with ID: " in line]

    @property
    def child_gone(self) -> bool:
        """Whether the worker process the manager started has ended (gone or a zombie that its
        manager has not reaped yet)."""
        pids = [int(line.rsplit(" ", 1)[1]) for line in self.lines if "Started process" in line]
        assert pids, self.tail()
        try:
            with open(f"/proc/{pids[0]}/stat", encoding="ascii") as handle:
                stat = handle.read()
        except FileNotFoundError:
            return True
        return stat[stat.rindex(")") + 2] == "Z"

    def tail(self) -> str:
        return "\n".join(self.lines[-30:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the manager and its worker: no cleanup, no acknowledgement."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Ask it to stop (SIGINT, as Ctrl-C would), then make sure of it."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(8)
        self.kill()  # whatever is left of the session (a worker child outliving its manager)
        self.process.wait()
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


async def listening(workers: Iterable[Worker], within: float = 30.0) -> None:
    """Wait until every worker listens to the broker."""
    deadline = time.monotonic() + within
    for worker in workers:
        while not worker.listening.is_set():
            if not worker.alive:
                raise AssertionError(f"{worker.name} ended:\n{worker.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{worker.name} did not start:\n{worker.tail()}")
            await asyncio.sleep(0.02)


async def executing(workers: Iterable[Worker], within: float = 20.0) -> None:
    """Wait until every worker has started executing a task."""
    deadline = time.monotonic() + within
    for worker in workers:
        while not worker.executed:
            if time.monotonic() > deadline:
                raise AssertionError(f"{worker.name} executed no task:\n{worker.tail()}")
            await asyncio.sleep(0.02)


def stop_all(workers: Iterable[Worker]) -> None:
    """Stop the workers together (each waits for its manager's one-second tick)."""
    workers = list(workers)
    for worker in workers:
        if worker.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGINT)
    for worker in workers:
        worker.stop()


async def drained(config: Config, within: float = 30.0) -> None:
    """Wait until every message of the test's stream was delivered and acknowledged (taskiq
    acknowledges a message once its task has ended: nothing is running any more)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(config.redis_url)
    try:
        async with asyncio.timeout(within):
            while True:
                stream = await client.xinfo_stream(config.queue)
                groups = await client.xinfo_groups(config.queue)
                (group,) = [g for g in groups if g["name"].decode() == config.group]
                if (
                    not group["pending"]
                    and group["last-delivered-id"] == stream["last-generated-id"]
                ):
                    return
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def arrivals(outbox: list[tuple[str, float, str | None]]) -> list[float]:
    """The Unix time of each accepted request (the outbox has a record per recipient)."""
    first: dict[str | None, float] = {}
    for _, at, message_id in outbox:
        first[message_id] = min(at, first.get(message_id, at))
    return sorted(first.values())
