"""One benchmark scenario per process: ``python benchmarks/scenarios.py NAME --server JSON``.

Each scenario prints one JSON object on stdout: requests, wall seconds, client CPU seconds and
whatever else it measures. ``benchmarks/run.py`` starts the simulator (``benchmarks/server.py``)
in its own process, runs every scenario in its own process (pinned to its own core where the
machine allows), and compares them.

Every SpeedSMS scenario sends the same work: requests of 100 canonical numbers (``09...``) and one
60-character GSM-7 content, against the simulator with its rate limit off; ``floor-single``,
``single`` and ``single-uvloop`` send the same numbers one a request, written ``84...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import itertools
import json
import re
import resource
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from itertools import chain, islice
from typing import Any

import msgspec

CONTENT = "Khuyen mai 20% cho khach hang than thiet, chi trong hom nay"
BATCH = 100
N_BATCHES = 64


def _numbers(start: int, count: int) -> list[str]:
    return [f"09{(start + i) % 100_000_000:08d}" for i in range(count)]


def _batches() -> list[list[str]]:
    return [_numbers(i * BATCH, BATCH) for i in range(N_BATCHES)]


def _singles() -> list[str]:
    """The numbers of the single-send scenarios, written ``84...`` as a web form may give them:
    the 6,400 numbers of ``_batches``."""
    return ["84" + n[1:] for n in _numbers(0, N_BATCHES * BATCH)]


# -- memory: the kernel's high-water mark, reset to the current RSS before a measurement --------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    """Set the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else 0.0


def _peak_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # ru_maxrss: the process-lifetime peak (KiB on Linux)
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


# -- the driver of the request scenarios ---------------------------------------------------------


SLICES = 20
"""A timed run is cut into this many slices of equal request counts (see ``_drive``)."""


async def _drive(
    requests: int, concurrency: int, one: Callable[[int], Awaitable[None]], warmup: int = 1000
) -> dict[str, Any]:
    """Run ``requests`` calls of ``one`` with ``concurrency`` workers; time wall and CPU.

    ``warmup`` calls go first the same way, untimed: they open every connection of the pool and
    let the workers fall out of step (httpx is 4x slower while all 64 start together), so what
    is timed is the steady state. The timed run is also measured in ``SLICES`` slices: the
    medians over them (``rps_slices``, ``cpu_us_slices``) leave out the slices another process
    on a shared machine slowed down, which the whole-run figures cannot; each slice's CPU per
    request (``cpu_us_each``) lets ``run.py`` find the quiet ones across rounds.
    """
    step = max(requests // SLICES, 1)
    marks: list[tuple[float, float]] = []
    mark = marks.append
    clock, cpu_clock = time.perf_counter, time.process_time

    done = 0

    async def workers(count: int, timed: bool) -> None:
        counter = iter(range(count))

        async def worker() -> None:
            nonlocal done
            for i in counter:
                await one(i)
                if timed:
                    done += 1
                    if done % step == 0:
                        mark((clock(), cpu_clock()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await workers(warmup, False)
    gc.collect()
    wall0, cpu0 = clock(), cpu_clock()
    mark((wall0, cpu0))
    await workers(requests, True)
    wall, cpu = clock() - wall0, cpu_clock() - cpu0
    result = _rates({"requests": requests, "concurrency": concurrency}, wall, cpu)
    slices = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(marks) if b[0] > a[0]]
    if slices:
        result["rps_slices"] = statistics.median(step / dt for dt, _ in slices)
        result["cpu_us_slices"] = statistics.median(dc / step * 1e6 for _, dc in slices)
        result["cpu_us_each"] = [round(dc / step * 1e6, 3) for _, dc in slices]
    return result


def _rates(result: dict[str, Any], wall: float, cpu: float) -> dict[str, Any]:
    requests = result["requests"]
    result.update(
        wall=wall,
        cpu=cpu,
        rps=requests / wall if wall else 0.0,
        cpu_us_per_request=cpu / requests * 1e6 if requests else 0.0,
    )
    return result


# -- (1) the floor: bare aiohttp + msgspec ------------------------------------------------------


class _Data(msgspec.Struct):
    tranId: int | str
    totalSMS: int | None = None
    totalPrice: float | None = None
    invalidPhone: list[str | int] = []


class _Envelope(msgspec.Struct):
    status: str
    code: str
    data: _Data | None = None


class _Body(msgspec.Struct):
    to: list[str]
    content: str
    sms_type: int
    sender: str


def _floor_session(server: dict[str, Any]) -> tuple[Any, str, dict[str, str]]:
    """The floor's session (a pool of 64), URL and headers."""
    import aiohttp

    auth = base64.b64encode(f"{server['speedsms_token']}:x".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=64)
    return aiohttp.ClientSession(connector=connector), f"{server['speedsms_url']}/sms/send", headers


async def floor(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """The least a correct client does: encode, POST on a pooled connection, decode, check."""
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder(_Envelope)
    batches = _batches()
    session, url, headers = _floor_session(server)
    async with session:

        async def one(i: int) -> None:
            to = ["84" + n[1:] for n in batches[i % N_BATCHES]]
            body = encoder.encode(_Body(to=to, content=CONTENT, sms_type=2, sender=""))
            async with session.post(url, data=body, headers=headers) as resp:
                envelope = decoder.decode(await resp.read())
            if envelope.status != "success" or envelope.data is None:
                raise RuntimeError(envelope.code)

        return await _drive(requests, concurrency, one)


async def floor_single(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """The floor of an OTP-style send: one ``84...`` number a request. Builds the body with a
    Struct, POSTs it, checks the HTTP status, decodes the answer into a Struct and checks it."""
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder(_Envelope)
    numbers = _singles()
    count = len(numbers)
    session, url, headers = _floor_session(server)
    async with session:

        async def one(i: int) -> None:
            body = encoder.encode(
                _Body(to=[numbers[i % count]], content=CONTENT, sms_type=2, sender="")
            )
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(resp.status)
                envelope = decoder.decode(await resp.read())
            if envelope.status != "success" or envelope.data is None:
                raise RuntimeError(envelope.code)

        return await _drive(requests, concurrency, one)


# -- (2) smsvn ---------------------------------------------------------------------------------


async def smsvn_send(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """``SpeedSMS.send`` of 100 numbers, the limiter off, ``concurrency`` calls at once."""
    import smsvn

    batches = _batches()
    async with smsvn.SpeedSMS(
        server["speedsms_token"], base_url=server["speedsms_url"], rate_limit=None
    ) as sms:

        async def one(i: int) -> None:
            result = await sms.send(batches[i % N_BATCHES], CONTENT)
            if len(result.recipients) != BATCH:
                raise RuntimeError(result)

        return await _drive(requests, concurrency, one)


async def smsvn_single(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """``SpeedSMS.send(number, content)`` of one ``84...`` number a call (an OTP), the limiter
    off, ``concurrency`` calls at once."""
    import smsvn

    numbers = _singles()
    count = len(numbers)
    async with smsvn.SpeedSMS(
        server["speedsms_token"], base_url=server["speedsms_url"], rate_limit=None
    ) as sms:

        async def one(i: int) -> None:
            result = await sms.send(numbers[i % count], CONTENT)
            if len(result.recipients) != 1:
                raise RuntimeError(result)

        return await _drive(requests, concurrency, one)


# -- (3) httpx, what a user might write instead ------------------------------------------------


async def httpx_send(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """``httpx.AsyncClient`` with a pool of 64 and its JSON helpers."""
    import httpx

    url = f"{server['speedsms_url']}/sms/send"
    batches = _batches()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    auth = (server["speedsms_token"], "x")
    async with httpx.AsyncClient(limits=limits, auth=auth) as client:

        async def one(i: int) -> None:
            to = ["84" + n[1:] for n in batches[i % N_BATCHES]]
            payload = {"to": to, "content": CONTENT, "sms_type": 2, "sender": ""}
            resp = await client.post(url, json=payload)
            if resp.json()["status"] != "success":
                raise RuntimeError(resp.text)

        return await _drive(requests, concurrency, one)


# -- (4) the vendor samples' style: one blocking request at a time, new connection each --------


async def vendor(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """``requests.post`` in a loop, as the vendors' PHP/Python samples do (no session)."""
    import requests as http

    url = f"{server['speedsms_url']}/sms/send"
    batches = _batches()
    auth = (server["speedsms_token"], "x")

    def one(i: int) -> None:
        to = ["84" + n[1:] for n in batches[i % N_BATCHES]]
        payload = {"to": to, "content": CONTENT, "sms_type": 2, "sender": ""}
        resp = http.post(url, json=payload, auth=auth, timeout=30)
        if resp.json()["status"] != "success":
            raise RuntimeError(resp.text)

    one(-1)
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(requests):
        one(i)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return _rates({"requests": requests, "concurrency": 1}, wall, cpu)


# -- (5) send_bulk of a million numbers --------------------------------------------------------


def _campaign(recipients: int) -> Iterator[str]:
    """Distinct canonical numbers over ten prefixes, generated lazily at C speed (~0.1 us a
    number, as a database cursor would hand them over), so the input costs little of the CPU
    measured."""
    prefixes = (90, 91, 93, 94, 96, 97, 98, 32, 86, 70)
    share = -(-recipients // len(prefixes))
    ranges = (range(p * 10**7, p * 10**7 + share) for p in prefixes)
    numbers = chain.from_iterable(map("0".__add__, map(str, r)) for r in ranges)
    return islice(numbers, recipients)


async def bulk(
    server: dict[str, Any], requests: int, concurrency: int, *, dedupe: bool = True
) -> dict[str, Any]:
    """``send_bulk`` of ``requests * 100`` distinct numbers streamed from a generator; peak
    extra memory is the RSS high-water mark during the run minus the RSS just before it."""
    import smsvn

    recipients = requests * BATCH
    async with smsvn.SpeedSMS(
        server["speedsms_token"], base_url=server["speedsms_url"], rate_limit=None
    ) as sms:
        await sms.send(_numbers(0, BATCH), CONTENT)  # warm up: imports, session, one connection
        gc.collect()
        base = _rss_mb()
        exact = _reset_peak()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        report = await sms.send_bulk(
            _campaign(recipients),
            CONTENT,
            keep_results=False,
            dedupe=dedupe,
            concurrency=concurrency,
        )
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        peak = _peak_mb()
    if report.accepted != recipients or report.failed or report.unknown or report.aborted:
        raise RuntimeError(f"bulk run incomplete: {report.accepted} of {recipients} accepted")
    result = _rates({"requests": report.requests, "concurrency": concurrency}, wall, cpu)
    result.update(
        recipients=recipients,
        accepted=report.accepted,
        dedupe=dedupe,
        recipients_per_s=report.accepted / wall,
        cpu_us_per_recipient=cpu / recipients * 1e6,
        base_rss_mb=base,
        peak_extra_mb=peak - base,
        peak_method="VmHWM reset" if exact else "ru_maxrss",
    )
    return result


async def bulk_nodedupe(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """The same bulk send with ``dedupe=False``: the engine's memory without the seen-set."""
    return await bulk(server, requests, concurrency, dedupe=False)


# -- (6) limiter utilisation under a compressed limit ------------------------------------------


async def limiter(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """``send_bulk`` with the client's limiter set to the server's own (compressed) limit:
    the achieved request rate against the allowed N/T, and the 429s met."""
    import smsvn
    from smsvn.limits import RateLimit
    from smsvn.transport import AttemptInfo, Hooks

    if not server.get("limit_requests"):
        raise RuntimeError("the limiter scenario needs a server started with --limit N/T")
    limit = RateLimit(requests=server["limit_requests"], period=server["limit_period"])
    started: list[float] = []
    statuses: list[int | None] = []

    def on_request(info: AttemptInfo) -> None:
        started.append(time.perf_counter())

    def on_response(info: AttemptInfo) -> None:
        statuses.append(info.status)

    hooks = Hooks(on_request=on_request, on_response=on_response)
    allowed = limit.requests / limit.period
    async with smsvn.SpeedSMS(
        server["speedsms_token"], base_url=server["speedsms_url"], rate_limit=limit, hooks=hooks
    ) as sms:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        report = await sms.send_bulk(
            _campaign(requests * BATCH), CONTENT, keep_results=False, concurrency=concurrency
        )
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result = _rates({"requests": report.requests, "concurrency": concurrency}, wall, cpu)
    # Sustained: attempts per second from the first to the last (the burst and the last
    # answer's latency left out); overall: attempts over the whole call.
    span = started[-1] - started[0] if len(started) > 1 else 0.0
    sustained = (len(started) - 1) / span if span else 0.0
    busiest, first = 0, 0
    for last, at in enumerate(started):
        while at - started[first] >= limit.period:
            first += 1
        busiest = max(busiest, last - first + 1)
    result.update(
        limit=f"{limit.requests}/{limit.period:g}s",
        attempts=len(started),
        accepted=report.accepted,
        allowed_rate=allowed,
        sustained_rate=sustained,
        overall_rate=len(started) / wall,
        utilisation=sustained / allowed,
        overall_utilisation=len(started) / wall / allowed,
        ceiling=limit.sustained_rate / allowed,
        busiest_window=busiest,
        http_429=statuses.count(429),
        aborted=None if report.aborted is None else str(report.aborted),
    )
    return result


# -- (7) per-item costs ------------------------------------------------------------------------


async def _answers(server: dict[str, Any]) -> dict[str, Any]:
    """One real send answer (a ``smsvn.transport.Response``) from each provider's simulator."""
    import smsvn
    from smsvn.transport import Response

    captured: dict[str, Response] = {}
    clients = {
        "speedsms": smsvn.SpeedSMS(
            server["speedsms_token"], base_url=server["speedsms_url"], rate_limit=None
        ),
        "esms": smsvn.ESMS(
            server["esms_api_key"],
            server["esms_secret_key"],
            base_url=server["esms_url"],
            rate_limit=None,
            brandname=server["esms_brandname"],
        ),
        "fibo": smsvn.Fibo(
            server["fibo_client_no"],
            server["fibo_client_pass"],
            base_url=server["fibo_url"],
            rate_limit=None,
            sender="SMSVN",
        ),
    }
    for name, client in clients.items():
        transport = client._transport
        call = transport.call

        async def capture(*args: Any, _name: str = name, _call: Any = call, **kw: Any) -> Any:
            parse = kw["parse"]

            def keep(response: Response) -> Any:
                captured[_name] = response
                return parse(response)

            return await _call(*args, **{**kw, "parse": keep})

        transport.call = capture  # type: ignore[method-assign]
        async with client:
            numbers = _numbers(0, BATCH) if name == "speedsms" else ["0912345678"]
            await client.send(numbers, CONTENT)
    return {"clients": clients, "responses": captured}


async def items(server: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """Microseconds per item of the client's pure-CPU steps (best of 5 repeats)."""
    from smsvn import phone
    from smsvn.providers import esms, fibo, speedsms
    from smsvn.providers._base import split_recipients

    def per_call(stmt: Callable[[], object], number: int) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e6

    got = await _answers(server)
    clients, responses = got["clients"], got["responses"]
    sp, es, fb = clients["speedsms"], clients["esms"], clients["fibo"]
    sp_resp, es_resp, fb_resp = responses["speedsms"], responses["esms"], responses["fibo"]
    fibo_transport = fb._transport

    forms = ["0912345678", "84912345678", "+84 912 345 678", "0912.345.678", "01623456789"]
    canonical = _numbers(0, BATCH)
    written = [f"+84 {n[1:4]} {n[4:7]} {n[7:]}" for n in canonical]
    encoder = speedsms._ENCODER

    def encode(batch: list[str]) -> Callable[[], bytes]:
        """What ``SpeedSMS.send`` does to its numbers before the request: split and normalise
        (``split_recipients``), then the body (``SpeedSMS._send``)."""

        def run() -> bytes:
            recipients = split_recipients(batch)
            return encoder.encode(
                speedsms._SendRequest(
                    to=speedsms._to_array(recipients.valid),
                    content=CONTENT,
                    sms_type=2,
                    sender="",
                )
            )

        return run

    result: dict[str, Any] = {
        "speedsms_decode_us": per_call(
            lambda: sp._parse(sp_resp, speedsms._SEND, "sms/send"), 20000
        ),
        "esms_decode_us": per_call(
            lambda: es._answer(es_resp, esms._SEND, esms._EP_SEND_POST), 20000
        ),
        "fibo_parse_us": per_call(
            lambda: fibo._parse_answer(fb_resp, fibo._EP_SEND, fibo_transport), 5000
        ),
        "normalize_clean_us": per_call(lambda: phone.normalize("0912345678"), 200_000),
        "normalize_mixed_us": per_call(lambda: [phone.normalize(f) for f in forms], 20000)
        / len(forms),
        "encode_canonical_per_number_us": per_call(encode(canonical), 2000) / BATCH,
        "encode_written_per_number_us": per_call(encode(written), 1000) / BATCH,
        "speedsms_answer_bytes": len(sp_resp.body),
        "esms_answer_bytes": len(es_resp.body),
        "fibo_answer_bytes": len(fb_resp.body),
        "requests": 0,
        "wall": 0.0,
        "cpu": 0.0,
    }
    return result


SCENARIOS: dict[str, Callable[[dict[str, Any], int, int], Awaitable[dict[str, Any]]]] = {
    "floor": floor,
    "smsvn": smsvn_send,
    "floor-single": floor_single,
    "floor-single-again": floor_single,  # the floor against itself (run.py's calibration)
    "single": smsvn_single,
    "single-uvloop": smsvn_single,  # the same, on uvloop (see main)
    "httpx": httpx_send,
    "vendor": vendor,
    "bulk": bulk,
    "bulk-nodedupe": bulk_nodedupe,
    "limiter": limiter,
    "items": items,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--server", required=True, help="the simulator's JSON description")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    server = json.loads(args.server)
    scenario = SCENARIOS[args.scenario](server, args.requests, args.concurrency)
    if args.scenario.endswith("-uvloop"):
        import uvloop  # the bench extra; an application opts in the same way

        result = uvloop.run(scenario)
    else:
        result = asyncio.run(scenario)
    result["scenario"] = args.scenario
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
