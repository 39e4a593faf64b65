"""``examples/otp_app.py`` end to end: the app on a real loopback server, configured from an
environment dict, sending through the simulator; the test learns each code only from the
simulator's outbox, as a user learns it from their phone.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from smsvn import providers
from smsvn.errors import ValidationError
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "otp_app.py"
SMS_TEXT = re.compile(r"Ma xac thuc cua ban la (\d{6})")
PHONE = "0912345678"
SECRET = "example-SENTINEL-0123456789abcdef"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smsvn_example_otp_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load()


def environment(sb: Sandbox, name: str = "speedsms", **variables: str) -> dict[str, str]:
    """The ``SMSVN_*`` variables pointing provider ``name``'s client at ``sb``, the OTP
    secret, and ``variables``."""
    client = providers.get(name).client
    readable = {key for key, _ in client.env_options} | {client.sender_option}
    by_credential = {c.name: c.env for c in client.credentials}
    environ = {"SMSVN_PROVIDER": name, "SMSVN_OTP_SECRET": SECRET}
    for key, value in sb.client_options(name).items():
        if key in by_credential:
            environ[by_credential[key]] = value
        elif key in readable:
            environ[f"SMSVN_{name.upper()}_{key.upper()}"] = str(value)
    return {**environ, **variables}


class App:
    """The running example: ``post`` a JSON body (or raw bytes) to a path."""

    def __init__(self, http: TestClient[web.Request, web.Application]) -> None:
        self.http = http

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any], str | None]:
        if isinstance(body, bytes):
            response = await self.http.post(path, data=body)
        else:
            response = await self.http.post(path, json=body)
        return response.status, await response.json(), response.headers.get("Retry-After")

    async def start(self, phone: str = PHONE, **body: Any) -> tuple[int, dict[str, Any]]:
        status, answer, _ = await self.post("/otp/start", {"phone": phone, **body})
        return status, answer

    async def check(self, code: str, phone: str = PHONE) -> tuple[int, dict[str, Any]]:
        status, answer, _ = await self.post("/otp/check", {"phone": phone, "code": code})
        return status, answer


@asynccontextmanager
async def running(environ: dict[str, str]) -> AsyncIterator[App]:
    app = example.create_app(environ, retry=FAST_RETRY, rate_limit=None)
    server = TestServer(app, host="127.0.0.1")
    async with server, TestClient[web.Request, web.Application](server) as http:
        yield App(http)


def code_from(sb: Sandbox, kind: str, phone: str = PHONE) -> str:
    """The last code ``phone`` got by ``kind``, read from the simulator's outbox."""
    records = [r for r in sb.outbox if r.phone == phone and r.kind == kind]
    assert records, f"no {kind} to {phone}"
    if kind == "voice":
        return records[-1].content
    match = SMS_TEXT.fullmatch(records[-1].content)
    assert match is not None
    return match.group(1)


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.parametrize("provider", ["speedsms", "esms", "fibo"])
async def test_a_code_by_sms(sb: Sandbox, provider: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(environment(sb, provider)) as app:
        status, answer = await app.start("0912 345 678")
        assert (status, answer["status"], answer["channel"]) == (200, "sent", "sms")
        assert 295 <= answer["expires_in"] <= 300 and 55 <= answer["resend_in"] <= 60
        code = code_from(sb, "sms")
        assert await app.check(other_than(code)) == (
            400,
            {"approved": False, "reason": "wrong_code", "attempts_left": 4},
        )
        assert await app.check(code) == (200, {"approved": True})
        assert await app.check(code) == (
            400,
            {"approved": False, "reason": "not_found", "attempts_left": 0},
        )
        # A second code at once: refused, with when to ask again.
        await app.start()
        status, answer, retry_after = await app.post("/otp/start", {"phone": PHONE})
        assert (status, answer["error"]) == (429, "too_soon")
        assert retry_after is not None and 55 <= int(retry_after) <= 60
    assert len(sb.outbox) == 2
    codes = [code_from(sb, "sms"), code]
    for record in caplog.records:
        for sent in codes:
            assert sent not in record.getMessage()


@pytest.mark.parametrize("provider", ["speedsms", "esms"])
async def test_a_code_by_voice_call(sb: Sandbox, provider: str) -> None:
    async with running(environment(sb, provider)) as app:
        status, answer = await app.start(channel="voice")
        assert (status, answer["status"], answer["channel"]) == (200, "sent", "voice")
        code = code_from(sb, "voice")
        assert await app.check(code) == (200, {"approved": True})
    assert [r.kind for r in sb.outbox] == ["voice"]


async def test_auto_calls_when_the_sms_cannot_go(sb: Sandbox) -> None:
    environ = environment(sb, "esms", SMSVN_ESMS_BRANDNAME="NOT-REGISTERED")
    async with running(environ) as app:
        status, answer = await app.start(channel="auto")
        assert (status, answer["channel"]) == (200, "voice")
        assert await app.check(code_from(sb, "voice")) == (200, {"approved": True})
    assert [r.kind for r in sb.outbox] == ["voice"]


async def test_an_account_problem_is_a_503_and_costs_the_user_nothing(sb: Sandbox) -> None:
    async with running(environment(sb)) as app:
        sb.set_balance("speedsms", 0)
        assert await app.start() == (
            503,
            {"error": "unavailable", "detail": "try again later"},
        )
        sb.set_balance("speedsms", 1_000_000)
        status, _ = await app.start()  # no cooldown after a send that went nowhere
        assert status == 200
        assert await app.check(code_from(sb, "sms")) == (200, {"approved": True})


async def test_bad_requests(sb: Sandbox) -> None:
    async with running(environment(sb, "fibo")) as app:
        assert (await app.post("/otp/start", b"not json"))[0] == 400
        assert (await app.post("/otp/start", ["0912345678"]))[0] == 400
        assert (await app.post("/otp/start", {"phone": 912345678}))[0] == 400
        assert (await app.post("/otp/check", {"phone": PHONE}))[0] == 400
        status, answer = await app.start("024 3826 1234")
        assert (status, answer["error"]) == (422, "invalid_phone")
        status, answer = await app.start(channel="voice")  # Fibo places no calls
        assert (status, answer) == (
            422,
            {"error": "channel_unavailable", "detail": "one of: auto, sms"},
        )
        status, answer = await app.start(channel="fax")
        assert (status, answer["error"]) == (422, "channel_unavailable")
        status, answer = await app.check("123456", phone="not a phone")
        assert (status, answer["error"]) == (422, "invalid_phone")
    assert len(sb.outbox) == 0


async def test_codes_shared_through_redis(sb: Sandbox, redis_url: str, redis_prefix: str) -> None:
    """Two app instances (two workers) on one Redis: a code sent by one is checked by the
    other, and the cooldown holds across them."""
    environ = environment(sb, SMSVN_OTP_REDIS_URL=redis_url, SMSVN_OTP_REDIS_PREFIX=redis_prefix)
    async with running(environ) as first, running(environ) as second:
        assert (await first.start())[0] == 200
        assert (await second.start())[1]["error"] == "too_soon"
        assert await second.check(code_from(sb, "sms")) == (200, {"approved": True})


async def test_start_up_needs_the_secret(sb: Sandbox) -> None:
    environ = environment(sb)
    del environ["SMSVN_OTP_SECRET"]
    with pytest.raises(ValidationError, match="SMSVN_OTP_SECRET"):
        async with running(environ):
            pass
    environ = environment(sb, SMSVN_OTP_TEMPLATE="Ma xac thuc")
    with pytest.raises(ValidationError, match="code"):
        async with running(environ):
            pass
