"""The example web apps (``examples/``), end to end: each app started as its framework starts it,
configured from an environment dict, sending through the simulator on 127.0.0.1; every error
class a caller meets gets its HTTP answer.

aiohttp runs on a real loopback server (``TestServer``); FastAPI runs in-process through
httpx's ASGI transport, with its lifespan entered as a server would.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from smsvn import providers
from smsvn.errors import ValidationError
from smsvn.sandbox import Fault, Sandbox
from tests.conftest import FAST_RETRY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OTP = re.compile(r"Ma xac thuc cua ban la (\d{6})")
PHONE = "0912345678"


def _load(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"smsvn_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


aiohttp_example = _load("aiohttp_app")
fastapi_example = _load("fastapi_app")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    """Names in lower case."""


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class App:
    """One example app, running: ``post`` a JSON body to ``/otp``; ``client`` is its shared
    smsvn client."""

    def __init__(self, post: Callable[[object], Awaitable[Answer]], client: Any) -> None:
        self.post = post
        self.client = client

    async def otp(self, phone: object = PHONE) -> Answer:
        return await self.post({"phone": phone})


Runner = Callable[..., AbstractAsyncContextManager[App]]


@asynccontextmanager
async def run_aiohttp(environ: dict[str, str], **options: Any) -> AsyncIterator[App]:
    app: web.Application = aiohttp_example.create_app(environ, **{"retry": FAST_RETRY, **options})
    # The server first: a start-up that fails (a missing credential) raises here, before a
    # TestClient (which opens a session as it is made) exists.
    server = TestServer(app, host="127.0.0.1")
    async with server, TestClient[web.Request, web.Application](server) as http:

        async def post(body: object) -> Answer:
            response = await http.post("/otp", json=body)
            return Answer(response.status, await response.json(), lower(response.headers))

        yield App(post, app[aiohttp_example.SMS])


@asynccontextmanager
async def run_fastapi(environ: dict[str, str], **options: Any) -> AsyncIterator[App]:
    app = fastapi_example.create_app(environ, **{"retry": FAST_RETRY, **options})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

            async def post(body: object) -> Answer:
                response = await http.post("/otp", json=body)
                return Answer(response.status_code, response.json(), lower(response.headers))

            yield App(post, app.state.sms)


@pytest.fixture(params=["aiohttp", "fastapi"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Each example app in turn."""
    runner: Runner = run_aiohttp if request.param == "aiohttp" else run_fastapi
    return runner


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        yield sandbox


def environment(sb: Sandbox, name: str = "speedsms", **variables: str) -> dict[str, str]:
    """The ``SMSVN_*`` variables that point provider ``name``'s client at ``sb`` (credentials,
    URLs, sender, type), plus ``variables`` (``SMSVN_SPEEDSMS_TOKEN="wrong"``)."""
    client = providers.get(name).client
    readable = {key for key, _ in client.env_options} | {client.sender_option}
    by_credential = {c.name: c.env for c in client.credentials}
    environ = {"SMSVN_PROVIDER": name}
    for key, value in sb.client_options(name).items():
        if key in by_credential:
            environ[by_credential[key]] = value
        elif key in readable:
            environ[f"SMSVN_{name.upper()}_{key.upper()}"] = str(value)
    return {**environ, **variables}


@asynccontextmanager
async def provider_stub(code: str) -> AsyncIterator[tuple[str, list[int]]]:
    """A stand-in for SpeedSMS on 127.0.0.1 that answers every send with error ``code``, for
    refusals the simulator never makes (it refuses no number the client lets through): its
    base URL, and a list that grows by one per request."""
    seen: list[int] = []

    async def send(request: web.Request) -> web.Response:
        seen.append(1)
        return web.json_response({"status": "error", "code": code, "message": "refused"})

    app = web.Application()
    app.router.add_post("/sms/send", send)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), seen


def sends(sb: Sandbox, name: str = "speedsms") -> int:
    """Send requests ``sb`` received for provider ``name``."""
    return sb.requests[(name, "send")]


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "example.otp" and r.levelno == level
    ]


# -- sent -------------------------------------------------------------------------------------


async def test_a_code_is_sent_through_the_shared_client(sb: Sandbox, run: Runner) -> None:
    async with run(environment(sb)) as app:
        first = await app.otp("+84 912 345 678")
        second = await app.otp("0987654321")
        client = app.client
    assert (first.status, first.body["status"], second.status) == (200, "sent", 200)
    assert first.body["message_id"]
    assert [r.phone for r in sb.outbox] == [PHONE, "0987654321"]
    codes = [OTP.fullmatch(r.content) for r in sb.outbox]
    assert all(codes)
    assert codes[0] and codes[0].group(1) not in str(first.body)  # the code never goes back
    assert {r.sender for r in sb.outbox} == {sb.speedsms_sender}  # sender and type from env
    with pytest.raises(ValidationError, match="closed"):  # closed when the app stopped
        await client.send(PHONE, "after shutdown")


@pytest.mark.parametrize("provider", ["esms", "fibo"])
async def test_smsvn_provider_chooses_the_provider(sb: Sandbox, run: Runner, provider: str) -> None:
    async with run(environment(sb, provider)) as app:
        answer = await app.otp()
    assert answer.status == 200
    assert [(r.provider, r.phone) for r in sb.outbox] == [(provider, PHONE)]


async def test_a_429_storm_within_the_budget_still_sends_once(sb: Sandbox, run: Runner) -> None:
    sb.faults.add(
        Fault(kind="rate_limit", provider="speedsms", route="send", times=3, seconds=0.05)
    )
    async with run(environment(sb)) as app:
        answer = await app.otp()
    assert answer.status == 200
    assert sb.stats.rate_limited == 3
    assert len(sb.outbox) == 1


# -- refused locally or by the provider -------------------------------------------------------


@pytest.mark.parametrize("phone", ["12345", "024 3826 1234", ""])
async def test_a_bad_number_is_422_and_nothing_is_sent(
    sb: Sandbox, run: Runner, phone: str
) -> None:
    async with run(environment(sb)) as app:
        answer = await app.otp(phone)
    assert (answer.status, answer.body["error"]) == (422, "invalid_phone")
    assert sends(sb) == 0


async def test_a_malformed_request_is_refused_by_the_framework(sb: Sandbox, run: Runner) -> None:
    async with run(environment(sb)) as app:
        for body in ({}, {"phone": 912345678}, ["0912345678"]):
            answer = await app.post(body)
            assert answer.status in (400, 422)  # aiohttp app: 400; FastAPI's validation: 422
    assert sends(sb) == 0


async def test_a_number_the_provider_refuses_is_422(sb: Sandbox, run: Runner) -> None:
    async with (
        provider_stub("105") as (url, seen),
        run(environment(sb, SMSVN_SPEEDSMS_BASE_URL=url)) as app,
    ):
        answer = await app.otp()
    assert (answer.status, answer.body["error"], len(seen)) == (422, "invalid_phone", 1)


@pytest.mark.parametrize(
    ("case", "provider"),
    [
        ("wrong token", "speedsms"),
        ("no balance", "speedsms"),
        ("brandname not registered", "esms"),
        ("sender not declared", "fibo"),
    ],
)
async def test_account_problems_are_a_generic_503_and_a_log_line(
    sb: Sandbox, run: Runner, caplog: pytest.LogCaptureFixture, case: str, provider: str
) -> None:
    environ = environment(sb, provider)
    secret = environ["SMSVN_SPEEDSMS_TOKEN"] if provider == "speedsms" else ""
    if case == "wrong token":
        secret = environ["SMSVN_SPEEDSMS_TOKEN"] = "wrong-token-SENTINEL-51e2"
    elif case == "no balance":
        sb.set_balance("speedsms", 0)
    elif case == "brandname not registered":
        environ["SMSVN_ESMS_BRANDNAME"] = "NOT_OURS"
    else:
        environ["SMSVN_FIBO_SENDER"] = "NOT_OURS"
    caplog.set_level(logging.DEBUG)
    async with run(environ) as app:
        answer = await app.otp()
    assert (answer.status, answer.body) == (503, fastapi_example.UNAVAILABLE)
    assert "retry-after" not in answer.headers
    [line] = logged(caplog, logging.ERROR)
    assert "account problem" in line
    assert not sb.outbox
    if secret:
        assert secret not in caplog.text


# -- try again later --------------------------------------------------------------------------


async def test_a_busy_account_is_503_with_retry_after_at_once(sb: Sandbox, run: Runner) -> None:
    sb.faults.add(Fault(kind="rate_limit", provider="speedsms", route="send", seconds=30))
    async with run(environment(sb)) as app:
        started = time.monotonic()
        answer = await app.otp()
        elapsed = time.monotonic() - started
        again = await app.otp()  # the account is paused: refused before any request
    assert (answer.status, answer.body["error"]) == (503, "busy")
    assert 29 <= int(answer.headers["retry-after"]) <= 31
    assert elapsed < 2.0  # not the 30 s the provider asked for
    assert again.status == 503
    assert 25 <= int(again.headers["retry-after"]) <= 31
    assert sends(sb) == 1  # the second request never left
    assert not sb.outbox


async def test_a_provider_that_asks_to_retry_is_503(sb: Sandbox, run: Runner) -> None:
    async with (
        provider_stub("500") as (url, seen),
        run(environment(sb, SMSVN_SPEEDSMS_BASE_URL=url)) as app,
    ):
        answer = await app.otp()
    assert (answer.status, answer.body) == (503, fastapi_example.UNAVAILABLE)
    assert len(seen) == 1  # a SpeedSMS send is never repeated behind the caller's back


async def test_an_unreachable_provider_is_503(
    sb: Sandbox, run: Runner, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port}/speedsms/index.php"
    async with run(environment(sb, SMSVN_SPEEDSMS_BASE_URL=url)) as app:
        answer = await app.otp()
    assert (answer.status, answer.body) == (503, fastapi_example.UNAVAILABLE)
    assert logged(caplog, logging.WARNING)


# -- maybe sent -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["drop_after", "garbage"])
async def test_a_lost_answer_is_202_pending_and_never_resent(
    sb: Sandbox, run: Runner, kind: Any
) -> None:
    sb.faults.add(Fault(kind=kind, provider="speedsms", route="send", times=1))
    async with run(environment(sb)) as app:
        answer = await app.otp()
    assert (answer.status, answer.body["status"]) == (202, "pending")
    assert "do not resend" in answer.body["detail"]
    assert sends(sb) == 1
    assert len(sb.outbox) == 1  # it was sent: a resend would have texted a second code


async def test_a_hanging_provider_is_cut_off_by_the_deadline(sb: Sandbox, run: Runner) -> None:
    sb.faults.add(Fault(kind="hang", provider="speedsms", route="send"))
    async with run(environment(sb), deadline=0.5) as app:
        started = time.monotonic()
        answer = await app.otp()
        elapsed = time.monotonic() - started
    assert (answer.status, answer.body["status"]) == (202, "pending")
    assert elapsed < 3.0


# -- refused for another reason ---------------------------------------------------------------


async def test_a_request_the_provider_refuses_is_502(
    sb: Sandbox, run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    # SpeedSMS refuses the request's parameters (its code 101, an InvalidRequest).
    async with (
        provider_stub("101") as (url, seen),
        run(environment(sb, SMSVN_SPEEDSMS_BASE_URL=url)) as app,
    ):
        answer = await app.otp()
    assert (answer.status, answer.body["error"]) == (502, "sms_failed")
    assert logged(caplog, logging.ERROR)
    assert seen == [1] and not sb.outbox


async def test_an_unregistered_speedsms_sender_is_an_account_problem(
    sb: Sandbox, run: Runner
) -> None:
    # Type 3 with a brandname SpeedSMS does not know: 101 naming the sender, SenderNotRegistered.
    environ = environment(sb, SMSVN_SPEEDSMS_SMS_TYPE="3", SMSVN_SPEEDSMS_SENDER="NOT_OURS")
    async with run(environ) as app:
        answer = await app.otp()
    assert answer.status == 503
    assert not sb.outbox


async def test_an_undocumented_code_is_502(sb: Sandbox, run: Runner) -> None:
    async with (
        provider_stub("999") as (url, _),
        run(environment(sb, SMSVN_SPEEDSMS_BASE_URL=url)) as app,
    ):
        answer = await app.otp()
    assert (answer.status, answer.body["error"]) == (502, "sms_failed")


# -- start-up ---------------------------------------------------------------------------------


async def test_a_missing_credential_stops_the_start_up(sb: Sandbox, run: Runner) -> None:
    environ = environment(sb, "esms")
    del environ["SMSVN_ESMS_SECRET_KEY"]
    with pytest.raises(ValidationError, match="SMSVN_ESMS_SECRET_KEY") as caught:
        async with run(environ):
            pass
    assert environ["SMSVN_ESMS_API_KEY"] not in str(caught.value)
