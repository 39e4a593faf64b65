"""Send a one-time code from a FastAPI app, through one smsvn client shared by every request.

    pip install fastapi uvicorn
    export SMSVN_PROVIDER=speedsms SMSVN_SPEEDSMS_TOKEN=...   # see examples/README.md
    uvicorn fastapi_app:app --app-dir examples
    curl -X POST http://127.0.0.1:8000/otp -H 'Content-Type: application/json' \\
         -d '{"phone": "0912 345 678"}'

The client is created in the app's lifespan from the ``SMSVN_*`` variables (``from_env``) and
closed at shutdown. ``max_wait`` and ``deadline`` bound every send, so a request never waits
minutes for a busy account or a hanging provider. One exception handler turns every error
smsvn raises into an HTTP answer that tells the caller what to do; account problems are logged
and hidden behind a generic 503.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

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


class OtpRequest(BaseModel):
    phone: str


class OtpSent(BaseModel):
    status: str
    message_id: str | None


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


UNAVAILABLE = {"error": "sms_unavailable", "detail": "try again later"}


def error_response(exc: errors.SmsError) -> JSONResponse:
    """The HTTP answer to an smsvn error: the class says whether anything was sent."""
    if isinstance(exc, errors.ValidationError):  # refused locally, before any request
        return JSONResponse({"error": "invalid_phone", "detail": exc.message}, 422)
    if isinstance(exc, errors.InvalidRecipient):  # the provider refused the number
        return JSONResponse({"error": "invalid_phone", "detail": "this number cannot get SMS"}, 422)
    if isinstance(
        exc,
        errors.AuthenticationError | errors.SenderNotRegistered | errors.InsufficientBalance,
    ):
        # Our account's problem, not the user's: tell the operators, not the user.
        log.error("SMS account problem, no code can be sent: %s", exc)
        return JSONResponse(UNAVAILABLE, 503)
    if isinstance(exc, errors.RateLimited):  # the account's turn is too far away: nothing sent
        wait = math.ceil(exc.retry_after or 1.0)
        body = {"error": "busy", "detail": "try again later"}
        return JSONResponse(body, 503, headers={"Retry-After": str(wait)})
    if isinstance(exc, errors.ProviderUnavailable | errors.ConnectError):  # nothing was sent
        log.warning("SMS provider unavailable: %s", exc)
        return JSONResponse(UNAVAILABLE, 503)
    if isinstance(exc, errors.OutcomeUnknown):  # it may have been sent: never send it again
        log.warning("SMS outcome unknown: %s", exc)
        return JSONResponse(
            {"status": "pending", "detail": "the code may arrive; do not resend"}, 202
        )
    log.error("SMS refused: %r", exc)  # InvalidRequest, an undocumented code, ...
    return JSONResponse({"error": "sms_failed", "detail": "the SMS could not be sent"}, 502)


def create_app(environ: Mapping[str, str] | None = None, **options: Any) -> FastAPI:
    """The app; ``options`` go to the client (tests pass a fast retry policy)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.sms = make_client(environ, **options)
        try:
            yield
        finally:
            await app.state.sms.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(errors.SmsError)
    async def on_sms_error(request: Request, exc: errors.SmsError) -> JSONResponse:
        return error_response(exc)

    @app.post("/otp")
    async def send_otp(body: OtpRequest, request: Request) -> OtpSent:
        """Text a fresh code to ``phone``."""
        sms: SmsClient = request.app.state.sms
        code = new_code()
        result = await sms.send(body.phone, f"Ma xac thuc cua ban la {code}")
        # Store a hash of ``code`` for this number here; never return the code itself.
        return OtpSent(status="sent", message_id=result.message_id)

    return app


app = create_app()
"""For ``uvicorn fastapi_app:app``: the environment is read when the app starts, not here."""
