"""The numbers file of ``smsvn bulk`` and ``smsvn campaign run``: encodings (UTF-8 with and
without a BOM, UTF-16 with and without one), a byte of another encoding refused by line before
anything is sent, delimiters, header rows and ``--column``; run through the command in this
process against the embedded simulator, and the sniffing itself as a property."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsvn._numbers_file import NumbersFileError, open_numbers
from smsvn.cli import main
from smsvn.sandbox import Fault, Sandbox
from tests.test_cli import smsvn

NUMBERS = [f"0912{i:06d}" for i in range(20)]


def run(argv: list[str]) -> int:
    """``smsvn ARGV`` in this process: the exit code, returned or raised."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def bulk(path: Path, *rest: str, provider: str = "speedsms") -> list[str]:
    return ["bulk", "--sandbox", "-p", provider, "-m", "Khuyen mai", "--no-progress",
            "-f", str(path), *rest]  # fmt: skip


def table(rows: list[list[str]], delimiter: str) -> str:
    return "".join(delimiter.join(row) + "\r\n" for row in rows)


# Excel's "Unicode Text" is UTF-16 LE, tab-separated, with a BOM; some exporters drop the BOM.
@pytest.mark.parametrize(
    ("encoding", "label"),
    [
        ("utf-16", "UTF-16 LE with BOM"),
        ("utf-16-le", "UTF-16 LE,"),
        ("utf-16-be", "UTF-16 BE,"),
        ("utf-8-sig", "UTF-8 with BOM"),
    ],
)
def test_encodings_are_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str, label: str
) -> None:
    rows = [["Họ tên", "SĐT"], *([f"Nguyễn Văn {i}", n] for i, n in enumerate(NUMBERS))]
    source = tmp_path / "numbers.txt"
    source.write_bytes(table(rows, "\t").encode(encoding))
    assert run(bulk(source)) == 0
    out = capsys.readouterr().out
    assert f"{source}: {label}" in out
    assert "tab-separated, 2 columns, a header row; numbers from column 2 ('SĐT')" in out
    assert "speedsms: 20 accepted, 0 invalid" in out


def test_a_byte_of_another_encoding_is_refused_by_line_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One cp1258 row at line 3,001 of a UTF-8 file: refused before the first message leaves.
    lines = [f"0912{i:06d},Khach {i}" for i in range(3000)]
    source = tmp_path / "numbers.csv"
    source.write_bytes("\n".join(lines).encode() + "\n0987654321,Lê Văn\n".encode("cp1258"))
    journal = tmp_path / "campaigns.db"
    assert run(bulk(source)) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"smsvn: error: {source}: line 3001: byte ea is not UTF-8;")
    assert "nothing was sent" in err
    assert "accepted" not in out and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    campaign = ["campaign", "run", "--journal", str(journal), "--name", "promo", "--sandbox",
                "-p", "esms", "-m", "Khuyen mai", "-f", str(source), "--no-progress"]  # fmt: skip
    assert run(campaign) == 2
    assert "line 3001" in capsys.readouterr().err
    assert (
        not journal.exists()
        or not sqlite3.connect(journal).execute("select name from sqlite_master").fetchall()
    )


def test_a_bad_byte_on_stdin_stops_the_run_with_its_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # stdin cannot be read twice: the rows before the bad byte are sent, then the summary.
    data = "\n".join(NUMBERS).encode() + b"\n09123\xfe45678\n0912999999\n"
    stdin = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr("sys.stdin", stdin)
    argv = ["bulk", "--sandbox", "-p", "fibo", "-m", "Khuyen mai", "--no-progress"]
    assert run(argv) == 2
    out, err = capsys.readouterr()
    assert "fibo: 20 accepted, 0 invalid" in out
    assert "stdin: line 21: byte fe is not UTF-8" in err and "reading stopped there" in err


@pytest.mark.parametrize(
    ("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe"), (",", "comma")]
)
def test_delimiters_and_the_phone_column_are_sniffed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], delimiter: str, name: str
) -> None:
    # The numbers are in the third column, written with spaces and a +84; no header.
    rows = [[f"KH{i}", "Hà Nội", f"+84 {n[1:4]} {n[4:7]} {n[7:]}"] for i, n in enumerate(NUMBERS)]
    source = tmp_path / "numbers.csv"
    source.write_text(table(rows, delimiter), encoding="utf-8")
    assert run(bulk(source)) == 0
    out = capsys.readouterr().out
    assert f"{name}-separated, 3 columns, no header row; numbers from column 3\n" in out
    assert "20 accepted, 0 invalid" in out


@pytest.mark.parametrize("header", ["phone", "SĐT", "so_dien_thoai", "Số điện thoại"])
def test_a_header_row_is_not_an_invalid_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join([header, *NUMBERS, "12345"]), encoding="utf-8")
    assert run(bulk(source)) == 0
    out = capsys.readouterr().out
    assert f"one column, a header row; numbers from column 1 ({header!r})" in out
    assert "20 accepted, 1 invalid" in out
    # The invalid row is named by its line: the header is line 1, "12345" line 22.
    assert re.search(
        r"1 row without a valid number \(counted as invalid\): line 22 '12345' \(", out
    )


def test_column_by_name_or_index_and_an_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["ma_kh", "dien_thoai", "dien_thoai_phu"]]
    rows += [[f"KH{i}", n, "0987654321"] for i, n in enumerate(NUMBERS)]
    source = tmp_path / "numbers.csv"
    source.write_text(table(rows, ";"), encoding="utf-8")
    assert run(bulk(source, "--column", "Dien_Thoai_Phu")) == 0
    out = capsys.readouterr().out
    assert "numbers from column 3 ('dien_thoai_phu')" in out
    assert "1 accepted, 0 invalid, 19 duplicates" in out
    assert run(bulk(source, "--column", "2")) == 0
    out = capsys.readouterr().out
    assert "a header row; numbers from column 2 ('dien_thoai')" in out
    assert "20 accepted, 0 invalid" in out
    assert run(bulk(source, "--column", "sdt")) == 2
    err = capsys.readouterr().err
    assert err == (
        "smsvn: error: --column 'sdt': no such column; the first row holds 'ma_kh', "
        "'dien_thoai', 'dien_thoai_phu'\n"
    )
    assert run(bulk(source, "--column", "4")) == 2
    assert capsys.readouterr().err == f"smsvn: error: --column 4: {source} has 3 columns\n"


def test_rows_without_a_number_are_named_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["phone", "name"], [NUMBERS[0], "A"], ["", "B"], ["not a number", "C"]]
    rows += [[n, "D"] for n in NUMBERS[1:]]
    source = tmp_path / "numbers.csv"
    source.write_text(table(rows, ","), encoding="utf-8")
    assert run(bulk(source)) == 0
    out = capsys.readouterr().out
    # Every data row reaches the engine: the summary's invalid count is the rows listed.
    assert "20 accepted, 2 invalid" in out
    assert (
        "2 rows without a valid number (counted as invalid): line 3 '' (no number in column 1), "
        "line 4 " in out
    )


def test_an_excel_workbook_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.xlsx"
    source.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    assert run(bulk(source)) == 2
    assert "an Excel workbook" in capsys.readouterr().err


# -- the sniffing, as a property ----------------------------------------------------------------

_WORDS = st.text(alphabet="abcdeđêôơưĐÊ xyz", min_size=1, max_size=12).filter(str.strip)
_PHONES = st.builds(
    lambda prefix, rest: prefix + f"{rest:07d}",
    st.sampled_from(["091", "098", "086", "032", "070"]),
    st.integers(0, 9_999_999),
)
_HEADERS = st.sampled_from(["phone", "SĐT", "so_dien_thoai", "Số điện thoại", "mobile"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    columns=st.integers(1, 4),
    data=st.data(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    header=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"]),
)
def test_sniffing_finds_delimiter_header_and_column(
    columns: int, data: st.DataObject, delimiter: str, header: bool, encoding: str
) -> None:
    at = data.draw(st.integers(0, columns - 1), label="phone column")
    phones = data.draw(st.lists(_PHONES, min_size=1, max_size=30), label="phones")
    rows = [[phone if i == at else data.draw(_WORDS) for i in range(columns)] for phone in phones]
    if header:
        names = [data.draw(_HEADERS) if i == at else data.draw(_WORDS) for i in range(columns)]
        rows.insert(0, names)
    raw = table(rows, delimiter).encode(encoding)
    source = open_numbers(None, None, io.BytesIO(raw), opener=_open_binary)
    assert source.layout.delimiter == (delimiter if columns > 1 else None)
    assert source.layout.column == at
    assert (source.layout.header is not None) == header
    assert list(source) == phones
    assert source.error is None and source.bad_count == 0


def _open_binary(path: str) -> io.BufferedReader:
    return Path(path).open("rb")


def test_a_file_is_decoded_in_chunks_and_the_bad_line_found_late(tmp_path: Path) -> None:
    # 300,000 rows (more than one decoding chunk), then a cp1258 byte: found, by its line.
    source = tmp_path / "big.txt"
    source.write_bytes(b"0912345678\n" * 300_000 + "Lê".encode("cp1258"))
    with pytest.raises(NumbersFileError, match=r"big.txt: line 300001: byte ea is not UTF-8"):
        open_numbers(str(source), None, io.BytesIO(), opener=_open_binary)


async def test_bulk_interrupted_still_prints_its_summary(tmp_path: Path) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("12345\n" + "\n".join(f"0912{i:06d}" for i in range(400)))
    outcomes = tmp_path / "outcomes.csv"
    async with Sandbox() as sb:
        sb.faults.add(Fault(kind="latency", provider="fibo", route="send", seconds=0.05))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSVN_")}
        env |= {"SMSVN_FIBO_CLIENT_NO": sb.fibo_client_no, "SMSVN_FIBO_CLIENT_PASS":
                sb.fibo_client_pass, "SMSVN_FIBO_SENDER": sb.fibo_sender}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsvn", "bulk", "-p", "fibo", "--base-url", sb.fibo_url,
            "-m", "Khuyen mai", "-f", str(source), "--no-progress", "--concurrency", "4",
            "--csv", str(outcomes),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        while len(sb.outbox) < 20:  # noqa: ASYNC110 (the outbox has no event to wait on)
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), timeout=60)
    out = out_bytes.decode()
    assert process.returncode == 130, err_bytes.decode()
    summary = re.search(r"fibo: stopped with (\d+) sent, 0 failed, (\d+) unknown", out)
    assert summary, out
    assert ", 1 invalid, 0 duplicates, " in out  # plural, as the report says it
    # What the reader found and where the outcomes are, even when interrupted.
    assert "1 row without a valid number (counted as invalid): line 1 '12345'" in out
    assert f"per-recipient outcomes so far: {outcomes}" in out
    sent, unknown = map(int, summary.groups())
    assert sent <= len(sb.outbox) <= sent + unknown < 400


# -- red-team findings: each a regression test --------------------------------------------------


def numbers_of(raw: bytes, column: str | None = None) -> tuple[list[str], object]:
    """The cells ``open_numbers`` yields for ``raw`` given on stdin, and the file."""
    source = open_numbers(None, column, io.BytesIO(raw), opener=_open_binary)
    return list(source), source


async def test_a_pipe_given_with_f_is_read_whole() -> None:
    # -f /dev/stdin (or -f <(cat numbers)): a pipe, opened once and streamed, past 64 KiB.
    numbers = NUMBERS * 400 + ["0987654321"]  # 88,011 bytes, the last number new
    argv = ["bulk", "--sandbox", "-p", "speedsms", "-m", "Khuyen mai", "--no-progress"]
    code, out, err = await smsvn(*argv, "-f", "/dev/stdin", stdin="\n".join(numbers))
    assert code == 0, err
    assert "speedsms: 21 accepted, 0 invalid, 7980 duplicates" in out


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_line_endings_of_mac_windows_and_unix(ending: str) -> None:
    rows = ["name,phone", *(f"Khach {i},{n}" for i, n in enumerate(NUMBERS)), "Z,12345"]
    cells, source = numbers_of(ending.join(rows).encode())
    assert cells == [*NUMBERS, "12345"]
    assert isinstance(source, type(open_numbers(None, None, io.BytesIO(), _open_binary)))
    assert [(r.line, r.value) for r in source.bad_rows] == [(22, "12345")]


def test_a_cr_split_between_two_chunks_ends_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks put "\r" and "\n" in different chunks: one line ending, not two.
    monkeypatch.setattr("smsvn._numbers_file._SNIFF_BYTES", 16)
    monkeypatch.setattr("smsvn._numbers_file._CHUNK", 7)
    raw = "".join(f"{n}\r\n" if i % 2 else f"{n}\r" for i, n in enumerate(NUMBERS)) + "123\r\n"
    cells, source = numbers_of(raw.encode())
    assert cells == [*NUMBERS, "123"]
    assert [r.line for r in source.bad_rows] == [21]  # type: ignore[attr-defined]


def test_hash_is_a_comment_only_in_a_one_column_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An order id "#1001" in the first cell is data: its number is sent.
    cells, _ = numbers_of(b"order,phone\n#1001,0912345678\n#1002,0987654321\n")
    assert cells == ["0912345678", "0987654321"]
    # One column: "#" lines are comments, skipped, and said so with their lines.
    source = tmp_path / "numbers.txt"
    source.write_text("# exported 2026-11-30\n0912345678\n#0987654321\n0903123456\n")
    assert run(bulk(source)) == 0
    out = capsys.readouterr().out
    assert "2 accepted, 0 invalid" in out
    assert "2 lines starting with # skipped as comments: lines 1, 3" in out


def test_csv_naming_the_numbers_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("\n".join(NUMBERS) + "\n")
    link = tmp_path / "link.txt"
    link.symlink_to(source)
    assert run(bulk(source, "--csv", str(link))) == 2
    assert "is the numbers file" in capsys.readouterr().err
    assert source.read_text() == "\n".join(NUMBERS) + "\n"


def test_a_too_long_line_is_refused_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "numbers.txt"
    source.write_text("0912345678\n" * 1000 + "9" * (1 << 20) + "1\n0912345679\n")
    assert run(bulk(source)) == 2
    out, err = capsys.readouterr()
    assert f"{source}: line 1001: longer than 1,048,576 characters" in err
    assert "nothing was sent" in err and "accepted" not in out


@pytest.mark.parametrize("at", [3, 502])
def test_a_stray_quote_is_refused_at_its_line_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], at: int
) -> None:
    rows = ["name,phone", *(f"Khach {i},09{i:08d}" for i in range(2, 1000))]
    rows[at - 1] = '"Chi Lan,0987654321'
    source = tmp_path / "numbers.csv"
    source.write_text("\n".join(rows) + "\n")
    assert run(bulk(source)) == 2
    out, err = capsys.readouterr()
    assert f'{source}: line {at}: a quote (") opens a field here that is still open' in err
    assert "nothing was sent" in err and "accepted" not in out


def test_a_stray_quote_on_the_last_record_and_multiline_fields() -> None:
    ok = b'name,address,phone\nAn,"1 Le Loi\nQuan 1",0912345678\nBinh,"x ""y""",0987654321\n'
    assert numbers_of(ok)[0] == ["0912345678", "0987654321"]
    with pytest.raises(NumbersFileError, match=r"line 3: a quote .* never closed"):
        open_numbers_check(b'name,phone\nAn,0912345678\n"Binh,0987654321\nC,0903123456\n')


def open_numbers_check(raw: bytes) -> None:
    """``open_numbers`` of ``raw`` as a file on disk: the pre-check runs."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".csv") as handle:
        handle.write(raw)
        handle.flush()
        open_numbers(handle.name, None, io.BytesIO(), _open_binary).close()


def test_closed_stdin_and_odd_column_flags_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", None)
    assert run(["bulk", "--sandbox", "-m", "hi", "--no-progress"]) == 2
    assert "standard input is closed" in capsys.readouterr().err
    source = tmp_path / "numbers.csv"
    source.write_text("name,phone\nAn,0912345678\n")
    for flag in ["²", "①"]:
        assert run(bulk(source, "--column", flag)) == 2
        assert f"--column {flag!r}: no such column" in capsys.readouterr().err
    assert run(bulk(source, "--column", "-1")) == 2
    assert "columns are numbered from 1" in capsys.readouterr().err


def test_excel_sep_line_names_the_delimiter() -> None:
    for ending in ["\n", "\r\n"]:
        raw = ending.join(["sep=;", "name;phone", "An;0912345678", "Binh;0987654321"]).encode()
        cells, source = numbers_of(raw)
        assert cells == ["0912345678", "0987654321"]
        assert "semicolon-separated (Excel's sep= line), 2 columns, a header row (line 2)" in (
            source.describe()  # type: ignore[attr-defined]
        )


def test_the_column_of_mobile_numbers_wins_and_two_are_ambiguous() -> None:
    cells, _ = numbers_of(b"home,mobile\n0241234567,0912345678\n0283456789,0987654321\n")
    assert cells == ["0912345678", "0987654321"]
    raw = b"a,b\n0912345678,0987654321\n0903123456,0904123456\n"
    with pytest.raises(NumbersFileError, match=r"columns 1 \('a'\) and 2 \('b'\) all hold mobile"):
        numbers_of(raw)
    assert numbers_of(raw, "2")[0] == ["0987654321", "0904123456"]


def test_a_mistyped_first_number_is_data_and_a_title_is_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cells, source = numbers_of(b"O912345678\n0987654321\n0903123456\n")
    assert cells == ["O912345678", "0987654321", "0903123456"]
    assert [(r.line, r.value) for r in source.bad_rows] == [(1, "O912345678")]  # type: ignore[attr-defined]
    cells, source = numbers_of(b"Danh sach khach hang\nTen,SDT\nAn,0912345678\nB,0987654321\n")
    assert cells == ["0912345678", "0987654321"]
    assert "line 1 skipped as a title ('Danh sach khach hang'), a header row (line 2)" in (
        source.describe()  # type: ignore[attr-defined]
    )


def test_a_nul_on_stdin_keeps_the_rows_before_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "\n".join(NUMBERS).encode() + b"\n0912\x00345678\n0912999999\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert run(["bulk", "--sandbox", "-p", "fibo", "-m", "Khuyen mai", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert "fibo: 20 accepted, 0 invalid" in out
    assert "stdin: line 21: a NUL character" in err and "the rows before it were read" in err


def test_column_names_fold_diacritics_and_duplicates_are_ambiguous() -> None:
    raw = "Tên,SĐT\nAn,0912345678\n".encode()
    assert numbers_of(raw, "sdt")[0] == ["0912345678"]
    assert numbers_of(raw, "ten")[0] == ["An"]
    with pytest.raises(NumbersFileError, match="columns 1, 2 are all called that"):
        numbers_of(b"phone,phone\n0912345678,abc\n", "phone")


def test_excel_forms_of_a_number_get_a_hint_and_compressed_files_are_named(
    tmp_path: Path,
) -> None:
    cells, source = numbers_of(b"name,phone\nA,8.49123E+10\nB,'0912345678\n")
    assert cells == ["8.49123E+10", "0912345678"]
    (bad,) = source.bad_rows  # type: ignore[attr-defined]
    assert "formatted as a number in Excel; format it as Text" in bad.reason
    with pytest.raises(NumbersFileError, match=r"compressed \(gzip\)"):
        numbers_of(b"\x1f\x8b\x08\x00rest")


def test_an_empty_text_is_refused_before_the_file_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.txt"
    argv = ["bulk", "--sandbox", "-m", "", "-f", str(missing), "--no-progress"]
    assert run(argv) == 2
    assert "-m/--text is empty" in capsys.readouterr().err
