"""Who a runner is, and whether a runner on this machine is still alive.

A runner's claims hold for its lease; a runner that stops renewing (killed, paused, cut off)
loses them when the lease runs out. On Linux a runner can also tell, at once, that another
runner *of the same machine* is dead: its process no longer exists, is a zombie, or its pid now
belongs to a process started at another time. "The same machine" means the same boot
(``/proc/sys/kernel/random/boot_id``) and the same pid namespace (a container has its own), so
a pid is never looked up on a machine it does not belong to. Anything uncertain counts as alive
and waits for the lease: declaring a live runner dead early is the one mistake to avoid.
"""

from __future__ import annotations

import functools
import os
import socket

from smsvn.journal._store import RunnerInfo

__all__ = ["alive", "me"]


@functools.cache
def _machine() -> str | None:
    """This boot and pid namespace, or None where /proc does not tell."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot else None


def _start_time(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of process ``pid``, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])  # state (field 3), starttime (field 22)


def me() -> RunnerInfo:
    """This process as a runner."""
    pid = os.getpid()
    started = 0
    if _machine() is not None:
        try:
            found = _start_time(pid)
        except (OSError, ValueError, IndexError):
            found = None
        started = found[1] if found is not None else 0
    return RunnerInfo(
        name=f"{socket.gethostname()}:{pid}", machine=_machine(), pid=pid, started=started
    )


def alive(machine: str | None, pid: int, started: int) -> bool:
    """Whether the runner process (``machine``, ``pid``, ``started``) may be alive: False only
    when it is certainly dead (on this machine: gone, a zombie, or its pid reused)."""
    here = _machine()
    if here is None or machine != here or not started:
        return True
    try:
        found = _start_time(pid)
    except (OSError, ValueError, IndexError):
        return True
    if found is None:
        return False
    state, start = found
    return state != "Z" and start == started
