"""The provider registry: every provider's client, credentials, prices, simulator and webhooks.

The CLI, the sandbox, the webhook receiver, the demo and the cross-provider tests loop over
``all_providers()``; a new provider is its module (which declares ``PROVIDER``), its simulator,
its tests and one ``register(...)`` line below.
"""

from __future__ import annotations

from smsvn.errors import ValidationError
from smsvn.providers import esms, fibo, speedsms
from smsvn.providers._spec import Credential, Event, Provider, Webhook

__all__ = [
    "Credential",
    "Event",
    "Provider",
    "Webhook",
    "all_providers",
    "get",
    "names",
    "register",
    "unregister",
]

_REGISTRY: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    """Add ``provider`` to the registry (its name must be new); returns it."""
    if provider.name in _REGISTRY:
        raise ValueError(f"a provider named {provider.name!r} is already registered")
    if provider.name != provider.name.lower() or not provider.name.isidentifier():
        raise ValueError(f"a provider name is a lower-case identifier, not {provider.name!r}")
    _REGISTRY[provider.name] = provider
    return provider


def unregister(name: str) -> None:
    """Remove a provider (tests that register a toy one clean up with this)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Provider:
    """The provider called ``name`` (any case), or ``ValidationError`` naming the known ones."""
    provider = _REGISTRY.get(name.lower()) if isinstance(name, str) else None
    if provider is None:
        raise ValidationError(f"unknown provider {name!r}; one of {', '.join(_REGISTRY)}")
    return provider


def all_providers() -> tuple[Provider, ...]:
    """Every registered provider, in registration order."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The registered providers' names, in registration order."""
    return tuple(_REGISTRY)


register(speedsms.PROVIDER)
register(esms.PROVIDER)
register(fibo.PROVIDER)
