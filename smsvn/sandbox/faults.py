"""Fault switches: make the simulator misbehave the ways real networks and providers do.

A ``Fault`` names a kind, the provider and route it applies to (``"*"`` = all), and how often:
``times`` (fire that many times, then disarm; None = forever) and ``probability`` (each
matching request draws from the sandbox's seeded ``random.Random``, so a run is reproducible).

Kinds, and whether the request is processed (recorded in the outbox, charged) first:

| kind | processed | what the client sees |
| --- | --- | --- |
| ``latency`` | yes | the answer ``seconds`` later (adds to any other fault) |
| ``drop_before`` | no | the connection closed, no answer |
| ``drop_after`` | yes | the connection closed, no answer |
| ``status_5xx`` | no | HTTP 503 with an HTML error page |
| ``garbage`` | yes | HTTP 200 with a body that is neither JSON nor XML |
| ``empty`` | yes | HTTP 200 with an empty body |
| ``truncate`` | yes | half the real body, then the connection closed |
| ``rate_limit`` | no | HTTP 429 with ``X-Rate-Limit-Reset`` / ``Retry-After`` = ``seconds`` |
| ``hang`` | no | nothing, until the client gives up (or the sandbox closes) |
| ``dribble`` | yes | the real body a few bytes at a time, ``seconds`` between pieces |

Routes (the names ``sandbox.requests`` counts by):

- ``speedsms``: ``balance`` (user/info), ``send`` (sms/send, POST and GET), ``voice``
  (voice/otp, POST and GET);
- ``esms``: ``send`` (GET, JSON POST and form POST), ``balance``, ``status``, ``receivers``,
  ``sent_data``, ``brandnames``, and on the voice host ``voice_otp``, ``call_template``,
  ``call_record``, ``call_status``;
- ``fibo``: ``send`` and ``balance`` (at every path layout served), ``totals``;
- any other registered provider: the route names its simulator's ``routes()`` give.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Final, Literal, get_args

import msgspec

__all__ = ["DEFAULT_SECONDS", "KINDS", "PROCESSED", "Fault", "FaultKind", "Faults"]

FaultKind = Literal[
    "latency",
    "drop_before",
    "drop_after",
    "status_5xx",
    "garbage",
    "empty",
    "truncate",
    "rate_limit",
    "hang",
    "dribble",
]
KINDS: Final[frozenset[str]] = frozenset(get_args(FaultKind))
"""Every fault kind."""
PROCESSED: Final[frozenset[str]] = frozenset(
    {"latency", "drop_after", "garbage", "empty", "truncate", "dribble"}
)
"""Kinds that let the request be processed (and recorded) before misbehaving."""
DEFAULT_SECONDS: Final[Mapping[str, float]] = {
    "latency": 0.1,
    "rate_limit": 1.0,
    "dribble": 0.01,
}
"""``seconds`` when a fault does not say: the delay, the reset hint, the pause between pieces."""


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    """One fault switch: ``kind`` on ``provider``'s ``route`` (``"*"`` = any), ``times`` times
    (None = until removed) with ``probability`` per matching request; ``seconds`` as the kind
    uses it (see ``DEFAULT_SECONDS``)."""

    kind: FaultKind
    provider: str = "*"
    route: str = "*"
    times: int | None = None
    probability: float = 1.0
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError("Fault.times must be at least 1 (or None for always)")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("Fault.probability must be between 0 and 1")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError("Fault.seconds must not be negative")

    @property
    def delay(self) -> float:
        """``seconds``, or the kind's default."""
        if self.seconds is not None:
            return self.seconds
        return DEFAULT_SECONDS.get(self.kind, 0.0)


class _Armed:
    """A fault and how many more times it may fire (None = unlimited)."""

    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times


class Faults:
    """The active fault switches of one sandbox (``sandbox.faults``)."""

    def __init__(self, rng: random.Random, routes: Mapping[str, frozenset[str]]) -> None:
        self._rng = rng
        self._routes = routes
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> Fault:
        """Arm ``fault`` (after those already armed, which take precedence) and return it."""
        if fault.provider != "*" and fault.provider not in self._routes:
            raise ValueError(
                f"unknown provider {fault.provider!r}; one of {sorted(self._routes)} or '*'"
            )
        if fault.route != "*":
            providers = self._routes if fault.provider == "*" else [fault.provider]
            if not any(fault.route in self._routes[p] for p in providers):
                known = sorted({r for p in providers for r in self._routes[p]})
                raise ValueError(f"unknown route {fault.route!r}; one of {known} or '*'")
        self._armed.append(_Armed(fault))
        return fault

    def remove(self, fault: Fault) -> None:
        """Disarm ``fault`` (every copy of it); a fault not armed is ignored."""
        self._armed = [armed for armed in self._armed if armed.fault is not fault]

    def clear(self) -> None:
        """Disarm every fault."""
        self._armed.clear()

    def __bool__(self) -> bool:
        return bool(self._armed)

    def __len__(self) -> int:
        return len(self._armed)

    def __iter__(self) -> Iterator[Fault]:
        return iter([armed.fault for armed in self._armed])

    def select(self, provider: str, route: str) -> tuple[float, Fault | None]:
        """For one request: the added latency of the matching ``latency`` faults that fire,
        and the first other matching fault that fires (or None). Spends their ``times``."""
        extra = 0.0
        chosen: Fault | None = None
        spent = False
        for armed in self._armed:
            fault = armed.fault
            if fault.provider not in ("*", provider) or fault.route not in ("*", route):
                continue
            is_latency = fault.kind == "latency"
            if not is_latency and chosen is not None:
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            if is_latency:
                extra += fault.delay
            else:
                chosen = fault
            if armed.remaining is not None:
                armed.remaining -= 1
                spent = spent or armed.remaining == 0
        if spent:
            self._armed = [a for a in self._armed if a.remaining is None or a.remaining > 0]
        return extra, chosen

    def __repr__(self) -> str:
        return f"Faults({[armed.fault for armed in self._armed]!r})"
