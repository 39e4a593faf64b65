"""Shared limits (``smsvn.RedisLimiter``): what N processes on one account reach, and what the
shared limiter costs per request. Standalone (needs the ``redis`` extra and a Redis):

    .venv/bin/python benchmarks/shared_limits.py                    # 4 x 50, 60 / 1 s, 20 s
    .venv/bin/python benchmarks/shared_limits.py --processes 8 --seconds 60 --limit 120/1
    .venv/bin/python benchmarks/shared_limits.py --redis-url redis://127.0.0.1:6379/0 --json

Two parts:

- ``share``: the simulator in its own process with its SpeedSMS limit compressed to ``--limit``
  (the ground truth: it answers 429 past it), and ``--processes`` worker processes of
  ``--coroutines`` SpeedSMS clients each, every process with its own ``RedisLimiter``. Reports the
  accepted rate as a share of the limit (target >= 97 %), the most arrivals in any window, 429s,
  Redis round trips per request (target <= 1.1) and the workers' CPU per request.
- ``cost``: one process, one account with a limit far above what it can reach, ``acquire()`` in
  a loop from 16 coroutines: the limiter's own round trip and CPU per request, in-process
  (``AccountLimiter``) against shared (``RedisLimiter``).

It uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing
import os
import sys
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

from smsvn.limits import AccountLimiter, RateLimit

CTX = multiprocessing.get_context("spawn")


def _simulator(conn: Connection, requests: int, period: float, latency: float) -> None:
    async def main() -> None:
        from smsvn.sandbox import Sandbox

        limit = RateLimit(requests=requests, period=period)
        async with Sandbox(speedsms_rate_limit=limit, delivery_delay=3600.0, latency=latency) as sb:
            conn.send(sb.client_options("speedsms"))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)
            accepted = sorted(r.accepted_at for r in sb.outbox)
            conn.send({"accepted": accepted, "rate_limited": sb.stats.rate_limited})

    asyncio.run(main())


def _worker(conn: Connection, url: str, prefix: str, options: dict[str, Any], co: int) -> None:
    async def main() -> None:
        from smsvn import SpeedSMS
        from smsvn._shared_limits import RedisLimiter

        limiter = RedisLimiter(url, prefix=prefix)
        sent = 0
        async with SpeedSMS(**options, limiter=limiter) as sms:
            conn.send("ready")
            start_at, end_at = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            cpu = time.process_time()

            async def one() -> None:
                nonlocal sent
                while True:
                    await sms.send("0912345678", "Xin chao")
                    sent += 1

            tasks = [asyncio.create_task(one()) for _ in range(co)]
            await asyncio.sleep(max(0.0, end_at - time.time()))
            cpu = time.process_time() - cpu
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await limiter.aclose()
        conn.send({"sent": sent, "calls": limiter.calls, "cpu": cpu})

    asyncio.run(main())


def max_in_window(times: list[float], period: float) -> int:
    return max((bisect.bisect_left(times, t + period) - i for i, t in enumerate(times)), default=0)


def share(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    requests, period = (float(x) for x in args.limit.split("/"))
    sim_conn, child = CTX.Pipe()
    sim = CTX.Process(target=_simulator, args=(child, int(requests), period, args.latency))
    sim.start()
    options = sim_conn.recv()
    workers = []
    for _ in range(args.processes):
        conn, child = CTX.Pipe()
        proc = CTX.Process(
            target=_worker, args=(child, args.redis_url, prefix, options, args.coroutines)
        )
        proc.start()
        workers.append((proc, conn))
    for _, conn in workers:
        assert conn.recv() == "ready"
    start = time.time() + 0.5
    end = start + args.seconds
    for _, conn in workers:
        conn.send((start, end))
    results = [conn.recv() for _, conn in workers]
    sim_conn.send("report")
    report = sim_conn.recv()
    for proc, _ in workers:
        proc.join()
    sim.join()
    accepted = [t for t in report["accepted"] if start <= t < end]
    sent = sum(r["sent"] for r in results)
    return {
        "limit": args.limit,
        "processes": args.processes,
        "coroutines": args.coroutines,
        "seconds": args.seconds,
        "latency": args.latency,
        "utilisation": len(accepted) / (requests / period * args.seconds),
        "max_in_window": max_in_window(sorted(report["accepted"]), period),
        "rate_limited": report["rate_limited"],
        "calls_per_request": sum(r["calls"] for r in results) / max(1, sent),
        "cpu_us_per_request": 1e6 * sum(r["cpu"] for r in results) / max(1, sent),
    }


async def _cost(url: str, prefix: str, count: int) -> dict[str, Any]:
    from smsvn._shared_limits import RedisLimiter

    limit = RateLimit(requests=10_000_000, period=1.0, burst=1_000_000)
    out: dict[str, Any] = {}
    for name in ("in-process", "redis"):
        shared = RedisLimiter(url, prefix=prefix) if name == "redis" else None
        acc = shared.for_account("bench", "00" * 16, limit) if shared else AccountLimiter(limit)
        await acc.acquire()  # load the script, subscribe

        async def loop(n: int, acc: Any = acc) -> None:
            for _ in range(n):
                await acc.acquire()

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(loop(count // 16) for _ in range(16)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[name] = {
            "acquire_per_s": count / wall,
            "cpu_us_per_acquire": 1e6 * cpu / count,
            "calls_per_acquire": (shared.calls - 2) / count if shared else 0.0,
        }
        if shared:
            await shared.aclose()
    return out


def cleanup(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SMSVN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--coroutines", type=int, default=50)
    parser.add_argument("--limit", default="60/1", help="N/T: N requests in any T seconds")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency", type=float, default=0.0, help="simulated provider latency")
    parser.add_argument("--cost-count", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="one JSON line, no table")
    args = parser.parse_args()
    prefix = f"smsvn-bench-{uuid.uuid4().hex[:8]}"
    try:
        result = {"share": share(args, prefix)}
        result["cost"] = asyncio.run(_cost(args.redis_url, prefix, args.cost_count))
    finally:
        cleanup(args.redis_url, prefix)
    if args.json:
        print(json.dumps(result))
        return 0
    s = result["share"]
    print(
        f"share: {s['processes']} processes x {s['coroutines']} coroutines, limit {s['limit']}, "
        f"{s['seconds']:g} s, latency {s['latency'] * 1000:g} ms"
    )
    print(f"  accepted rate     {s['utilisation']:.1%} of the limit (target >= 97 %)")
    print(f"  most in a window  {s['max_in_window']}   429s: {s['rate_limited']}")
    print(f"  Redis calls/req   {s['calls_per_request']:.3f} (target <= 1.1)")
    print(f"  worker CPU/req    {s['cpu_us_per_request']:.0f} us (client, limiter and all)")
    print("cost of the limiter alone (one process, 16 coroutines, no limit reached):")
    for name, c in result["cost"].items():
        print(
            f"  {name:<10} {c['acquire_per_s']:>9.0f} acquire/s  "
            f"{c['cpu_us_per_acquire']:>6.1f} us CPU each  {c['calls_per_acquire']:.3f} calls each"
        )
    ok = s["utilisation"] >= 0.97 and s["rate_limited"] == 0 and s["calls_per_request"] <= 1.1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
