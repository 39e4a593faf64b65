"""Send a one-time code from an aiohttp app, through one smsvn client shared by every request.

    export SMSVN_PROVIDER=speedsms SMSVN_SPEEDSMS_TOKEN=...   # see examples/README.md
    python examples/aiohttp_app.py
    curl -X POST http://127.0.0.1:8080/otp -H 'Content-Type: application/json' \\
         -d '{"phone": "0912 345 678"}'

The client is created at start-up from the ``SMSVN_*`` variables (``from_env``) and closed at
shutdown. ``max_wait`` and ``deadline`` bound every send, so a request never waits minutes for
a busy account or a hanging provider. Every error smsvn raises gets an HTTP answer that tells
the caller what to do; account problems are logged and hidden behind a generic 503.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from aiohttp import web

import smsvn
from smsvn import errors, providers

log = logging.getLogger("example.otp")

MAX_WAIT = 3.0
"""Seconds a send may wait for the account's turn under its rate limit; past it: 503 at once."""
DEADLINE = 10.0
"""Seconds a whole send may take, retries included."""


class SmsClient(Protocol):
    """What this app needs of an smsvn client (any provider's)."""

    async def send(self, to: str, content: str) -> smsvn.SendResult: ...

    async def aclose(self) -> None: ...


SMS = web.AppKey("sms", SmsClient)


def make_client(environ: Mapping[str, str] | None = None, **options: Any) -> SmsClient:
    """The provider ``SMSVN_PROVIDER`` names (SpeedSMS by default), configured from the
    environment; a missing credential stops the start-up with an error naming the variable."""
    env = os.environ if environ is None else environ
    provider = providers.get(env.get("SMSVN_PROVIDER") or "speedsms")
    options = {"max_wait": MAX_WAIT, "deadline": DEADLINE, **options}
    return provider.client.from_env(environ=env, **options)


def new_code() -> str:
    """Six random digits. Keep a hash of it, with an expiry, to check the user's answer."""
    return f"{secrets.randbelow(1_000_000):06d}"


def error_response(exc: errors.SmsError) -> web.Response:
    """The HTTP answer to an smsvn error: the class says whether anything was sent."""
    if isinstance(exc, errors.ValidationError):  # refused locally, before any request
        return _json(422, {"error": "invalid_phone", "detail": exc.message})
    if isinstance(exc, errors.InvalidRecipient):  # the provider refused the number
        return _json(422, {"error": "invalid_phone", "detail": "this number cannot get SMS"})
    if isinstance(
        exc,
        errors.AuthenticationError | errors.SenderNotRegistered | errors.InsufficientBalance,
    ):
        # Our account's problem, not the user's: tell the operators, not the user.
        log.error("SMS account problem, no code can be sent: %s", exc)
        return _json(503, UNAVAILABLE)
    if isinstance(exc, errors.RateLimited):  # the account's turn is too far away: nothing sent
        wait = math.ceil(exc.retry_after or 1.0)
        return _json(
            503, {"error": "busy", "detail": "try again later"}, {"Retry-After": str(wait)}
        )
    if isinstance(exc, errors.ProviderUnavailable | errors.ConnectError):  # nothing was sent
        log.warning("SMS provider unavailable: %s", exc)
        return _json(503, UNAVAILABLE)
    if isinstance(exc, errors.OutcomeUnknown):  # it may have been sent: never send it again
        log.warning("SMS outcome unknown: %s", exc)
        return _json(202, {"status": "pending", "detail": "the code may arrive; do not resend"})
    log.error("SMS refused: %r", exc)  # InvalidRequest, an undocumented code, ...
    return _json(502, {"error": "sms_failed", "detail": "the SMS could not be sent"})


UNAVAILABLE = {"error": "sms_unavailable", "detail": "try again later"}


def _json(
    status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(dict(body), status=status, headers=headers)


async def send_otp(request: web.Request) -> web.Response:
    """``POST /otp`` ``{"phone": "..."}``: text a fresh code to the number."""
    try:
        payload = await request.json()
    except ValueError:
        return _json(400, {"error": "bad_request", "detail": "send JSON"})
    phone = payload.get("phone") if isinstance(payload, dict) else None
    if not isinstance(phone, str):
        return _json(400, {"error": "bad_request", "detail": '{"phone": "..."} expected'})
    code = new_code()
    try:
        result = await request.app[SMS].send(phone, f"Ma xac thuc cua ban la {code}")
    except errors.SmsError as exc:
        return error_response(exc)
    # Store a hash of ``code`` for this number here; never return the code itself.
    return _json(200, {"status": "sent", "message_id": result.message_id})


def create_app(environ: Mapping[str, str] | None = None, **options: Any) -> web.Application:
    """The app; ``options`` go to the client (tests pass a fast retry policy)."""

    async def sms_client(app: web.Application) -> AsyncIterator[None]:
        app[SMS] = make_client(environ, **options)
        yield
        await app[SMS].aclose()

    app = web.Application()
    app.cleanup_ctx.append(sms_client)
    app.router.add_post("/otp", send_otp)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(), host="127.0.0.1", port=8080)
