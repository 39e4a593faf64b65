"""The simulator in its own process, for the benchmarks: ``python benchmarks/server.py``.

Runs ``smsvn.sandbox.Sandbox`` with the outbox off and balances large enough for millions of
sends; by default with SpeedSMS's rate limit off (``--limit 50/1`` turns on a compressed one for
the limiter scenario), ``--latency 0.02`` delays every answer by 20 ms. Prints one JSON line
(URLs and credentials) once it listens, then serves until killed or until stdin closes. Each line
``stats`` written to its stdin is answered by one JSON line of counters (requests, 429s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

from smsvn.limits import RateLimit
from smsvn.sandbox import Sandbox

_HUGE = 1e15


def _limit(text: str | None) -> RateLimit | None:
    if not text:
        return None
    requests, period = text.split("/")
    return RateLimit(requests=int(requests), period=float(period))


async def _main(args: argparse.Namespace) -> None:
    limit = _limit(args.limit)
    sandbox = Sandbox(
        port=args.port,
        speedsms_rate_limit=limit,
        latency=args.latency,
        record_outbox=False,
        delivery_delay=0.0,
        balances={"speedsms": _HUGE, "esms": _HUGE, "fibo": _HUGE},
    )
    async with sandbox:
        info = {
            "pid": os.getpid(),
            "url": sandbox.url,
            "speedsms_url": sandbox.speedsms_url,
            "speedsms_token": sandbox.speedsms_token,
            "esms_url": sandbox.esms_url,
            "esms_api_key": sandbox.esms_api_key,
            "esms_secret_key": sandbox.esms_secret_key,
            "esms_brandname": sandbox.esms_brandname,
            "fibo_url": sandbox.fibo_url,
            "fibo_client_no": sandbox.fibo_client_no,
            "fibo_client_pass": sandbox.fibo_client_pass,
            "latency": args.latency,
            "limit_requests": limit.requests if limit else None,
            "limit_period": limit.period if limit else None,
        }
        print(json.dumps(info), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"stats":
                stats = {
                    "requests": sum(sandbox.requests.values()),
                    "rate_limited": sandbox.stats.rate_limited,
                    "accepted": dict(sandbox.stats.accepted),
                }
                print(json.dumps(stats), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    parser.add_argument("--limit", default=None, help="SpeedSMS limit N/T (off when absent)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
