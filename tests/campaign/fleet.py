"""Runner processes for the crash tests, against a simulator in the test's own process.

Each runner is ``python -m tests.campaign.runner ... -- campaign work ...``: the real command,
in its own process, its credentials in the environment. A ``Fleet`` starts them, reads which
journal runner each process became, kills them (SIGKILL, SIGSTOP) and starts them again.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smsvn import providers
from smsvn.sandbox import Sandbox

__all__ = ["CONTENT", "Fleet", "Runner", "campaign_input", "number"]

ROOT = Path(__file__).resolve().parents[2]
CONTENT = "Khuyen mai 20% cho khach hang than thiet den het 30/11. Tu choi: TC"
_PREFIXES = ("090", "091", "093", "094", "096", "097", "098")


def number(i: int) -> str:
    """The ``i``-th distinct number of a test campaign (national form)."""
    return f"{_PREFIXES[i % len(_PREFIXES)]}{i:07d}"


def campaign_input(n: int) -> tuple[list[str], set[str], int, int]:
    """``n`` distinct numbers written in several forms, with an invalid entry every 50 and a
    repeat (written another way) every 40 mixed in: (inputs, the distinct valid numbers,
    invalid entries, repeats)."""
    inputs: list[str] = []
    invalid = repeats = 0
    for i in range(n):
        national = number(i)
        form = i % 4
        inputs.append(
            national
            if form == 0
            else "84" + national[1:]
            if form == 1
            else f"+84 {national[1:4]} {national[4:7]} {national[7:]}"
            if form == 2
            else f"{national[:4]}.{national[4:7]}.{national[7:]}"
        )
        if i % 50 == 7:
            inputs.append(f"not-a-number-{i}")
            invalid += 1
        if i % 40 == 3:
            inputs.append("84" + number(i - 1)[1:])
            repeats += 1
    return inputs, {number(i) for i in range(n)}, invalid, repeats


@dataclass
class Runner:
    """One runner process."""

    process: asyncio.subprocess.Process
    owner: int | None = None
    """The journal's id of this runner (printed by the process once registered)."""
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("runner ") and self.owner is None:
                self.owner = int(line.split()[1])
            self.stderr.append(line)

    async def registered(self, within: float = 20.0) -> int:
        """Wait until the process has registered with the journal; its runner id."""
        async with asyncio.timeout(within):
            while self.owner is None:
                if self.process.returncode is not None:
                    raise AssertionError(f"runner ended early: {list(self.stderr)}")
                await asyncio.sleep(0.01)
        return self.owner

    async def ended(self) -> int:
        code = await self.process.wait()
        if self.reader is not None:
            await self.reader
        return code


class Fleet:
    """Starts runners of one campaign through one provider on the sandbox ``sb``."""

    def __init__(
        self,
        sb: Sandbox,
        *,
        journal: str,
        campaign: str,
        provider: str,
        concurrency: int,
        lease: float = 10.0,
        rate_limit: str = "off",
    ) -> None:
        entry = providers.get(provider)
        options: dict[str, Any] = sb.client_options(provider)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
        for credential in entry.credentials:
            self.env[credential.env] = str(options[credential.name])
        self.command = [
            "campaign", "work", "--journal", journal, "--name", campaign, "-p", provider,
            "--base-url", str(options["base_url"]), "--no-progress", "--timeout", "10",
            "--concurrency", str(concurrency), "--lease", str(lease), "--rate-limit", rate_limit,
        ]  # fmt: skip
        if entry.sender_option is not None and options.get(entry.sender_option):
            self.command += ["--" + entry.sender_option, str(options[entry.sender_option])]
        if options.get("sms_type") is not None:
            self.command += ["--sms-type", str(options["sms_type"])]
        self.started = 0

    async def start(
        self, *, kill: float = 0.0, seed: int | None = None, journal: str | None = None
    ) -> Runner:
        """A new runner; ``kill`` is its chance of SIGKILL at each step of its work;
        ``journal`` another URL of the same journal (a tagged one)."""
        self.started += 1
        command = list(self.command)
        if journal is not None:
            command[command.index("--journal") + 1] = journal
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.campaign.runner",
            "--seed", str(self.started if seed is None else seed), "--kill", str(kill),
            "--", *command,
            cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        runner = Runner(process)
        runner.reader = asyncio.create_task(runner.read())
        return runner
