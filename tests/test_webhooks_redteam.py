"""Red-team pass over the webhook receiver (``smsvn.webhooks.app``) and the providers' webhook
parsers, driven over real 127.0.0.1 sockets (aiohttp's test server, or raw bytes where a client
would normalise what is being attacked).

Each test whose docstring starts "Finding:" failed on the code it was written against; the others
guard promises that held and are easy to lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from typing import Any, Final

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from smsvn import webhooks
from smsvn.errors import ValidationError
from smsvn.models import DeliveryReport
from smsvn.webhooks import TRACKER_KEY, Event, MaskedAccessLogger
from tests.test_webhooks import Recorder, _send_raw, esms_sms, serve

SECRET: Final = "redteam-SENTINEL-0123456789"
WRONG: Final = "notthe-secret-value-00000000"
PHONE: Final = "0912345678"

Client = TestClient[web.Request, web.Application]


def report(**fields: Any) -> bytes:
    """A SpeedSMS delivery-report body (the vendor's own example), fields overridden."""
    body: dict[str, Any] = {"type": "report", "tranId": 1234, "phone": PHONE, "status": 0}
    body.update(fields)
    return json.dumps(body).encode()


@contextlib.asynccontextmanager
async def listening(application: web.Application, **runner: Any) -> AsyncIterator[int]:
    """Run ``application`` on a plain AppRunner at 127.0.0.1 (as a user would); yield the port."""
    app_runner = web.AppRunner(application, **runner)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", 0).start()
    try:
        yield app_runner.addresses[0][1]
    finally:
        await app_runner.cleanup()


def post(path: str, body: bytes, *headers: str) -> bytes:
    """A raw HTTP/1.1 POST of ``body`` to ``path`` (sent as written), closing the connection."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [*headers, "Connection: close", "", ""]
    return "\r\n".join(head).encode() + body


# --------------------------------------------------------------------------------------------
# Hostile bodies: a clear 4xx, never a 500


async def test_deeply_nested_json_in_a_speedsms_callback_is_a_400_not_a_500() -> None:
    """Finding: a SpeedSMS callback with a deeply nested array or object in a field the wire
    struct does not know (10 KiB, far under the 64 KiB cap) is answered 500 "Server got itself in
    trouble", with aiohttp's traceback logged at ERROR. ``parse_speedsms``
    (``smsvn/providers/speedsms.py``) catches only ``msgspec.MsgspecError``, but msgspec raises
    a bare ``RecursionError`` when skipping such a value. It breaks "400 with a short reason for
    a malformed callback" (``smsvn/webhooks.py``), "never a bare KeyError" (DESIGN principle 5),
    and a 500 tells the provider to retry the same hopeless body again and again."""
    recorder = Recorder()
    hostile = {
        "array": b'{"type":"report","tranId":1,"phone":"0912345678","status":0,"x":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        "object": b'{"type":"report","tranId":1,"phone":"0912345678","status":0,"x":'
        + b'{"a":' * 3000
        + b"1"
        + b"}" * 3000
        + b"}",
    }
    async with serve(webhooks.app(recorder, secret=SECRET)) as client:
        answers = {}
        for name, body in hostile.items():
            resp = await client.post(f"/speedsms/{SECRET}", data=body)
            answers[name] = (resp.status, (await resp.text())[:40])
        good = await client.post(f"/speedsms/{SECRET}", data=report())
    assert good.status == 200, "passes: the receiver is still up"
    assert [status for status, _ in answers.values()] == [400, 400], answers
    assert all(text.startswith("bad request: ") for _, text in answers.values())
    assert len(recorder.events) == 1


async def test_a_huge_numeric_speedsms_status_is_refused_like_its_string_form() -> None:
    """Finding: a SpeedSMS report whose ``status`` is a 40-digit (or 4,000-digit) JSON number is
    accepted as FAILED, while the same status written as a string is a 400 (``is_count``'s
    18-digit bound, ``smsvn/providers/_wire.py``: "the one check every parser uses before
    int()"). ``_report_status`` (``smsvn/providers/speedsms.py``) checks only the sign of an
    int. The raw status (up to 4,299 digits) then sits in the report, the tracker's history and
    every dedup key (100,000 of them by default): the field caps do not hold for this field."""
    recorder = Recorder()
    huge = "9" * 40
    async with serve(webhooks.app(recorder, secret=SECRET)) as client:
        as_string = await client.post(f"/speedsms/{SECRET}", data=report(status=huge))
        as_number = await client.post(
            f"/speedsms/{SECRET}",
            data=b'{"type":"report","tranId":1234,"phone":"0912345678","status":%s}'
            % huge.encode(),
        )
    assert as_string.status == 400, "passes: the string form is refused"
    assert as_number.status == 400
    assert recorder.events == []


@pytest.mark.parametrize(
    ("method", "provider", "fields"),
    [
        pytest.param("POST", "speedsms", {"tranId": "12\x0034"}, id="speedsms-tranId-NUL"),
        pytest.param("GET", "esms", {"SMSID": "8eb2af6d\x00fb4c"}, id="esms-SMSID-NUL"),
        pytest.param("GET", "esms", {"ReferenceId": "ref\x00-42"}, id="esms-ReferenceId-NUL"),
    ],
)
async def test_an_id_holding_a_nul_is_a_400(
    method: str, provider: str, fields: dict[str, str]
) -> None:
    """Finding: a callback whose message id (SpeedSMS ``tranId``, eSMS ``SMSID`` or
    ``ReferenceId``) holds a NUL is answered 200 and handed to the handler as ``message_id`` /
    ``reference_id``. ``identifier`` (``smsvn/providers/_webhook.py``) only strips and bounds
    the length, though its module promises strict readers. The id is what the handler stores
    (README: ``campaign.apply(report)``), and PostgreSQL refuses a NUL in text
    (``CharacterNotInRepertoireError``, not a ValidationError): the handler raises, the receiver
    answers 500 and the provider retries a report that can never be stored, while the journal
    refuses such text everywhere else (``text.is_encodable``)."""
    recorder = Recorder()
    async with serve(webhooks.app(recorder, secret=SECRET)) as client:
        if method == "POST":
            resp = await client.post(f"/speedsms/{SECRET}", data=report(**fields))
        elif "ReferenceId" in fields:
            query = {"CallStatus": "ANSWERED", "CallDuration": "24", "SentResult": "1", **fields}
            resp = await client.get(f"/{provider}/{SECRET}", params=query)
        else:
            resp = await client.get(f"/{provider}/{SECRET}", params=esms_sms(**fields))
        assert resp.status == 400, [repr(e) for e in recorder.events]
        assert (await resp.text()).startswith("bad request: ")
    assert recorder.events == []


# --------------------------------------------------------------------------------------------
# Body caps: memory and time


@pytest.mark.parametrize(
    ("secret", "expected"),
    [pytest.param(SECRET, 413, id="right-secret"), pytest.param(WRONG, 404, id="no-secret")],
)
async def test_compressed_bodies_do_not_inflate_past_the_cap_in_memory(
    secret: str, expected: int
) -> None:
    """Finding: eight 16 KiB ``Content-Encoding: deflate`` callbacks (each declared and sent
    well under the 64 KiB cap) make the receiver hold about 150 MiB at once, and it needs no
    secret: a wrong one costs the same. aiohttp inflates each socket read up to 32 MiB before
    any handler runs, and ``app()`` (``smsvn/webhooks.py``) leaves the server's
    ``auto_decompress`` on, so ``_read_capped``'s cap counts bytes that are already in memory.
    It breaks "caps ... the body" / "413 for a body over the cap (Content-Length is not
    trusted)": memory per request is bounded by 32 MiB, not by ``max_body``."""
    bomb = zlib.compress(b"\0" * (16 * 1024 * 1024), 9)
    assert len(bomb) < webhooks.DEFAULT_MAX_BODY // 2
    request = post(f"/speedsms/{secret}", bomb, "Content-Encoding: deflate")
    tracing = tracemalloc.is_tracing()
    async with listening(webhooks.app(Recorder(), secret=SECRET), access_log=None) as port:
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            answers = await asyncio.gather(*(_send_raw(port, request) for _ in range(8)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            if not tracing:
                tracemalloc.stop()
    assert {a.split(b" ", 2)[1] for a in answers} == {str(expected).encode()}
    assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held for 8 x {len(bomb)} bytes"


async def test_a_body_over_the_cap_is_refused_while_it_is_still_arriving() -> None:
    """Guard: a chunked body dribbled in small pieces that passes ``max_body`` and then stalls
    (a slowloris that never ends its body) is answered 413 as soon as the cap is crossed, not
    held until the body ends: the body is counted as it is read, not read whole first."""
    recorder = Recorder()
    async with listening(webhooks.app(recorder, secret=SECRET, max_body=1024)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"POST /speedsms/{SECRET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            for _ in range(17):  # 17 x 64 = 1088 bytes: past the cap, and no last chunk
                writer.write(b"40\r\n" + b" " * 64 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.005)
            status = await asyncio.wait_for(reader.readline(), 3)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    assert status.startswith(b"HTTP/1.1 413 ")
    assert recorder.events == []


# --------------------------------------------------------------------------------------------
# The secret in logs


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"/hooks/speed%73ms/{SECRET}", id="percent-encoded-provider"),
        pytest.param(f"/hooks/speedsms/./{SECRET}", id="dot-segment"),
        pytest.param(f"/hooks/speedsms/x/../{SECRET}", id="dot-dot-segment"),
    ],
)
async def test_the_secret_stays_out_of_the_access_log_however_the_path_is_spelt(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: with the setup the README prescribes (mounted under ``/hooks``,
    ``access_log_class=MaskedAccessLogger``), ``POST /hooks/speed%73ms/<secret>`` is routed as a
    SpeedSMS callback (200, handler called) yet logged with the secret in clear, and so are
    ``/hooks/speedsms/./<secret>`` and ``/hooks/speedsms/x/../<secret>`` (404s that carry the
    secret). ``_mask`` / ``_secret_segment`` (``smsvn/webhooks.py``) match the provider name
    only as literal text and mask only the first segment after it, while routing decodes
    percent escapes and the log shows the raw path. It breaks "writes the segment after
    /{provider}/ as ***" and the README's "keeps the secret out of logs"."""
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    recorder = Recorder()
    parent = web.Application()
    parent.add_subapp("/hooks", webhooks.app(recorder, secret=SECRET))
    async with listening(parent, access_log_class=MaskedAccessLogger) as port:
        answer = await _send_raw(port, post(path, report()))
        await asyncio.sleep(0.05)  # the access line is written after the answer
    if "%73" in path:
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:40]
        assert len(recorder.events) == 1
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert access, "passes: the request was logged"
    leaked = [r.getMessage() for r in access if "SENTINEL" in r.getMessage() + repr(r.__dict__)]
    assert not leaked, leaked


# --------------------------------------------------------------------------------------------
# The handler: once per report, retries neither lost nor doubled


async def test_a_plain_function_handler_is_not_run_again_on_every_retry() -> None:
    """Finding: ``app()`` accepts a plain ``def`` handler (it checks only ``callable``). The
    function runs to completion, then ``await None`` raises TypeError in ``_call``
    (``smsvn/webhooks.py``), so every callback is answered 500 and never remembered: each retry
    of the same report runs the handler again (eSMS retries 5 times: 6 runs), and the provider
    keeps retrying what was handled. It breaks "handler is awaited once per new event; if it
    raises, the callback is answered 500" (the handler did not raise) and DESIGN principle 5 (a
    clear error for bad input): refuse such a handler up front, or treat its return as done."""
    calls: list[Event] = []

    def handler(event: Event) -> None:
        calls.append(event)

    try:
        application = webhooks.app(handler, secret=SECRET)
    except (TypeError, ValidationError):
        return  # refused when the app is built: the clear error
    async with serve(application) as client:
        statuses = [
            (await client.post(f"/speedsms/{SECRET}", data=report())).status for _ in range(3)
        ]
    assert (statuses, len(calls)) == ([200, 200, 200], 1)


async def test_a_burst_of_retries_while_the_first_attempt_fails_is_handled_twice() -> None:
    """Guard: twenty copies of one report arrive while the first is being handled; that first
    attempt fails (500). Exactly one of the waiting copies is handled next, the other eighteen
    wait for it and are answered 200 as duplicates: the handler runs twice in all (never once,
    which would lose the report, nor more), and the tracker holds one report."""
    recorder = Recorder(failures=1)
    recorder.release = asyncio.Event()
    application = webhooks.app(recorder, secret=SECRET)
    async with serve(application) as client:
        first = asyncio.create_task(client.post(f"/speedsms/{SECRET}", data=report()))
        await asyncio.wait_for(recorder.entered.wait(), 5)
        copies = [
            asyncio.create_task(client.post(f"/speedsms/{SECRET}", data=report(tranId="1234")))
            for _ in range(19)
        ]
        await asyncio.sleep(0.2)
        assert len(recorder.events) == 1
        recorder.release.set()
        answers = await asyncio.gather(first, *copies)
        statuses = sorted(a.status for a in answers)
    assert statuses == [200] * 19 + [500]
    assert len(recorder.events) == 2
    assert all(isinstance(e, DeliveryReport) for e in recorder.events)
    history = application[TRACKER_KEY].history("speedsms", "1234", PHONE)
    assert len(history) == 1
