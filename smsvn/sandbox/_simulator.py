"""What a sandbox needs of a simulated provider, and how it finds one.

A provider's registry entry names its simulator as ``"module:Class"``
(``smsvn.providers.Provider.simulator``). ``Sandbox`` imports that class with ``load`` and
builds it as ``Class(engine, settings)``: one ``Engine`` shared by every simulator of the
sandbox, and the ``Settings`` the sandbox has for that provider. Everything else the sandbox
asks of it (routes, 429s, starting balance and prices, the client keyword arguments that point
a client at it, its lines of ``describe()``) is the ``Simulator`` protocol below.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from aiohttp import web

from smsvn.limits import RateLimit
from smsvn.sandbox._base import Handler, Route
from smsvn.sandbox._engine import Engine

__all__ = ["Settings", "Simulator", "load"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What a sandbox tells one simulator when it builds it, beyond the shared engine.

    Every simulator gets one; a simulator ignores what its provider has no use for (only
    SpeedSMS documents a rate limit and an account-wide webhook).
    """

    rate_limit: RateLimit | None = None
    """The request limit the simulator enforces per account (None: no limit)."""
    webhook_url: str | None = None
    """Where the simulator POSTs account-wide reports (a per-request callback URL wins)."""


class Simulator(Protocol):
    """A simulated provider: served by the sandbox's one server, over the sandbox's engine.

    Class attributes: ``provider`` (the registry name it serves), ``default_balance`` (the
    account's starting balance, in the provider's unit) and ``default_prices`` (price keys ->
    price; the key of one SMS segment is the provider's name, others start with it, such as
    ``"esms_voice"``). The constructor is ``Class(engine, settings)``.
    """

    provider: ClassVar[str]
    default_balance: ClassVar[float]
    default_prices: ClassVar[Mapping[str, float]]

    def __init__(self, engine: Engine, settings: Settings) -> None: ...

    def routes(self) -> list[Route]:
        """The endpoints, each counted and open to faults under its route name."""
        ...

    def fallbacks(self) -> list[tuple[str, str, Handler]]:
        """Catch-all (method, path, handler) answers for unknown paths, in the provider's style."""
        ...

    def too_many(self, seconds: float) -> web.Response:
        """A forced HTTP 429 telling the client to wait ``seconds``."""
        ...

    def client_options(self, root: str) -> dict[str, Any]:
        """The keyword arguments of a client of this provider pointed at this simulator served
        at ``root`` (the server's URL): every credential by its ``Credential.name``, the base
        URL keywords, the sending defaults and the rate limit."""
        ...

    def describe(self, root: str) -> list[str]:
        """Lines telling people how to use the simulator served at ``root``: URLs, credentials
        and anything particular (``Sandbox.describe`` puts the provider's title before them)."""
        ...


def load(spec: str) -> type[Simulator]:
    """The simulator class a registry entry names as ``"module:Class"`` (imported now)."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"a simulator is named 'module:Class', not {spec!r}")
    simulator = getattr(importlib.import_module(module_name), class_name, None)
    if not isinstance(simulator, type):
        raise ValueError(f"{spec!r} names no class")
    return simulator
