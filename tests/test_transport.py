"""Transport details that every provider relies on: redaction forms, body cap, no redirects."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

from smsvn import errors
from smsvn._redact import Redactor
from smsvn.providers.speedsms import SpeedSMS
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY, SENTINEL_TOKEN, client_at, http_server, per_provider

INFO = "https://api.speedsms.vn/index.php/user/info"


@pytest.mark.parametrize(
    "secret", ["plain-Secret-123", "a b/c&d?e=f", "mật khẩu+€", 'quo"te\\back<xml>&amp;']
)
def test_every_written_form_of_a_secret_is_redacted(secret: str) -> None:
    redactor = Redactor((secret,))
    as_query = URL("http://h/").extend_query({"p": secret}).raw_query_string
    as_json = json.dumps({"p": secret})
    from html import escape
    from urllib.parse import quote

    for text in (secret, as_query, as_json, escape(secret), quote(secret, safe="")):
        assert secret not in redactor.text(f"before {text} after")
    assert "SENTINEL" not in redactor.text(f"{as_query}")


async def test_oversized_body_is_malformed_not_read(mocked: aioresponses) -> None:
    mocked.get(INFO, body=b"x" * (2 * 1024 * 1024), repeat=True)
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, retry=FAST_RETRY) as sms:
        with pytest.raises(errors.MalformedResponse, match="over 1048576 bytes"):
            await sms.balance()


async def test_redirects_are_not_followed(mocked: aioresponses) -> None:
    mocked.get(INFO, status=302, headers={"Location": "https://evil.example/steal"}, repeat=True)
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, retry=FAST_RETRY) as sms:
        with pytest.raises(errors.MalformedResponse) as info:
            await sms.balance()
    assert info.value.http_status == 302
    assert all(url.host != "evil.example" for _, url in mocked.requests)


async def test_hooks_and_debug_log_say_what_happened(
    mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    from smsvn.transport import AttemptInfo, Hooks

    seen: list[tuple[str, AttemptInfo]] = []
    hooks = Hooks(
        on_request=lambda i: seen.append(("request", i)),
        on_response=lambda i: seen.append(("response", i)),
        on_retry=lambda i: seen.append(("retry", i)),
    )
    mocked.get(INFO, exception=TimeoutError())
    mocked.get(INFO, payload={"status": "success", "code": "00", "data": {"balance": 1}})
    caplog.set_level(logging.DEBUG, logger="smsvn")
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, retry=FAST_RETRY, hooks=hooks) as sms:
        await sms.balance()
    kinds = [k for k, _ in seen]
    assert kinds == ["request", "response", "retry", "request", "response"]
    assert seen[1][1].error == "TimeoutError"
    assert seen[4][1].status == 200
    assert any("user/info: attempt 2 -> 200" in r.getMessage() for r in caplog.records)


def test_redact_value_skips_the_walk_only_when_the_body_proves_it_clean() -> None:
    import msgspec

    class Answer(msgspec.Struct):
        note: str

    secret = "tok-SENTINEL-42"
    redactor = Redactor((secret,))
    clean = Answer(note="ok")
    assert redactor.value(clean, b'{"note":"ok"}') is clean
    for body in (
        f'{{"note":"echo {secret}"}}'.encode(),
        b'{"note":"echo \\u0074ok-SENTINEL-42"}',  # an escape hides it from a bytes search
    ):
        decoded = msgspec.json.decode(body, type=Answer)
        assert "SENTINEL" not in redactor.value(decoded, body).note


@contextlib.asynccontextmanager
async def _listening(path: str, handler: Any) -> AsyncIterator[int]:
    """An aiohttp server on 127.0.0.1 answering GET ``path`` with ``handler``; yields its port."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_user_agent_on_our_session_and_not_on_a_borrowed_one() -> None:
    """smsvn names itself on its own session; a caller's session keeps the caller's headers."""
    import aiohttp
    from aiohttp import web

    seen: list[str | None] = []

    async def info(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent"))
        return web.json_response({"status": "success", "code": "00", "data": {"balance": 5}})

    async with _listening("/user/info", info) as port:
        base = f"http://127.0.0.1:{port}"
        async with SpeedSMS(SENTINEL_TOKEN, base_url=base, rate_limit=None) as sms:
            await sms.balance()
            await sms.balance()  # the merged headers, cached, are the same the second time
        async with (
            aiohttp.ClientSession(headers={"User-Agent": "caller/1.0"}) as session,
            SpeedSMS(SENTINEL_TOKEN, base_url=base, rate_limit=None, session=session) as sms,
        ):
            await sms.balance()
    assert seen[0] is not None and seen[0].startswith("smsvn/")
    assert seen == [seen[0], seen[0], "caller/1.0"]


@pytest.mark.parametrize(
    ("max_body", "size", "read"),
    [
        (1000, 999, True),  # fewer digits than the cap: within it without parsing the length
        (1000, 1000, True),  # as many digits: parsed, at the cap
        (1000, 1001, False),
        (999, 1000, False),  # more digits than the cap
        (999, 999, True),
        (0, 0, True),
        (0, 1, False),
    ],
)
async def test_a_declared_length_is_read_only_within_max_body(
    max_body: int, size: int, read: bool
) -> None:
    """Guard for the cap's fast path (a ``Content-Length`` shorter than ``max_body`` in digits),
    against a real server on 127.0.0.1: one byte over the cap is refused at every edge."""
    from aiohttp import web

    from smsvn.transport import Transport

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * size)

    transport = Transport(provider="speedsms", max_body=max_body, retry=FAST_RETRY)
    async with _listening("/", answer) as port:
        try:
            call = transport.call(
                "GET",
                f"http://127.0.0.1:{port}/",
                endpoint="x",
                parse=lambda r: len(r.body),
                idempotent=False,
            )
            if read:
                assert await call == size
            else:
                with pytest.raises(errors.MalformedResponse, match=f"over {max_body} bytes"):
                    await call
        finally:
            await transport.aclose()


_BODY_CALLS = per_provider(
    {
        "speedsms": ("send", "application/json"),
        "esms": ("send", "application/json"),
        "fibo": ("daily_totals", "text/xml; charset=utf-8"),
    }
)
"""Each provider's request with a body, and the ``Content-Type`` its document asks for."""


SESSION_KINDS = ["own", "own, with a deadline", "borrowed"]
"""The transport's two paths: its own session's usual one; a deadline's or a borrowed one's."""


async def _path_options(stack: contextlib.AsyncExitStack, session_kind: str) -> dict[str, Any]:
    """A client's options for ``session_kind``; a borrowed session's defaults carry another
    ``Content-Type``, which the request's own must win over."""
    import aiohttp

    if session_kind == "borrowed":
        session = aiohttp.ClientSession(headers={"Content-Type": "text/plain"})
        return {"session": await stack.enter_async_context(session)}
    if session_kind == "own, with a deadline":
        return {"deadline": 20.0}  # nearer than the 30 s timeout: the slow path
    return {}


@pytest.mark.parametrize("session_kind", SESSION_KINDS)
async def test_a_body_goes_with_one_content_type_of_its_kind(
    sb: Sandbox, provider: str, session_kind: str
) -> None:
    """On the wire, through each of the transport's two paths (our own session's usual one; a
    deadline's or a borrowed session's): exactly one ``Content-Type``, the body's own, even where
    a borrowed session's defaults carry another; and the simulator accepts the request."""
    import aiohttp
    from aiohttp import web

    seen: list[tuple[list[str], bytes]] = []

    async def recording(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.headers.getall("Content-Type", []), body))
        forwarded = {
            k: v for k, v in request.headers.items() if k not in ("Host", "Content-Length")
        }
        async with (
            aiohttp.ClientSession() as upstream,
            upstream.request(
                request.method, sb.url + request.path_qs, headers=forwarded, data=body
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    method, expected = _BODY_CALLS[provider]
    async with contextlib.AsyncExitStack() as stack:
        root = await stack.enter_async_context(http_server(recording))
        options = await _path_options(stack, session_kind)
        client = await stack.enter_async_context(client_at(sb, provider, root, **options))
        call = getattr(client, method)
        result = await (call("0912345678", "Ma OTP 123456") if method == "send" else call())
    assert result.provider == provider
    [(types, body)] = seen
    assert types == [expected]
    assert body  # the body went, whole: the simulator answered it above


async def test_every_attempt_of_a_call_carries_the_whole_body() -> None:
    """One payload serves every attempt: after a 429 (the request went whole and was answered)
    and after a connection dropped once the request was read (eSMS resends under its
    RequestId), the next attempt sends the same bytes again, not an emptied body."""
    from aiohttp import web

    from smsvn.providers.esms import ESMS

    bodies: list[bytes] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        if len(bodies) == 1 and "speedsms" in request.path:
            return web.json_response(
                {"status": "error", "code": "429", "message": "slow down"},
                status=429,
                headers={"X-Rate-Limit-Reset": "0"},
            )
        if len(bodies) == 1:
            assert request.transport is not None
            request.transport.abort()  # read, never answered: the outcome is unknown
            return web.Response()
        if "speedsms" in request.path:
            return web.json_response(
                {"status": "success", "code": "00", "data": {"tranId": 7, "totalSMS": 1}}
            )
        return web.json_response({"CodeResult": "100", "SMSID": "id-1"})

    for make in (
        lambda root: SpeedSMS(
            SENTINEL_TOKEN, base_url=root + "/speedsms", rate_limit=None, retry=FAST_RETRY
        ),
        lambda root: ESMS(
            "key", "secret", brandname="BRAND", base_url=root, rate_limit=None, retry=FAST_RETRY
        ),
    ):
        bodies.clear()
        async with http_server(answer) as root, make(root) as client:
            result = await client.send("0912345678", "Ma OTP 123456")
        assert result.recipients == ("0912345678",)
        assert len(bodies) == 2
        assert bodies[0] == bodies[1]
        assert b"Ma OTP 123456" in bodies[0]


@pytest.mark.parametrize("session_kind", SESSION_KINDS)
async def test_a_content_type_among_a_calls_headers_is_the_one_sent(session_kind: str) -> None:
    """A provider written before ``content_type=`` (its type in ``headers``) sends that type,
    once, through either path: the body's default type never replaces the call's own."""
    from aiohttp import web

    from smsvn.transport import Transport

    seen: list[list[str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.getall("Content-Type", []))
        return web.Response(text="ok")

    async with contextlib.AsyncExitStack() as stack:
        root = await stack.enter_async_context(http_server(answer))
        options = await _path_options(stack, session_kind)
        transport = Transport(provider="toy", **options)
        stack.push_async_callback(transport.aclose)
        status = await transport.call(
            "POST",
            root + "/send",
            endpoint="send",
            parse=lambda response: response.status,
            data=b'{"to": "0912345678"}',
            headers={"Content-Type": "application/json"},
            idempotent=False,
        )
    assert status == 200
    assert seen == [["application/json"]]
