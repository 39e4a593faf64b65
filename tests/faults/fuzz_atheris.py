"""Coverage-guided fuzzing of every parser with atheris (optional: ``pip install atheris``).

    python -m tests.faults.fuzz_atheris [libFuzzer options, e.g. -max_total_time=600 corpus/]

Each input picks a target (SpeedSMS, eSMS or Fibo answers to every client method, the two
webhook parsers, ``phone.normalize``) and feeds it the rest of the bytes; anything raised but
an ``SmsError`` is a crash that libFuzzer saves. Without atheris, ``--smoke N`` runs N random
inputs through the same targets (the test suite does this, so the entry point keeps working).
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable
from typing import Any

from smsvn import phone, webhooks
from smsvn.errors import SmsError
from tests.test_fuzz_parsers import (
    ESMS_CALLS,
    ESMS_CLIENT,
    FIBO,
    FIBO_CALLS,
    SPEEDSMS,
    SPEEDSMS_CALLS,
    answer,
    drive,
)

_STATUSES = (200, 200, 200, 400, 401, 403, 429, 500, 503)
_HINTS = ("", "0", "1", "2.5", "-1", "nan", "Wed, 21 Oct 2015 07:28:00 GMT", "x")


def _client_target(
    client: Any, calls: list[Callable[[Any], Any]], header: str
) -> Callable[..., None]:
    def run(data: bytes, pick: int) -> None:
        status = _STATUSES[pick % len(_STATUSES)]
        hint = _HINTS[(pick // 7) % len(_HINTS)]
        client._transport.call = answer(status, data, {header: hint}, 1 + pick % 3)
        drive(calls[(pick // 3) % len(calls)](client))

    return run


def _webhook_esms(data: bytes, pick: int) -> None:
    text = data.decode("utf-8", "replace")
    pairs = [part.partition("=") for part in text.split("&")]
    webhooks.parse_esms({key: value for key, _, value in pairs})


TARGETS: list[Callable[[bytes, int], None]] = [
    _client_target(SPEEDSMS, SPEEDSMS_CALLS, "X-Rate-Limit-Reset"),
    _client_target(ESMS_CLIENT, ESMS_CALLS, "Retry-After"),
    _client_target(FIBO, FIBO_CALLS, "Retry-After"),
    lambda data, pick: webhooks.parse_speedsms(data),
    _webhook_esms,
    lambda data, pick: phone.normalize(data.decode("utf-8", "replace")),
]


def one_input(data: bytes) -> None:
    """The fuzz target: the first two bytes choose the target and its options."""
    if len(data) < 2:
        return
    pick = data[1]
    with contextlib.suppress(SmsError):
        TARGETS[data[0] % len(TARGETS)](data[2:], pick)


def smoke(runs: int, seed: int = 0) -> None:
    """Random inputs through ``one_input`` without atheris."""
    rng = random.Random(seed)
    for _ in range(runs):
        one_input(rng.randbytes(rng.randint(0, 300)))


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[1] == "--smoke":
        smoke(int(argv[2]))
        return
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        sys.exit("atheris is not installed (pip install atheris); try --smoke 10000")
    atheris.Setup(argv, one_input)
    if hasattr(atheris, "instrument_all"):
        atheris.instrument_all()  # coverage guidance through smsvn, msgspec glue and lxml glue
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
