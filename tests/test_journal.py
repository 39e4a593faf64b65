"""``smsvn.Journal``: durable campaigns, on a real SQLite file and a real PostgreSQL (each test
runs on both), sending to the simulator, whose outbox is the ground truth.

The crash proofs (SIGKILL, SIGSTOP, several processes) are in ``tests/campaign/``; these tests
pin the rules one at a time: idempotent import, the states and their transitions, what goes back
to pending and what never leaves ``unknown`` but by reconciliation, fencing, Failover, secrets.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import smsvn
from smsvn import errors
from smsvn.bulk import Outcome
from smsvn.journal import Added, Counts, LeaseLost
from smsvn.journal._campaign import redact_url
from smsvn.journal._dsn import has_password, is_keyword_dsn
from smsvn.journal._runner import Runner, Source
from smsvn.journal._sqlite import SqliteStore
from smsvn.journal._store import State
from smsvn.models import DeliveryReport, DeliveryState, Message
from smsvn.sandbox import Fault, Sandbox
from smsvn.transport import RetryPolicy
from tests.campaign.fleet import CONTENT, ROOT, campaign_input, number
from tests.campaign.journals import expire_resends, journal_url, postgres_dsn, rows, store_of
from tests.conftest import PROVIDERS, per_provider
from tests.services import postgres_schema

__all__ = ["journal_url", "postgres_dsn"]

FAST = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)
GIVES_AN_ID = per_provider({"speedsms": True, "esms": True, "fibo": False})
"""Whether the provider's answer to a send carries an id of the message (Fibo's does not)."""


@pytest.fixture
async def sb() -> Sandbox:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.01) as sandbox:
        yield sandbox  # type: ignore[misc]


def accepted(sb: Sandbox, provider: str, content: str = CONTENT) -> Counter[str]:
    return Counter(r.phone for r in sb.outbox.for_provider(provider) if r.content == content)


# -- import ---------------------------------------------------------------------------------------


async def test_add_is_idempotent_and_records_every_input(journal_url: str) -> None:
    inputs, valid, invalid, repeats = campaign_input(1_000)
    odd = [None, 12345, b"0912345678", "", "+84 91 234 5678 9"]
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("promo")
        first = await campaign.add([*inputs, *odd], content=CONTENT)
        assert first == Added(
            read=len(inputs) + len(odd),
            added=len(valid),
            invalid=invalid + len(odd),
            duplicates=repeats,
        )
        # The same input again adds nothing: not even duplicates.
        again = await campaign.add([*inputs, *odd], content=CONTENT)
        assert again == Added(read=first.read, already=first.read)
        # The input appended to: only what is new (a repeat of an old number is a duplicate).
        more = [*inputs, *odd, number(5_000), "0" + number(3)[1:]]
        appended = await campaign.add(iter(more), content=CONTENT)
        assert appended == Added(read=len(more), added=1, duplicates=1, already=first.read)
        # The same numbers with another text: another message each.
        other = await campaign.add([number(i) for i in range(10)], content="Another text")
        assert other.added == 10
        assert await campaign.texts() == [CONTENT, "Another text"]
        counts = await campaign.counts()
        assert counts == Counts(
            pending=len(valid) + 11,
            invalid=invalid + len(odd),
            duplicate=repeats + 1,
        )
        assert counts.total == first.read + 2 + 10
        listed = [r async for r in campaign.recipients(state="invalid")]
        assert {r.phone for r in listed} >= {"None", "12345", "b'0912345678'", "not-a-number-7"}
        assert all(r.error for r in listed)
        dupes = [r async for r in campaign.recipients(state="duplicate")]
        assert all(r.phone in valid and "duplicate" in (r.error or "") for r in dupes)


async def test_an_async_input_of_several_segments_keeps_its_order(journal_url: str) -> None:
    async def numbers() -> object:
        for i in range(45_000):
            yield number(i)

    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("big")
        added = await campaign.add(numbers(), content=CONTENT)  # type: ignore[arg-type]
        assert added == Added(read=45_000, added=45_000)
        assert (await campaign.add(numbers(), content=CONTENT)).already == 45_000  # type: ignore[arg-type]
        phones = [r.phone async for r in campaign.recipients()]
        assert phones == [number(i) for i in range(45_000)]


async def test_a_postgresql_page_reads_its_own_rows_not_the_campaign(postgres_dsn: str) -> None:
    """``recipients()`` on PostgreSQL reads each page through an ordered index range: the rows
    a page's plan touches stay near the page's size however large the campaign (right after an
    add, with the table's statistics stale, a plain ``ORDER BY id`` read every row of the
    campaign for every page: 11 s for 100,000 rows)."""
    import asyncpg

    from smsvn.journal._postgres import _PAGE_ALL, _PAGE_STATE

    async with postgres_schema(postgres_dsn) as url:
        async with smsvn.Journal(url) as journal:
            campaign = await journal.campaign("pages")
            await campaign.add([number(i) for i in range(6_000)], content=CONTENT)
        db = await asyncpg.connect(url)
        try:
            ident = await db.fetchval("SELECT id FROM smsvn_campaigns WHERE name = 'pages'")
            after = await db.fetchval(
                "SELECT id FROM smsvn_recipients WHERE campaign = $1 ORDER BY id OFFSET 2000 "
                "LIMIT 1",
                ident,
            )
            for query, args in (
                (_PAGE_ALL, (ident, after, 100)),
                (_PAGE_STATE, (ident, after, 100, int(State.PENDING))),
            ):
                plan = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
                nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
                read = max(
                    n["Actual Rows"] * n["Actual Loops"]
                    for n in nodes
                    if n.get("Relation Name") == "smsvn_recipients"
                    and "Scan" in n["Node Type"]
                    and n.get("Index Name") != "smsvn_recipients_pkey"
                )
                assert read <= 100, f"a page of 100 read {read} rows of the campaign"
                assert len(await db.fetch(query, *args)) == 100
        finally:
            await db.close()


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan node and every node under it."""
    return [node, *(n for child in node.get("Plans", ()) for n in _plan_nodes(child))]


async def test_two_processes_adding_the_same_input_add_it_once(journal_url: str) -> None:
    async with smsvn.Journal(journal_url) as journal:
        await journal.campaign("twice")  # the tables exist before the two race
    command = [sys.executable, "-m", "tests.campaign.adder", journal_url, "twice", "30000"]
    processes = [
        await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [(await p.communicate())[0].decode().split() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    _, valid, invalid, repeats = campaign_input(30_000)
    added = [int(out[0]) for out in outputs]
    assert sum(added) == len(valid)  # between them, each input once
    async with smsvn.Journal(journal_url) as journal:
        counts = await (await journal.campaign("twice")).counts()
    assert counts == Counts(pending=len(valid), invalid=invalid, duplicate=repeats)


async def test_bad_content_or_input_is_refused_before_anything_is_added(journal_url: str) -> None:
    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("bad")
        for content in ("", 123, "a\x00b", "x" * 2001):
            with pytest.raises(errors.ValidationError):
                await campaign.add(["0912345678"], content=content)  # type: ignore[arg-type]
        with pytest.raises(errors.ValidationError, match="iterable"):
            await campaign.add("0912345678", content=CONTENT)
        with pytest.raises(errors.ValidationError, match="content="):
            await campaign.add(["0912345678"])
        assert (await campaign.counts()).total == 0
        with pytest.raises(errors.ValidationError):
            await journal.campaign("")
        with pytest.raises(errors.ValidationError, match="no campaign"):
            await journal.campaign("absent", create=False)


async def test_an_input_that_raises_keeps_what_it_gave(journal_url: str) -> None:
    def numbers() -> object:
        yield from (number(i) for i in range(25_000))
        raise OSError("the file went away")

    async with smsvn.Journal(journal_url) as journal:
        campaign = await journal.campaign("broken")
        with pytest.raises(OSError, match="went away"):
            await campaign.add(numbers(), content=CONTENT)  # type: ignore[arg-type]
        assert (await campaign.counts()).pending == 25_000
        again = await campaign.add((number(i) for i in range(30_000)), content=CONTENT)
        assert (again.already, again.added) == (25_000, 5_000)


# -- sending ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_run_sends_each_input_once_and_a_finished_campaign_nothing(
    provider: str, journal_url: str, sb: Sandbox
) -> None:
    inputs, valid, _, _ = campaign_input(300)
    async with smsvn.Journal(journal_url) as journal, sb.client(provider) as client:
        campaign = await journal.campaign("once")
        await campaign.add(inputs, content=CONTENT)
        report = await campaign.run(client, concurrency=8)
        assert report.accepted == report.taken == len(valid)
        assert not report.failed and not report.unknown and not report.skipped
        assert accepted(sb, provider) == Counter(valid)
        sent = [r async for r in campaign.recipients(state="sent")]
        assert {r.phone for r in sent} == valid
        assert all(r.provider == provider and r.attempts == 1 for r in sent)
        assert all(r.message_id for r in sent) == GIVES_AN_ID[provider]
        assert all(r.request_id for r in sent) == (provider == "esms")
        again = await campaign.run(client)
        assert again.taken == 0 and len(sb.outbox) == len(valid)
        assert (await campaign.counts()).sent == len(valid)


async def test_a_sqlite_runner_claims_a_few_hundred_numbers_at_a_time(
    journal_url: str, sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one writer: a batch's mark waits for a claim being written, so a run claims
    at most ``CLAIM_ROWS`` (400) numbers at once: four SpeedSMS batches, not one per slot.
    PostgreSQL claims as many batches as the run has slots. Every number goes once."""
    store = type(smsvn.Journal(journal_url)._store)
    claim = store.claim
    asked: list[int] = []

    async def counted(self: Any, *args: Any, batches: int, **kw: Any) -> Any:
        asked.append(batches)
        return await claim(self, *args, batches=batches, **kw)

    monkeypatch.setattr(store, "claim", counted)
    inputs, valid, _, _ = campaign_input(1_500)
    async with smsvn.Journal(journal_url) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("claims")
        await campaign.add(inputs, content=CONTENT)
        report = await campaign.run(client, concurrency=16)
    assert max(asked) == (4 if store_of(journal_url) == "sqlite" else 16)
    assert report.accepted == report.taken == len(valid)
    assert accepted(sb, "speedsms") == Counter(valid)


async def test_messages_each_get_their_own_text(journal_url: str, sb: Sandbox) -> None:
    messages = [Message(number(i), f"Ma OTP cua ban la {1000 + i}") for i in range(20)]
    messages.append(Message(number(0), "Ma OTP cua ban la 1000"))  # the same message again
    messages.append(Message(number(0), "Another text for the same number"))
    messages.append(Message("123", "bad number"))
    messages.append(Message(number(1), ""))  # bad text: invalid, with the reason
    async with smsvn.Journal(journal_url) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("otp")
        added = await campaign.add(messages)
        assert (added.added, added.duplicates, added.invalid) == (21, 1, 2)
        await campaign.run(client)
    texts = Counter((r.phone, r.content) for r in sb.outbox.for_provider("speedsms"))
    assert len(texts) == 21 and max(texts.values()) == 1
    assert (number(0), "Another text for the same number") in texts


async def test_what_provably_was_not_sent_goes_back_to_pending(
    journal_url: str, sb: Sandbox, closed_port: int
) -> None:
    inputs, valid, _, _ = campaign_input(40)
    down = sb.client("fibo", base_url=f"http://127.0.0.1:{closed_port}/fibo", retry=FAST)
    async with smsvn.Journal(journal_url) as journal, down, sb.client("fibo") as up:
        campaign = await journal.campaign("down")
        await campaign.add(inputs, content=CONTENT)
        report = await campaign.run(down, concurrency=4)
        # Nothing was sent: every batch is handed back, taken once, never looped on.
        assert report.accepted == 0 and len(report.skipped) == len(valid) == report.taken
        assert (await campaign.counts()).pending == len(valid)
        assert not accepted(sb, "fibo")
        report = await campaign.run(up)
        assert report.accepted == len(valid)
        assert accepted(sb, "fibo") == Counter(valid)


async def test_an_account_refusal_stops_the_run_and_loses_nothing(
    journal_url: str, sb: Sandbox
) -> None:
    inputs, valid, _, _ = campaign_input(500)
    sb.set_balance("speedsms", 0)
    async with smsvn.Journal(journal_url) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("broke")
        await campaign.add(inputs, content=CONTENT)
        report = await campaign.run(client, concurrency=2)
        assert isinstance(report.aborted, errors.InsufficientBalance)
        assert (await campaign.counts()).pending == len(valid)  # all of it, for later
        sb.set_balance("speedsms", 10**9)
        await campaign.run(client)
        assert accepted(sb, "speedsms") == Counter(valid)


async def test_a_failover_run_sends_what_the_first_provider_did_not(
    journal_url: str, sb: Sandbox
) -> None:
    inputs, valid, _, _ = campaign_input(300)
    # SpeedSMS drops one request in three before processing it (nothing sent: handed on) and
    # then runs out of money part way (the rest is handed on).
    sb.faults.add(Fault(kind="status_5xx", provider="speedsms", route="send", times=1))
    async with (
        smsvn.Journal(journal_url) as journal,
        smsvn.Failover(sb.client("speedsms"), sb.client("esms")) as both,
    ):
        campaign = await journal.campaign("failover")
        await campaign.add(inputs, content=CONTENT)
        sb.set_balance("speedsms", 250 * 100)  # one batch of 100
        report = await campaign.run(both, concurrency=1)
        assert [p.provider for p in report.parts] == ["speedsms", "esms"]
        speedsms, esms = accepted(sb, "speedsms"), accepted(sb, "esms")
        assert not set(speedsms) & set(esms)
        assert set(speedsms) | set(esms) <= valid
        counts = await campaign.counts()
        assert counts.sent == len(speedsms) + len(esms)
        assert counts.sent + counts.unknown == len(valid) and not counts.unsettled
        with pytest.raises(errors.ValidationError, match="defaults"):
            await campaign.run(both, sender="X")


async def test_unknown_is_never_resent_and_leaves_only_by_apply_or_resolve(
    journal_url: str, sb: Sandbox
) -> None:
    inputs, valid, _, _ = campaign_input(30)
    sb.faults.add(Fault(kind="drop_after", provider="fibo", route="send", times=5))
    async with smsvn.Journal(journal_url) as journal, sb.client("fibo", retry=FAST) as client:
        campaign = await journal.campaign("unknowns")
        await campaign.add(inputs, content=CONTENT)
        report = await campaign.run(client, concurrency=1)
        assert report.unknown_count == 5
        unknown = [r.phone async for r in campaign.recipients(state="unknown")]
        assert len(unknown) == 5 and set(unknown) <= set(accepted(sb, "fibo"))
        before = len(sb.outbox)
        await campaign.run(client)
        assert len(sb.outbox) == before  # never resent
        # A delivery report proves one sent; a person settles the others.
        report_ = DeliveryReport(
            provider="fibo",
            message_id="m-1",
            phone="84" + unknown[0][1:],
            state=DeliveryState.DELIVERED,
            raw_status="0",
        )
        assert await campaign.apply(report_)
        assert not await campaign.apply(report_)  # nothing left to settle for it
        assert await campaign.resolve("failed", phones=[unknown[1]], note="checked") == 1
        assert await campaign.resolve("pending", phones=unknown[2:3]) == 1
        with pytest.raises(errors.ValidationError):
            await campaign.resolve("maybe")  # type: ignore[arg-type]
        counts = await campaign.counts()
        assert (counts.unknown, counts.failed, counts.pending) == (2, 1, 1)
        await campaign.run(client)  # the one resolved as pending is sent (again)
        assert await campaign.resolve("sent") == 2
        final = await campaign.counts()
        assert (final.sent, final.failed, final.unknown) == (len(valid) - 1, 1, 0)


async def test_esms_resends_an_unknown_outcome_under_its_request_id(
    journal_url: str, sb: Sandbox
) -> None:
    inputs, valid, _, _ = campaign_input(10)
    # Every attempt of the first two sends is processed, and its answer lost.
    sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=6))
    async with smsvn.Journal(journal_url) as journal, sb.client("esms", retry=FAST) as client:
        campaign = await journal.campaign("resend")
        await campaign.add(inputs, content=CONTENT)
        report = await campaign.run(client, concurrency=1)
        assert len(report.skipped) == 2 and not report.unknown
        assert (await campaign.counts()).pending == 2  # resends, under their ids
        report = await campaign.run(client)
        assert report.accepted == 2
        assert accepted(sb, "esms") == Counter(valid)  # once each
        resent = [r async for r in campaign.recipients(state="sent") if r.attempts == 2]
        assert len(resent) == 2 and all(r.message_id is None for r in resent)  # "Request exist"


async def test_reconcile_settles_esms_unknowns_from_the_sent_list(
    journal_url: str, sb: Sandbox
) -> None:
    inputs, _, _, _ = campaign_input(10)
    sb.faults.add(Fault(kind="drop_after", provider="esms", route="send", times=3))
    async with smsvn.Journal(journal_url) as journal, sb.client("esms", retry=FAST) as client:
        campaign = await journal.campaign("reconcile")
        await campaign.add(inputs, content=CONTENT)
        await campaign.run(client, concurrency=1)
        # The resend window passes before anyone resends it: unknown.
        await expire_resends(journal_url)
        await campaign.run(client)
        unknown = [r async for r in campaign.recipients(state="unknown")]
        assert len(unknown) == 1 and unknown[0].request_id
        assert await campaign.reconcile(client) == 1
        sent = {r.phone: r for r in [r async for r in campaign.recipients(state="sent")]}
        ids = {r.phone: r.message_id for r in sb.outbox.for_provider("esms")}
        assert sent[unknown[0].phone].message_id == ids[unknown[0].phone]
    async with sb.client("speedsms") as speedsms:
        with pytest.raises(errors.ValidationError, match="apply"):
            await campaign.reconcile(speedsms)


async def test_cancelling_a_run_hands_back_what_never_left(journal_url: str, sb: Sandbox) -> None:
    inputs, valid, _, _ = campaign_input(400)
    sb.faults.add(Fault(kind="latency", provider="fibo", route="send", seconds=0.2))
    async with smsvn.Journal(journal_url) as journal, sb.client("fibo") as client:
        campaign = await journal.campaign("cancel")
        await campaign.add(inputs, content=CONTENT)
        run = asyncio.create_task(campaign.run(client, concurrency=16))
        while len(sb.outbox) < 40:  # noqa: ASYNC110 (the outbox has no event to wait on)
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        counts = await campaign.counts()
        assert counts.in_flight == 0
        assert counts.pending + counts.sent + counts.unknown == len(valid)
        table = await rows(journal_url, "cancel")
        out = accepted(sb, "fibo")
        assert all(r.phone in out for r in table if r.state == State.SENT)
        assert not any(r.phone in out for r in table if r.state == State.PENDING)
        assert counts.unknown <= 16
        sb.faults.clear()
        await campaign.run(client)
        assert max(accepted(sb, "fibo").values()) == 1


# -- fencing ---------------------------------------------------------------------------------------


async def test_a_lapsed_claim_can_neither_send_nor_record(journal_url: str, sb: Sandbox) -> None:
    """Runner A's lease runs out (it was paused); B sweeps it and takes its work. A's marks and
    outcomes are refused: a batch held by two runners at once is sent (and recorded) once."""
    async with (
        smsvn.Journal(journal_url) as one,
        smsvn.Journal(journal_url) as other,
        sb.client("speedsms") as client,
    ):
        campaign = await one.campaign("fence")
        await campaign.add([number(i) for i in range(300)], content=CONTENT)
        ident = campaign._id
        a = Runner(one._store, ident, lease=30)
        b = Runner(other._store, ident, lease=30)
        await a.start()
        await b.start()
        source_a = Source(a, client, None, stage=0, fresh=True, options={})
        source_b = Source(b, client, None, stage=0, fresh=True, options={})
        source_a.prepare([CONTENT])
        source_b.prepare([CONTENT])
        first, second = await source_a.claim(2)
        assert await source_a.depart(first)
        # A is paused past its lease; B sweeps: A's batch in flight is unknown, and A's
        # reserved batch is free again.
        await _expire_runner(journal_url, a.id)
        await b.sweep()
        taken = await source_b.claim(3)
        assert second.numbers in [c.numbers for c in taken]
        assert first.numbers not in [c.numbers for c in taken]
        # A wakes: it may not send what it reserved, nor record what it sent.
        assert not await source_a.depart(second)
        result = await client.send(first.numbers, CONTENT)
        assert await source_a.settle(first, result, None) is None
        with pytest.raises(LeaseLost):
            await source_a.claim(1)
        for claim in taken:
            assert await source_b.depart(claim)
            result = await source_b.send(claim.numbers, CONTENT, None)
            assert await source_b.settle(claim, result, None) is Outcome.SENT
        await b.stop()
        await a.stop()
        states = Counter(State(r.state) for r in await rows(journal_url, "fence"))
        assert states[State.UNKNOWN] == 100 and states[State.SENT] == 200


async def _expire_runner(url: str, runner: int) -> None:
    update = "UPDATE smsvn_runners SET expires = 0 WHERE id = {}"
    if store_of(url) == "sqlite":
        with sqlite3.connect(url) as db:
            db.execute(update.format("?"), (runner,))
        return
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        await db.execute(update.format("$1"), runner)
    finally:
        await db.close()


# -- the journal itself ----------------------------------------------------------------------------


def test_journal_urls(tmp_path: Path) -> None:
    assert smsvn.Journal(str(tmp_path / "a.db"))._store.path == str(tmp_path / "a.db")  # type: ignore[attr-defined]
    assert smsvn.Journal("sqlite:///rel.db")._store.path == "rel.db"  # type: ignore[attr-defined]
    assert smsvn.Journal("sqlite:////abs/x.db")._store.path == "/abs/x.db"  # type: ignore[attr-defined]
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://host/db", "", 5):
        with pytest.raises(errors.ValidationError):
            smsvn.Journal(bad)  # type: ignore[arg-type]
    pg = smsvn.Journal("postgresql://app:s3cret-SENTINEL@db.internal:5432/sms")
    assert "SENTINEL" not in repr(pg) and "***" in repr(pg)


PASSWORDS = [
    "postgresql://u:S3cretPW@h/db",
    "postgresql://u@h/db?password=S3cretPW",
    "postgresql:///db?host=/tmp&user=u&password=S3cretPW",
    "postgresql://u@h/db?sslpassword=S3cretPW",
    "postgresql://u@h/db?passfile=/x&password=S3cretPW",
    "postgresql://u@h/db?PASSWORD=S3cretPW&sslmode=require",
    "postgresql://u@h/db?pass%77ord=S3cretPW",
    "postgresql://u@h/db?password=a@S3cretPW",
    "postgresql://u@h/db#password=S3cretPW",
    "postgresql://u:S3cretPW@h1:5432,h2:5432/db",
    "postgresql://u%3AS3cretPW@h/db",
    "postgresql://\tu:S3cretPW@h/db",
    "postgresql://root:Sl4sh/S3cretPW@host/db",
    "postgresql://root:Qu3ry?S3cretPW@host/db",
    "postgresql://root:H4sh#S3cretPW@host/db",
    "postgresql://root:S3cretPW:x@host/db",
    "host=h user=u password=S3cretPW dbname=db",
    "host=h password='S3cretPW with spaces' dbname=db",
    "host=h PASSWORD = S3cretPW",
    "sqlite:///x.db?password=S3cretPW",
]


@pytest.mark.parametrize("url", PASSWORDS)
def test_a_password_in_any_form_is_masked_and_found(url: str) -> None:
    """``redact_url`` (reprs, logs, errors) and ``has_password`` (what a task refuses) are one
    function: whatever one masks, the other finds."""
    shown = redact_url(url)
    assert "S3cretPW" not in shown and "***" in shown
    assert has_password(url)
    if is_keyword_dsn(url):  # a key=value string: refused, never quoted
        with pytest.raises(errors.ValidationError, match="key=value") as raised:
            smsvn.Journal(url)
        assert "S3cretPW" not in str(raised.value)
    else:
        assert "S3cretPW" not in repr(smsvn.Journal(url))


def test_what_carries_no_password_is_shown_as_is() -> None:
    for url in (
        "postgresql://u@h/db",
        "postgresql://u:@h/db",
        "postgresql://u@h/db?passfile=/etc/sms.pgpass&sslmode=require",
        "postgresql:///db?host=/var/run/postgresql",
        "campaigns.db",
        "sqlite:///rel.db",
        "host=h password='' dbname=db",
    ):
        assert redact_url(url) == url and not has_password(url)


def test_a_key_value_string_is_not_taken_for_a_sqlite_file() -> None:
    for dsn in ("host=db dbname=sms", "dbname=sms", " host = db"):
        with pytest.raises(errors.ValidationError, match="key=value"):
            smsvn.Journal(dsn)
    assert smsvn.Journal("./host=db.db")._store.path == "./host=db.db"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://root:Sl4sh/S3cretPW@127.0.0.1:5432/test",
        "postgresql://root:Qu3ry?S3cretPW@127.0.0.1:5432/test",
        "postgresql://u:S3cretPW@127.0.0.1:notaport/test",
        "postgresql://u:S3cretPW@127.0.0.1:5432/test?sslmode=S3cretPW",
        "postgresql://u:S3cretPW@127.0.0.1:5432/test?password",
    ],
)
async def test_a_malformed_postgres_url_is_refused_without_quoting_it(url: str) -> None:
    """asyncpg's parse errors quote pieces of the URL: the journal raises its own
    ValidationError, with nothing chained (no connection is attempted)."""
    pytest.importorskip("asyncpg")
    with pytest.raises(errors.ValidationError, match="malformed") as raised:
        async with smsvn.Journal(url):
            pass
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert "S3cretPW" not in str(raised.value) and "Sl4sh" not in str(raised.value)


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no directory"):
        async with smsvn.Journal(str(tmp_path / "absent" / "x.db")):
            pass


async def test_import_smsvn_loads_no_database_driver() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, smsvn; print('asyncpg' in sys.modules, 'sqlite3' in sys.modules)",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert out.decode().split() == ["False", "False"]


async def test_secrets_never_reach_the_journal(journal_url: str, sb: Sandbox) -> None:
    async with (
        smsvn.Journal(journal_url) as journal,
        sb.client("esms", api_key="key-SENTINEL-1", secret_key="sec-SENTINEL-2") as client,
    ):
        campaign = await journal.campaign("secrets")
        await campaign.add([number(i) for i in range(5)], content=CONTENT)
        report = await campaign.run(client)
        assert isinstance(report.aborted, errors.AuthenticationError)
        reasons = [r.error or "" async for r in campaign.recipients()]
        assert any("login failed" in r for r in reasons)
        assert not any("SENTINEL" in r for r in reasons)
    if store_of(journal_url) == "sqlite":
        for path in Path(journal_url).parent.glob("campaigns.db*"):
            assert b"SENTINEL" not in path.read_bytes()


async def test_a_runner_holds_its_claims_only_while_it_renews(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "lease.db"))
    await store.open()
    try:
        ident = await store.campaign("lease", True)
        assert ident is not None
        runner = Runner(store, ident, lease=0.5)
        await runner.start()
        started = time.monotonic()
        await asyncio.sleep(1.0)  # renewed every 0.125 s meanwhile
        assert await runner.holds() and runner.lost is None
        assert [r.id for r in await store.runners(ident) if not r.expired] == [runner.id]
        await runner.stop()
        assert await store.runners(ident) == []
        assert time.monotonic() - started < 5
    finally:
        await store.close()


# -- stopping with a reservation under way -------------------------------------------------------


async def test_a_reservation_cut_short_hands_back_what_it_reserved(
    journal_url: str, sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that stops cancels its reservation under way; the transaction goes on in the
    store, and what it reserves goes back to pending at once (not held by this runner until
    it stops, where the next Failover provider of the same runner could not take it)."""
    async with smsvn.Journal(journal_url) as journal, sb.client("speedsms") as client:
        campaign = await journal.campaign("cut")
        await campaign.add([number(i) for i in range(500)], content=CONTENT)
        store = campaign._store
        reserve = type(store).claim
        started = asyncio.Event()

        async def slow_reserve(self: Any, *args: Any, **kwargs: Any) -> Any:
            # The transaction runs on whatever becomes of its caller (SQLite's thread, a query
            # already at the server), and its answer comes late: a busy journal.
            transaction = asyncio.ensure_future(reserve(self, *args, **kwargs))
            started.set()
            await asyncio.sleep(0.1)
            return await transaction

        monkeypatch.setattr(type(store), "claim", slow_reserve)
        runner = Runner(store, campaign._id, lease=30)
        await runner.start()
        source = Source(runner, client, None, stage=0, fresh=True, options={})
        source.prepare([CONTENT])
        claiming = asyncio.ensure_future(source.claim(3))
        await started.wait()
        claiming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claiming
        held = [r for r in await rows(journal_url, "cut") if r.owner == runner.id]
        assert held == []
        again = await source.claim(3)  # the same runner (a next stage) takes them now
        assert [c.numbers[0] for c in again] == [number(0), number(100), number(200)]
        await source.release(again)
        await runner.stop()
        assert await campaign.counts() == Counts(pending=500)


async def test_a_source_whose_runner_lost_its_lease_is_closed(
    journal_url: str, sb: Sandbox
) -> None:
    """Batches marked ahead of a slot are handed back, not sent, once the runner knows its lease
    is lost (``Source.closed``), as they are past ``claim_for``."""
    async with smsvn.Journal(journal_url) as journal, sb.client("esms") as client:
        campaign = await journal.campaign("lost")
        runner = Runner(campaign._store, campaign._id, lease=30)
        source = Source(runner, client, None, stage=0, fresh=True, options={})
        assert not source.closed()
        runner.lost = LeaseLost("taken over")
        assert source.closed()
