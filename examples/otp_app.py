"""Verify a phone number with a one-time code, in an aiohttp app, with ``smsvn.otp``.

    export SMSVN_PROVIDER=speedsms SMSVN_SPEEDSMS_TOKEN=...   # see examples/README.md
    export SMSVN_OTP_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')
    export SMSVN_OTP_REDIS_URL=redis://127.0.0.1:6379/0       # optional: codes shared by workers
    python examples/otp_app.py

    curl -X POST http://127.0.0.1:8080/otp/start -H 'Content-Type: application/json' \\
         -d '{"phone": "0912 345 678", "channel": "auto"}'
    curl -X POST http://127.0.0.1:8080/otp/check -H 'Content-Type: application/json' \\
         -d '{"phone": "0912 345 678", "code": "123456"}'

``POST /otp/start`` sends a code (``channel``: ``"sms"``, ``"voice"`` or ``"auto"``: SMS first,
a call on the resend or when the SMS provably could not go) and answers when it expires and
when another may be asked for. ``POST /otp/check`` answers whether the code is right. The
verifier does the rest: codes never stored or logged, attempts counted atomically, a resend
cooldown and caps per number (and an optional global budget: SMS pumping), a send bounded to a
few seconds. One client, one store and one verifier are made at start-up and shared.

Settings (environment): the provider's ``SMSVN_*`` variables (as ``smsvn`` reads them),
``SMSVN_OTP_SECRET`` (required: the HMAC key; keep it like a session key),
``SMSVN_OTP_TEMPLATE`` (``{code}`` once; default below), ``SMSVN_OTP_REDIS_URL`` and
``SMSVN_OTP_REDIS_PREFIX`` (without Redis, codes live in this process: one worker only),
``SMSVN_OTP_GLOBAL_PER_HOUR`` (codes an hour to all numbers; none by default).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from smsvn import errors, otp, providers

log = logging.getLogger("example.otp")

TEMPLATE = "Ma xac thuc cua ban la {code}"
"""The SMS text: plain (no diacritics), one segment, the wording eSMS suggests for OTPs."""
MAX_WAIT = 3.0
"""Seconds a send may wait for the account's turn; past it the next channel or 503 at once."""

CHANNELS: Mapping[str, otp.Channel] = {"sms": "sms", "voice": "voice", "auto": "auto"}
"""The channels a caller may ask for (``auto``: SMS first, a call on the resend)."""

VERIFIER = web.AppKey("verifier", otp.Verifier)


def _setting(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


async def make_verifier(
    environ: Mapping[str, str] | None = None, **options: Any
) -> tuple[otp.Verifier, Any, otp.Store]:
    """The verifier, with the client and the store it uses (to close at shutdown); a missing
    or bad setting stops the start-up with an error naming it, never its value."""
    env = os.environ if environ is None else environ
    secret = _setting(env, "SMSVN_OTP_SECRET")
    if secret is None:
        raise errors.ValidationError("SMSVN_OTP_SECRET is not set (the codes' HMAC key)")
    budget = _setting(env, "SMSVN_OTP_GLOBAL_PER_HOUR")
    if budget is not None and not budget.isdigit():
        raise errors.ValidationError("SMSVN_OTP_GLOBAL_PER_HOUR must be a whole number")
    provider = providers.get(_setting(env, "SMSVN_PROVIDER") or "speedsms")
    client = provider.client.from_env(environ=env, **options)
    url = _setting(env, "SMSVN_OTP_REDIS_URL")
    store: otp.Store = (
        otp.MemoryStore()
        if url is None
        else otp.RedisStore(url, prefix=_setting(env, "SMSVN_OTP_REDIS_PREFIX") or "smsvn")
    )
    try:
        verifier = otp.Verifier(
            client,
            store=store,
            secret=secret,
            template=_setting(env, "SMSVN_OTP_TEMPLATE") or TEMPLATE,
            global_sends_per_hour=None if budget is None else int(budget),
            max_wait=MAX_WAIT,
        )
    except BaseException:
        await client.aclose()
        await store.aclose()
        raise
    return verifier, client, store


def _json(
    status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(dict(body), status=status, headers=headers)


def _retry(status: int, error: str, exc: otp.OtpError | errors.RateLimited) -> web.Response:
    """An answer that says when to try again (``Retry-After``)."""
    wait = max(1, math.ceil(exc.retry_after or 1.0))
    return _json(status, {"error": error, "retry_in": wait}, {"Retry-After": str(wait)})


async def _fields(
    request: web.Request, *names: str, defaults: Mapping[str, str] | None = None
) -> dict[str, str] | web.Response:
    """The JSON object's string fields ``names`` (``defaults`` for those left out), or the 400
    answer."""
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _json(400, {"error": "bad_request", "detail": "send a JSON object"})
    values = {name: payload.get(name, (defaults or {}).get(name)) for name in names}
    bad = [name for name, value in values.items() if not isinstance(value, str)]
    if bad:
        return _json(400, {"error": "bad_request", "detail": f"strings expected: {bad}"})
    return {name: str(value) for name, value in values.items()}


async def start(request: web.Request) -> web.Response:
    """``POST /otp/start`` ``{"phone": "...", "channel": "sms" | "voice" | "auto"}``."""
    fields = await _fields(request, "phone", "channel", defaults={"channel": "sms"})
    if isinstance(fields, web.Response):
        return fields
    verifier = request.app[VERIFIER]
    channel = CHANNELS.get(fields["channel"])
    if channel is None or (channel != "auto" and channel not in verifier.channels):
        offered = ", ".join(("auto", *verifier.channels))
        return _json(422, {"error": "channel_unavailable", "detail": f"one of: {offered}"})
    try:
        v = await verifier.start(fields["phone"], channel=channel)
    except otp.TooSoon as exc:  # a code went out moments ago
        return _retry(429, "too_soon", exc)
    except otp.Blocked as exc:  # its attempts used up, or a cap on sends reached
        return _retry(429, "blocked", exc)
    except errors.ValidationError as exc:  # not a Vietnamese mobile number: nothing done
        return _json(422, {"error": "invalid_phone", "detail": exc.message})
    except errors.InvalidRecipient:  # the provider refused the number
        return _json(422, {"error": "invalid_phone", "detail": "this number cannot get codes"})
    except errors.RateLimited as exc:  # every sender's turn is too far away: nothing sent
        return _retry(503, "busy", exc)
    except errors.SmsError as exc:  # nothing was sent (OutcomeUnknown is never raised here)
        # Our account or the provider, not the user: tell the operators. smsvn's messages hold
        # no code and no credential.
        log.error("OTP not sent: %s", exc)
        return _json(503, {"error": "unavailable", "detail": "try again later"})
    now = time.time()  # the verifier's clock
    body = {
        "status": "sent" if v.outcome == "sent" else "pending",
        "channel": v.channel,
        "expires_in": max(0, round(v.expires_at - now)),
        "resend_in": max(0, math.ceil(v.resend_at - now)),
    }
    # "pending" (202): the provider did not answer, and the code may arrive; it stays valid.
    # Offer another only after resend_in seconds (it would replace this one).
    return _json(200 if v.outcome == "sent" else 202, body)


async def check(request: web.Request) -> web.Response:
    """``POST /otp/check`` ``{"phone": "...", "code": "..."}``."""
    fields = await _fields(request, "phone", "code")
    if isinstance(fields, web.Response):
        return fields
    try:
        result = await request.app[VERIFIER].check(fields["phone"], fields["code"])
    except errors.ValidationError as exc:
        return _json(422, {"error": "invalid_phone", "detail": exc.message})
    except otp.StoreError as exc:
        log.error("OTP check failed: %s", exc)
        return _json(503, {"error": "unavailable", "detail": "try again later"})
    if result.approved:
        # The number is verified: record that in the user's session or account here.
        return _json(200, {"approved": True})
    return _json(
        400,
        {"approved": False, "reason": result.reason.value, "attempts_left": result.attempts_left},
    )


def create_app(environ: Mapping[str, str] | None = None, **options: Any) -> web.Application:
    """The app; ``options`` go to the SMS client (tests pass a fast retry policy)."""

    async def verifier_ctx(app: web.Application) -> AsyncIterator[None]:
        verifier, client, store = await make_verifier(environ, **options)
        app[VERIFIER] = verifier
        try:
            yield
        finally:
            await client.aclose()
            await store.aclose()

    app = web.Application()
    app.cleanup_ctx.append(verifier_ctx)
    app.router.add_post("/otp/start", start)
    app.router.add_post("/otp/check", check)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(), host="127.0.0.1", port=8080)
