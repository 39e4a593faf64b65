"""What the registry knows of a provider: its client, credentials, prices, simulator and webhooks.

Each provider module declares one ``Provider`` (``PROVIDER``); ``smsvn.providers`` registers it.
Everything provider-neutral (the CLI, the sandbox, the webhook receiver, the demo, the tests)
loops over the registry, so adding a provider is its module, its simulator, its tests and one
line in ``smsvn/providers/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from smsvn.models import CallReport, DeliveryReport, InboundSms
from smsvn.providers._base import BaseClient, Credential

__all__ = ["Credential", "Event", "Provider", "Webhook"]

Event: TypeAlias = DeliveryReport | InboundSms | CallReport
"""Anything a provider's webhook may report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """How a provider calls back: the HTTP methods it uses and the parser of one callback."""

    methods: tuple[str, ...]
    parse: Callable[[bytes, Mapping[str, str]], Event]
    """Body and query string of one callback -> the typed event; ``ValidationError`` if bad."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """One provider, as everything outside its own module sees it."""

    name: str
    """The registry key, lower case (``"speedsms"``): CLI ``-p``, sandbox, webhook path."""
    title: str
    """How people write it (``"SpeedSMS"``)."""
    client: type[BaseClient]
    credentials: tuple[Credential, ...]
    """The CLI's credential flags and variables: the client's own ``credentials`` (what its
    ``from_env`` reads), as in ``credentials=SpeedSMS.credentials``."""
    price: float
    """The usual price of one SMS segment, in ``unit``: the client's own ``price``, as in
    ``price=SpeedSMS.price`` (what bulk reports estimate with)."""
    unit: str
    """``"VND"``, or ``"messages"`` where the account counts messages (Fibo): the client's
    ``unit``."""
    simulator: str
    """``"module:Class"`` of its simulator, imported only when a sandbox starts."""
    sender_option: str | None = None
    """The client keyword that names the sender (``"sender"``, ``"brandname"``), if any."""
    webhook: Webhook | None = None
    """Its callbacks, if it makes any."""
    resend_window: float | None = None
    """Seconds for which the provider recognises a request id it has already received and
    refuses the request again without sending it (eSMS ``RequestId``: about a day). A durable
    campaign resends a message that may have left only under its original id and only well
    inside this window; None: the provider does not deduplicate, so such a message is never
    resent (it stays ``unknown`` until reconciled)."""
    resent_code: str | None = None
    """The provider's code refusing a request id it has already received (eSMS ``"124"``).
    The answer to a resend under the original id, it means the earlier attempt got in."""
