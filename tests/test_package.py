"""The package's shape: its public names, what ``import smsvn`` loads, and no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import smsvn

PACKAGE = Path(smsvn.__file__).parent

PUBLIC = [
    "ESMS",
    "AttemptInfo",
    "Balance",
    "Brandname",
    "BrandnameType",
    "BulkOutcome",
    "BulkProgress",
    "BulkReport",
    "CallReport",
    "CallResult",
    "CallStatus",
    "DailyTotals",
    "DeliveryReport",
    "DeliveryState",
    "Failover",
    "FailoverAttempt",
    "Fibo",
    "Hooks",
    "InboundSms",
    "InvalidNumber",
    "Journal",
    "Message",
    "MessageStatus",
    "Outcome",
    "RateLimit",
    "RedisLimiter",
    "ReceiverStatus",
    "RetryPolicy",
    "SendResult",
    "SendStatus",
    "SentMessage",
    "SpeedSMS",
    "advertising",
    "errors",
    "otp",
    "phone",
    "sandbox",
    "text",
    "webhooks",
]


def test_public_names_are_pinned() -> None:
    """A name added to or dropped from the public surface is a decision, not an accident."""
    assert sorted(smsvn.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(smsvn, name) is not None


def test_import_loads_neither_the_simulator_nor_aiohttp_web() -> None:
    code = (
        "import sys, smsvn; "
        "print(' '.join(m for m in ('aiohttp.web', 'smsvn.sandbox', 'smsvn.webhooks') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_task_queues_load_only_when_asked_for() -> None:
    """``smsvn.taskiq`` (extra ``smsvn[taskiq]``) is imported by name, never by ``import
    smsvn``; ``smsvn.workers``, what an arq or Celery task calls, needs no taskiq."""
    code = (
        "import sys, smsvn; loaded = [m for m in ('taskiq', 'smsvn.taskiq', 'smsvn.workers') "
        "if m in sys.modules]; import smsvn.workers; "
        "print(' '.join(loaded), 'taskiq' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
    import smsvn.taskiq

    assert smsvn.taskiq.work_campaign is smsvn.workers.work_campaign


def test_lazy_modules_load_on_first_use() -> None:
    assert smsvn.sandbox.Sandbox.__name__ == "Sandbox"
    assert callable(smsvn.webhooks.app)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The smsvn modules ``path`` imports anywhere: functions and TYPE_CHECKING blocks included
    (an import only the type checker sees still ties the two modules' designs together)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    found.add(target)
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def test_no_import_cycles() -> None:
    """No two smsvn modules import each other, directly or through others, even lazily."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    # A package's __init__ is imported before its submodules by Python itself: an edge from a
    # submodule to its own package is not a cycle of ours.
    for name, targets in graph.items():
        targets -= {p for p in targets if name.startswith(p + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    assert cycles == []
