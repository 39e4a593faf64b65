"""A campaign runner for the crash tests: the real ``smsvn campaign work`` command, in its own
process, that kills itself with SIGKILL at random moments of its work.

    python -m tests.campaign.runner --seed 7 --kill 0.01 -- campaign work --journal ... -p esms

``--kill P``: at each of these moments, with probability P, the process sends itself SIGKILL (a
real crash: no exception, no cleanup, no flush):

- ``claimed``: batches reserved, none of them marked in flight yet;
- ``departed``: a batch recorded in flight, its request not sent yet;
- ``answered``: the provider's answer received, the outcome not recorded yet;
- ``settled``: the outcome recorded.

The runner prints ``runner <id>`` on stderr once registered, so the test can tell which rows of
the journal were held by which process. Nothing else of the library is changed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from collections.abc import Sequence
from typing import Any

from smsvn import cli
from smsvn.journal import _runner
from smsvn.models import SendResult

MOMENTS = ("claimed", "departed", "answered", "settled")


def _install(rng: random.Random, chance: float, moments: Sequence[str]) -> None:
    """Wrap the runner's steps so that each may end in SIGKILL."""

    def maybe_die(moment: str) -> None:
        if moment in moments and rng.random() < chance:
            os.kill(os.getpid(), signal.SIGKILL)

    start, claim, depart = _runner.Runner.start, _runner.Source.claim, _runner.Source.depart
    send, settle = _runner.Source.send, _runner.Source.settle

    async def started(self: _runner.Runner) -> None:
        await start(self)
        print(f"runner {self.id}", file=sys.stderr, flush=True)

    async def claimed(self: _runner.Source, count: int) -> Any:
        batches = await claim(self, count)
        if batches:
            maybe_die("claimed")
        return batches

    async def departed(self: _runner.Source, batch: Any) -> bool:
        ok = await depart(self, batch)
        if ok:
            maybe_die("departed")
        return ok

    async def answered(self: _runner.Source, *args: Any) -> SendResult:
        result = await send(self, *args)
        maybe_die("answered")
        return result

    async def settled(self: _runner.Source, *args: Any) -> Any:
        outcome = await settle(self, *args)
        maybe_die("settled")
        return outcome

    _runner.Runner.start = started  # type: ignore[method-assign]
    _runner.Source.claim = claimed  # type: ignore[method-assign]
    _runner.Source.depart = departed  # type: ignore[method-assign]
    _runner.Source.send = answered  # type: ignore[method-assign]
    _runner.Source.settle = settled  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill", type=float, default=0.0, help="chance of SIGKILL a moment")
    parser.add_argument("--moments", default=",".join(MOMENTS))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _install(random.Random(args.seed), args.kill, args.moments.split(","))
    return cli.main(command)


if __name__ == "__main__":
    sys.exit(main())
