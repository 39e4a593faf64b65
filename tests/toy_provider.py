"""A toy fourth provider, client and simulator, to prove the sandbox serves any registered
provider through the registry alone (``tests/test_sandbox.py`` registers it).

Wire format: the key in an ``X-Toy-Key`` header; ``POST /send`` with ``{"to": [numbers],
"content": text}`` answers ``{"id": ..., "accepted": [numbers]}``; ``GET /balance`` answers
``{"balance": amount}``; a wrong key gets HTTP 401 ``{"error": "bad key"}``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar, Final, Unpack

import msgspec
from aiohttp import web

from smsvn.bulk import BatchSender
from smsvn.errors import AuthenticationError, InvalidRequest
from smsvn.models import Balance, SendResult
from smsvn.providers import Credential, Provider
from smsvn.providers._base import (
    BaseClient,
    ClientOptions,
    require_recipients,
    split_recipients,
)
from smsvn.sandbox._base import Batch, Handler, Route, national, too_many_html
from smsvn.sandbox._engine import Engine
from smsvn.sandbox._simulator import Settings
from smsvn.transport import Response

__all__ = ["PROVIDER", "Toy", "ToySimulator"]

NAME: Final = "toy"
KEY: Final = "toy-sandbox-key"
"""The one key the simulator accepts."""
PREFIX: Final = "/toy"


class _Sent(msgspec.Struct, frozen=True):
    id: str
    accepted: list[str]


class _Balance(msgspec.Struct, frozen=True):
    balance: float


class _SendBody(msgspec.Struct, frozen=True):
    to: list[str]
    content: str


class Toy(BaseClient):
    """The toy provider's client: ``send`` and ``balance`` over JSON."""

    provider = NAME
    price = 10.0
    unit = "credits"

    def __init__(
        self, key: str, *, base_url: str = "https://toy.invalid", **options: Unpack[ClientOptions]
    ) -> None:
        super().__init__(
            base_url=base_url,
            account=key,
            secrets=(key,),
            options=options,
            headers={"X-Toy-Key": key},
        )

    async def send(self, to: str | Sequence[str], content: str) -> SendResult:
        """Send ``content`` to one number or several in one request."""
        recipients = split_recipients(to)
        require_recipients(recipients, NAME, "send")
        result = await self._send(recipients.valid, content)
        return SendResult(
            provider=NAME,
            message_id=result.message_id,
            recipients=result.recipients,
            invalid=tuple(recipients.invalid),
            raw=result.raw,
        )

    def batch_sender(self, *, content: str | None) -> BatchSender:
        """Send each batch as it comes: the toy has no options to check."""

        def send_batch(
            numbers: list[str], text: str, request_id: str | None
        ) -> Awaitable[SendResult]:
            return self._send(numbers, text)

        return send_batch

    async def _send(self, numbers: list[str], content: str) -> SendResult:
        """POST one batch of canonical numbers."""
        body = msgspec.json.encode(_SendBody(to=numbers, content=content))

        def parse(response: Response) -> SendResult:
            sent = msgspec.json.decode(_checked(response, "send"), type=_Sent)
            return SendResult(
                provider=NAME, message_id=sent.id, recipients=tuple(sent.accepted), raw=sent
            )

        return await self._transport.call(
            "POST",
            f"{self.base_url}/send",
            endpoint="send",
            parse=parse,
            data=body,
            content_type="application/json",
            idempotent=False,
        )

    async def balance(self) -> Balance:
        """The account balance, in toy credits."""

        def parse(response: Response) -> Balance:
            answer = msgspec.json.decode(_checked(response, "balance"), type=_Balance)
            return Balance(provider=NAME, amount=answer.balance, currency=None, raw=answer)

        return await self._transport.call(
            "GET", f"{self.base_url}/balance", endpoint="balance", parse=parse, idempotent=True
        )


def _checked(response: Response, endpoint: str) -> bytes:
    """The body of a 200 answer; the typed error of any other."""
    if response.status == 401:
        raise AuthenticationError("the key was refused", provider=NAME, endpoint=endpoint)
    if response.status != 200:
        raise InvalidRequest(f"HTTP {response.status}", provider=NAME, endpoint=endpoint)
    return response.body


class ToySimulator:
    """The toy provider's two endpoints over the sandbox's engine."""

    provider: ClassVar[str] = NAME
    default_balance: ClassVar[float] = 1_000.0
    default_prices: ClassVar[Mapping[str, float]] = {NAME: 10.0}

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings

    def routes(self) -> list[Route]:
        """``send`` and ``balance``."""
        return [
            Route("POST", PREFIX + "/send", "send", self._send),
            Route("GET", PREFIX + "/balance", "balance", self._balance),
        ]

    def fallbacks(self) -> list[tuple[str, str, Handler]]:
        """None: aiohttp's plain 404 will do."""
        return []

    def too_many(self, seconds: float) -> web.Response:
        """A generic 429 page."""
        return too_many_html(seconds)

    def client_options(self, root: str) -> dict[str, Any]:
        """``Toy(key, base_url=..., rate_limit=...)``."""
        return {"key": KEY, "base_url": root + PREFIX, "rate_limit": self._settings.rate_limit}

    def describe(self, root: str) -> list[str]:
        """The base URL and the key."""
        return [f"base_url={root}{PREFIX}", f"key={KEY}"]

    async def _send(self, request: web.Request) -> web.Response:
        """Accept one content to the numbers that are Vietnamese mobile ones."""
        if request.headers.get("X-Toy-Key") != KEY:
            return web.json_response({"error": "bad key"}, status=401)
        body = msgspec.json.decode(await request.read(), type=_SendBody)
        numbers = [n for n in (national(raw) for raw in body.to) if n is not None]
        engine = self._engine
        price = engine.prices[NAME]
        if not numbers or not engine.charge(NAME, price * len(numbers)):
            return web.json_response({"error": "refused"}, status=400)
        due, retry_at = engine.times()
        message_id = str(engine.serial())
        engine.accept(
            Batch(
                provider=NAME,
                kind="sms",
                message_id=message_id,
                numbers=numbers,
                content=body.content,
                accepted_at=time.time(),
                due=due,
                retry_at=retry_at,
                unit_price=price,
                segments=1,
            )
        )
        return web.json_response({"id": message_id, "accepted": numbers})

    async def _balance(self, request: web.Request) -> web.Response:
        """The account's balance."""
        if request.headers.get("X-Toy-Key") != KEY:
            return web.json_response({"error": "bad key"}, status=401)
        return web.json_response({"balance": self._engine.balances[NAME]})


PROVIDER: Final = Provider(
    name=NAME,
    title="Toy",
    client=Toy,
    credentials=(Credential(name="key", env="SMSVN_TOY_KEY", help="toy key"),),
    price=Toy.price,
    unit=Toy.unit,
    simulator="tests.toy_provider:ToySimulator",
)
"""The toy provider's registry entry (not registered until a test does it)."""
