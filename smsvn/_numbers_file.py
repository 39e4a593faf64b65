"""The numbers file of ``smsvn bulk`` and ``smsvn campaign run``: its encoding, delimiter,
header and phone column found before anything is sent, then the numbers streamed a row at a time.

People export these files from Excel and CRMs: UTF-8 with or without a BOM, Excel's "Unicode
Text" (UTF-16, with or without a BOM), semicolon-separated where the comma is the decimal mark,
a header row (``phone``, ``SĐT``, ``so_dien_thoai``). The layout is sniffed from the first
``_SNIFF_BYTES``; a file on disk is then decoded once through, in chunks, so that a byte of
another encoding (one cp1258 byte at row 3,001) is refused with its line number before the
first message leaves. Standard input cannot be read twice: a bad byte there stops the reading
at its line, the run ends with its summary, and ``error`` says where. Memory stays bounded by
the chunk size whatever the file's length.
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Final

from smsvn import phone
from smsvn.errors import ValidationError

__all__ = ["BadRow", "Layout", "NumbersFile", "NumbersFileError", "open_numbers"]

_SNIFF_BYTES: Final = 64 * 1024
"""Bytes read to decide the encoding, delimiter, header and column."""
_SNIFF_ROWS: Final = 200
"""Rows of the sample the layout is decided on."""
_CHUNK: Final = 1 << 20
"""Bytes decoded at a time: the reader's memory, whatever the file's length."""
_LONGEST_LINE: Final = 1 << 20
"""Characters one line may hold: longer, it is not a numbers file (and memory stays bounded)."""
_DELIMITERS: Final = (",", ";", "\t", "|")
_DELIMITER_NAMES: Final = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_KEPT: Final = 10
"""Bad rows kept to be shown by line number (all of them are counted)."""
_PHONE_LIKE: Final = re.compile(r"\+?[\d\s().\-]+")
_Decode = Callable[[bytes, str, bool], tuple[str, int]]
_DECODERS: Final[dict[str, _Decode]] = {
    "utf-8": codecs.utf_8_decode,
    "utf-16-le": codecs.utf_16_le_decode,
    "utf-16-be": codecs.utf_16_be_decode,
}
_LABELS: Final = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE"}


class NumbersFileError(ValueError):
    """A numbers file the command cannot read (an encoding it does not know, a bad byte, an
    unknown ``--column``): a usage error, refused with this message, which names the line."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row whose number is missing or not a Vietnamese mobile number, by its line number."""

    line: int
    value: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """What the sniffing decided: how the file is encoded and split, and where the numbers are."""

    encoding: str
    """The codec: ``utf-8``, ``utf-16-le`` or ``utf-16-be`` (a BOM is skipped)."""
    bom: bool
    delimiter: str | None
    """None: one column (no delimiter splits the rows alike)."""
    columns: int
    column: int
    """The numbers' column, 0-based."""
    header: tuple[str, ...] | None
    """The header row's cells, or None when the first row holds data."""

    def describe(self) -> str:
        """One line saying how the file was read, so a wrong guess shows before sending."""
        words = [_LABELS[self.encoding] + (" with BOM" if self.bom else "")]
        if self.delimiter is None:
            words.append("one column")
        else:
            words.append(f"{_DELIMITER_NAMES[self.delimiter]}-separated, {self.columns} columns")
        words.append("a header row" if self.header is not None else "no header row")
        where = f"numbers from column {self.column + 1}"
        if self.header is not None and self.column < len(self.header):
            where += f" ({self.header[self.column]!r})"
        return ", ".join(words) + "; " + where


class NumbersFile:
    """The numbers of a sniffed file or stream, one per data row, as a ``send_bulk`` input.

    Rows without a number, or whose number is not a Vietnamese mobile number, are counted by
    line in ``bad_rows`` (the invalid ones still go to the engine, which accounts for them as
    invalid as it does any input); blank lines and lines starting with ``#`` are skipped. A
    decoding error met while streaming (standard input) ends the iteration and sets
    ``error``: the caller prints its summary, then the error.
    """

    def __init__(
        self, name: str, stream: IO[bytes], layout: Layout, head: bytes, *, owned: bool
    ) -> None:
        self.name = name
        self._owned = owned
        self.layout = layout
        self.error: NumbersFileError | None = None
        self.bad_rows: list[BadRow] = []
        self.bad_count = 0
        self.line = 0
        """The line number of the row last read."""
        self._stream = stream
        self._head = head

    def close(self) -> None:
        """Close the file (standard input is left open)."""
        if self._owned:
            self._stream.close()

    def __enter__(self) -> NumbersFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        """``name: encoding, delimiter, header; numbers from column N ('SĐT')``."""
        return f"{self.name}: {self.layout.describe()}"

    def __iter__(self) -> Iterator[str]:
        """The number cell of each data row, as written (the engine normalises it)."""
        layout = self.layout
        delimiter, column = layout.delimiter, layout.column
        lines = self._lines()
        rows: Iterator[list[str]] = (
            csv.reader(lines, delimiter=delimiter)
            if delimiter is not None
            else ([line.rstrip("\r\n")] for line in lines)
        )
        header = layout.header is not None
        try:
            for row in rows:
                if not row or row[0].lstrip().startswith("#") or not any(c.strip() for c in row):
                    continue  # blank lines and comments, before the header too
                if header:  # the first row, sniffed as the header
                    header = False
                    continue
                cell = row[column].strip().strip('"').strip() if column < len(row) else ""
                if not cell:
                    self._bad(cell, f"no number in column {column + 1}")
                    continue
                try:
                    phone.normalize(cell)
                except ValidationError as exc:
                    self._bad(cell, exc.message)
                yield cell
        except NumbersFileError as exc:
            self.error = exc
        except csv.Error as exc:
            self.error = NumbersFileError(f"{self.name}: line {self.line}: {exc}")

    def _lines(self) -> Iterator[str]:
        """The decoded lines, each with its line ending, counted in ``line``."""
        hint = "the rows before it were read"
        for line in _decoded_lines(self._chunks(), self.layout.encoding, self.name, hint):
            self.line += 1
            yield line

    def _bad(self, value: str, reason: str) -> None:
        """Count a row without a valid number; keep the first few to be shown."""
        self.bad_count += 1
        if len(self.bad_rows) < _KEPT:
            self.bad_rows.append(BadRow(self.line, value, reason))

    def _chunks(self) -> Iterator[bytes]:
        """The bytes after the BOM: the sniffed head, then the rest of the stream."""
        skip = _bom_length(self._head) if self.layout.bom else 0
        yield self._head[skip:]
        while chunk := self._stream.read(_CHUNK):
            yield chunk

    def problems(self) -> list[str]:
        """Lines to print after the run: the rows without a valid number, by line number (the
        first ``_KEPT``, then how many more)."""
        lines: list[str] = []
        if self.bad_count:
            shown = ", ".join(f"line {r.line} {r.value!r} ({r.reason})" for r in self.bad_rows)
            more = self.bad_count - len(self.bad_rows)
            lines.append(
                f"{self.name}: {self.bad_count:,} row{'s' if self.bad_count != 1 else ''} "
                f"without a valid number: {shown}" + (f", and {more:,} more" if more else "")
            )
        return lines


def open_numbers(
    path: str | None, column: str | None, stdin: IO[bytes], opener: Callable[[str], IO[bytes]]
) -> NumbersFile:
    """The numbers file ``path`` (opened with ``opener``), or ``stdin`` when None, with its
    layout sniffed and, for a file, every byte decoded once before it is returned; raises
    ``NumbersFileError`` naming the line of what cannot be read, before anything is sent."""
    if path is None:
        name, stream = "stdin", stdin
    else:
        name, stream = path, opener(path)
    try:
        head = _read_head(stream)
        encoding, bom = _encoding(head, name)
        text = _sample_text(head, encoding, bom)
        layout = _layout(text, encoding, bom, column, name)
        if path is not None:
            _check_decodes(opener(path), encoding, bom, name)
    except BaseException:
        if path is not None:
            stream.close()
        raise
    return NumbersFile(name, stream, layout, head, owned=path is not None)


def _read_head(stream: IO[bytes]) -> bytes:
    """Up to ``_SNIFF_BYTES`` from the start (a pipe may give less a read: read on)."""
    head = b""
    while len(head) < _SNIFF_BYTES:
        more = stream.read(_SNIFF_BYTES - len(head))
        if not more:
            break
        head += more
    return head


def _bom_length(head: bytes) -> int:
    """Bytes of the BOM ``head`` starts with (0 when none)."""
    if head.startswith(codecs.BOM_UTF8):
        return 3
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return 2
    return 0


def _encoding(head: bytes, name: str) -> tuple[str, bool]:
    """The codec of a file starting with ``head`` and whether it starts with a BOM: the BOM's,
    else UTF-16 when NUL bytes fill every other byte (Excel's "Unicode Text"), else UTF-8.
    An Excel workbook or a UTF-32 file is refused."""
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise NumbersFileError(
            f"{name}: this is an Excel workbook, not a text file; save it as "
            '"CSV UTF-8" or "Unicode Text" and give that file'
        )
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise NumbersFileError(f"{name}: UTF-32 is not supported; save it as UTF-8 or UTF-16")
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", True
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", True
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", True
    sample = head[: len(head) - len(head) % 2]
    pairs = len(sample) // 2
    if pairs:
        even = sample[0::2].count(0)
        odd = sample[1::2].count(0)
        if odd >= pairs * 0.3 and even <= pairs * 0.05:
            return "utf-16-le", False
        if even >= pairs * 0.3 and odd <= pairs * 0.05:
            return "utf-16-be", False
    return "utf-8", False


def _sample_text(head: bytes, encoding: str, bom: bool) -> str:
    """The head decoded, cut at its last whole line when the file goes on (bad bytes replaced:
    the full decode reports them with their line)."""
    data = head[_bom_length(head) if bom else 0 :]
    text, _ = _DECODERS[encoding](data, "replace", False)
    if len(head) >= _SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text


def _looks_like_phone(cell: str) -> bool:
    """Whether ``cell`` is shaped like a phone number: digits (8 to 15) with the usual
    separators and an optional leading ``+``; not whether it is a valid one."""
    cell = cell.strip().strip('"')
    if not _PHONE_LIKE.fullmatch(cell):
        return False
    digits = sum(c.isdigit() for c in cell)
    return 8 <= digits <= 15


def _rows(lines: list[str], delimiter: str | None) -> list[list[str]]:
    """The sample's lines split by ``delimiter`` (none: one cell each); [] if csv refuses."""
    if delimiter is None:
        return [[line] for line in lines]
    try:
        return list(csv.reader(lines, delimiter=delimiter))
    except csv.Error:
        return []


def _delimiter(lines: list[str]) -> str | None:
    """The delimiter that splits the sample's rows alike into two columns or more, a column of
    phone-shaped cells winning a tie; None when none does (one column). ``csv.Sniffer`` is not
    used: on a one-column file of numbers it picks a digit or a space as the delimiter."""
    best: tuple[bool, float, int] | None = None
    chosen: str | None = None
    for delimiter in _DELIMITERS:
        rows = _rows(lines, delimiter)
        if not rows:
            continue
        widths = [len(row) for row in rows]
        common = max(set(widths), key=widths.count)
        share = widths.count(common) / len(widths)
        if common < 2 or share < 0.8:
            continue
        phones = any(_phone_share(rows[1:] or rows, i) >= 0.5 for i in range(common))
        score = (phones, share, -_DELIMITERS.index(delimiter))
        if best is None or score > best:
            best, chosen = score, delimiter
    return chosen


def _phone_share(rows: list[list[str]], column: int) -> float:
    """The share of ``rows`` whose cell in ``column`` is phone-shaped."""
    if not rows:
        return 0.0
    return sum(1 for row in rows if column < len(row) and _looks_like_phone(row[column])) / len(
        rows
    )


def _fold(name: str) -> str:
    """A header cell as ``--column`` matches it: NFC, case-folded, trimmed."""
    return unicodedata.normalize("NFC", name).strip().strip('"').casefold()


def _layout(text: str, encoding: str, bom: bool, wanted: str | None, name: str) -> Layout:
    """Delimiter, header and column of the sample ``text``; ``wanted`` is ``--column``."""
    lines = [
        line for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")
    ]
    lines = [line.rstrip("\r") for line in lines[:_SNIFF_ROWS]]
    delimiter = _delimiter(lines)
    rows = _rows(lines, delimiter) or [[line] for line in lines]
    columns = max((len(row) for row in rows), default=1)
    first = rows[0] if rows else []
    rest = rows[1:]
    by_name = False
    if wanted is not None and wanted.strip().isdigit():
        column = int(wanted) - 1
        if not 0 <= column < columns:
            raise NumbersFileError(
                f"--column {wanted}: {name} has {columns} column{'s' if columns != 1 else ''}"
            )
    elif wanted is not None:
        folded = [_fold(cell) for cell in first]
        if _fold(wanted) not in folded:
            cells = ", ".join(repr(cell.strip()) for cell in first) or "nothing"
            raise NumbersFileError(
                f"--column {wanted!r}: no such column; the first row holds {cells}"
            )
        column, by_name = folded.index(_fold(wanted)), True
    elif columns == 1:
        column = 0
    else:
        shares = [_phone_share(rest or rows, i) for i in range(columns)]
        column = shares.index(max(shares))
    header: tuple[str, ...] | None = None
    if first and (by_name or _is_header(first, rest, column)):
        header = tuple(cell.strip() for cell in first)
    return Layout(
        encoding=encoding,
        bom=bom,
        delimiter=delimiter,
        columns=columns,
        column=column,
        header=header,
    )


def _is_header(first: list[str], rest: list[list[str]], column: int) -> bool:
    """Whether the first row names the columns: its cell in ``column`` holds letters and is not
    phone-shaped while the rows after it mostly are (an invalid number is data, not a name)."""
    cell = first[column] if column < len(first) else ""
    if _looks_like_phone(cell) or not any(c.isalpha() for c in cell):
        return False
    return not rest or _phone_share(rest, column) >= 0.5


def _check_decodes(stream: IO[bytes], encoding: str, bom: bool, name: str) -> None:
    """Decode the whole file once, a chunk at a time; ``NumbersFileError`` naming the line of
    the first byte that is not ``encoding`` (or of a NUL character: not a text file)."""
    with stream:
        for _ in _decoded_text(_rest_chunks(stream, bom), encoding, name, "nothing was sent"):
            pass


def _rest_chunks(stream: IO[bytes], bom: bool) -> Iterator[bytes]:
    """``stream``'s chunks, the BOM left out."""
    first = stream.read(_CHUNK)
    yield first[_bom_length(first) if bom else 0 :]
    while chunk := stream.read(_CHUNK):
        yield chunk


def _decoded_text(
    chunks: Iterator[bytes], encoding: str, name: str, hint: str
) -> Iterator[tuple[str, int]]:
    """``(text, line)`` for each decoded chunk, ``line`` being the line its first character
    is on. A byte that does not decode, or a NUL character, raises ``NumbersFileError`` with
    its line number and ``hint`` (what became of the rows before it)."""
    decode = _DECODERS[encoding]
    line = 1
    rest = b""
    ended = False
    while not ended:
        chunk = next(chunks, b"")
        ended = not chunk
        data = rest + chunk
        try:
            text, used = decode(data, "strict", ended)
        except UnicodeDecodeError as exc:
            good, _ = decode(data[: exc.start], "strict", True)
            yield good, line  # the rows before the bad byte are read (from standard input)
            where = line + good.count("\n")
            bad = data[exc.start : exc.end].hex(" ")
            raise NumbersFileError(
                f"{name}: line {where}: byte{'s' if exc.end - exc.start > 1 else ''} {bad} "
                f"{'are' if exc.end - exc.start > 1 else 'is'} not {_LABELS[encoding]}; save "
                'the file as UTF-8 (Excel: "CSV UTF-8") or UTF-16 ("Unicode Text") and run '
                f"again ({hint})"
            ) from None
        if "\x00" in text:
            where = line + text[: text.index("\x00")].count("\n")
            raise NumbersFileError(
                f"{name}: line {where}: a NUL character: not a text file of numbers ({hint})"
            )
        rest = data[used:]
        yield text, line
        line += text.count("\n")


def _decoded_lines(chunks: Iterator[bytes], encoding: str, name: str, hint: str) -> Iterator[str]:
    """The lines of the decoded ``chunks``, each with its ``\\n``; a line longer than
    ``_LONGEST_LINE`` raises ``NumbersFileError`` (memory stays bounded)."""
    pending = ""
    for text, line in _decoded_text(chunks, encoding, name, hint):
        pending += text
        start = 0
        while (end := pending.find("\n", start)) >= 0:
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
        if len(pending) > _LONGEST_LINE:
            where = line + text.count("\n")
            raise NumbersFileError(
                f"{name}: line {where} is longer than {_LONGEST_LINE:,} characters: not a file "
                f"of numbers ({hint})"
            )
    if pending:
        yield pending
