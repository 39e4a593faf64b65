"""The numbers file of ``smsvn bulk`` and ``smsvn campaign run``: its encoding, delimiter,
header and phone column found before anything is sent, then the numbers streamed a row at a time.

People export these files from Excel and CRMs: UTF-8 with or without a BOM, Excel's "Unicode
Text" (UTF-16, with or without a BOM), semicolon-separated where the comma is the decimal mark
(with Excel's ``sep=;`` first line, or without), a header row (``phone``, ``SĐT``,
``so_dien_thoai``), maybe a title line above it, line endings of Windows, Unix or the old Mac
("CSV (Macintosh)": ``\\r`` alone). The layout is sniffed from the first ``_SNIFF_BYTES``; a
file that can be read again (on disk) is then read once through, in chunks, by the very reader
that will stream it (same decoding, line length limit and CSV parsing), so that what it would
refuse (a cp1258 byte at row 3,001, a stray quote) is refused with its line number before the
first message leaves; then it is read again from the start. Standard input, or a pipe, cannot
be read twice: what cannot be read stops the reading at its line, the run ends with its summary,
and ``error`` says where. Memory stays bounded by the chunk size whatever the file's length.
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
_TOO_LONG: Final = f"longer than {_LONGEST_LINE:,} characters: not a file of numbers"
_RECORD_LINES: Final = 50
"""Lines one CSV record may span (a quoted field holding line breaks): more, and the quote
that opened it is taken for a stray one."""
_DELIMITERS: Final = (",", ";", "\t", "|")
_DELIMITER_NAMES: Final = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_KEPT: Final = 10
"""Bad rows (and comment lines) kept to be shown by line number (all of them are counted)."""
_TITLES: Final = 2
"""Title lines above a header row, at most, recognised as such."""
_PHONE_LIKE: Final = re.compile(r"\+?[\d\s().\-]+")
_DIGIT_RUN: Final = re.compile(r"[0-9]{6}")
"""Six digits in a row: a cell holding them is data (maybe a mistyped number), never a name."""
_EXCEL_NUMBER: Final = re.compile(r"[0-9](?:[.,][0-9]+)?[eE]\+[0-9]+")
_SEP_LINE: Final = re.compile(r"sep=(.)", re.IGNORECASE)
_Decode = Callable[[bytes, str, bool], tuple[str, int]]
_DECODERS: Final[dict[str, _Decode]] = {
    "utf-8": codecs.utf_8_decode,
    "utf-16-le": codecs.utf_16_le_decode,
    "utf-16-be": codecs.utf_16_be_decode,
}
_LABELS: Final = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE"}


class NumbersFileError(ValueError):
    """A numbers file the command cannot read (an encoding it does not know, a bad byte, a
    stray quote, an unknown ``--column``): a usage error, refused with this message, which
    names the line."""


class _Malformed(Exception):
    """What the reader refuses, at ``line``: made a ``NumbersFileError`` by its caller."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(what)
        self.line = line
        self.what = what


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row whose number is missing or not a Vietnamese mobile number, by its line number (the
    line its record starts on)."""

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
    sep_line: bool = False
    """Whether line 1 is Excel's ``sep=;`` (naming the delimiter: not data, not the header)."""
    titles: tuple[tuple[int, str], ...] = ()
    """Title lines above the header row, by line number: skipped, and said so."""
    data_from: int = 1
    """The first line that may hold data: the lines before it are the ``sep=`` line, the
    titles and the header."""

    def describe(self) -> str:
        """One line saying how the file was read, so a wrong guess shows before sending."""
        words = [_LABELS[self.encoding] + (" with BOM" if self.bom else "")]
        if self.delimiter is None:
            words.append("one column")
        else:
            name = _DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))
            sep = " (Excel's sep= line)" if self.sep_line else ""
            words.append(f"{name}-separated{sep}, {self.columns} columns")
        words += [f"line {n} skipped as a title ({text!r})" for n, text in self.titles]
        if self.header is None:
            words.append("no header row")
        else:
            on = f" (line {self.data_from - 1})" if self.data_from - 1 != 1 else ""
            words.append(f"a header row{on}")
        where = f"numbers from column {self.column + 1}"
        if self.header is not None and self.column < len(self.header):
            where += f" ({self.header[self.column]!r})"
        return ", ".join(words) + "; " + where


class NumbersFile:
    """The numbers of a sniffed file or stream, one per data row, as a ``send_bulk`` input.

    Every data row reaches the engine, its number cell as written (an empty one too): the
    engine counts each invalid one as invalid, and ``bad_rows`` lists them by line (the first
    ``_KEPT``; ``bad_count`` counts them all), so that the summary's invalid count and this
    list agree. Not data, and not sent: blank lines, the ``sep=`` line, title lines and the
    header (said so by ``describe``), and, in a one-column file only, lines starting with
    ``#``, which are comments, counted in ``comment_count`` and listed by ``problems``. In a
    file of two columns or more, ``#`` means nothing (``#1001,0912345678`` is a row). What the
    reader cannot read (a bad byte, a stray quote) ends the iteration and sets ``error``: the
    caller prints its summary, then the error.
    """

    def __init__(
        self,
        name: str,
        stream: IO[bytes],
        layout: Layout,
        head: bytes,
        *,
        owned: bool,
        hint: str = "the rows before it were read",
    ) -> None:
        self.name = name
        self._owned = owned
        self.layout = layout
        self.error: NumbersFileError | None = None
        self.bad_rows: list[BadRow] = []
        self.bad_count = 0
        self.comment_lines: list[int] = []
        self.comment_count = 0
        self._stream = stream
        self._head = head
        self._hint = hint

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
        """The number cell of each data row (the engine normalises it); what cannot be read
        ends the iteration and sets ``error``."""
        try:
            yield from self._cells(validate=True)
        except NumbersFileError as exc:
            self.error = exc

    def check(self) -> None:
        """Read everything the way ``__iter__`` would, without validating the numbers:
        ``NumbersFileError`` naming the line of the first thing it cannot read."""
        for _ in self._cells(validate=False):
            pass

    def _cells(self, *, validate: bool) -> Iterator[str]:
        """The number cells of the data rows; ``NumbersFileError`` for what cannot be read."""
        layout = self.layout
        column, one_column = layout.column, layout.delimiter is None
        text = _decoded_text(self._chunks(), layout.encoding)
        records = _records(_lines(text), layout.delimiter, 1)
        try:
            for start, row in records:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line (or a row of empty cells)
                if one_column and row[0].lstrip().startswith("#"):
                    self._comment(start)
                    continue
                if start < layout.data_from:
                    continue  # the titles and the header (sniffed)
                cell = _cell(row, column, one_column)
                if validate:
                    self._validate(start, cell)
                yield cell
        except _Malformed as exc:
            message = f"{self.name}: line {exc.line}: {exc.what} ({self._hint})"
            raise NumbersFileError(message) from None

    def _validate(self, line: int, cell: str) -> None:
        """Count ``cell`` as bad (and keep the first few) when it is no valid mobile number."""
        try:
            phone.normalize(cell)
        except ValidationError as exc:
            if not cell:
                reason = f"no number in column {self.layout.column + 1}"
            elif _EXCEL_NUMBER.fullmatch(cell):
                reason = (
                    f"{exc.message}: the column was formatted as a number in Excel; format it "
                    "as Text and export again"
                )
            else:
                reason = exc.message
            self.bad_count += 1
            if len(self.bad_rows) < _KEPT:
                self.bad_rows.append(BadRow(line, cell, reason))

    def _comment(self, line: int) -> None:
        """Count a comment line; keep the first few line numbers."""
        self.comment_count += 1
        if len(self.comment_lines) < _KEPT:
            self.comment_lines.append(line)

    def _chunks(self) -> Iterator[bytes]:
        """The bytes after the BOM: the sniffed head, then the rest of the stream."""
        skip = _bom_length(self._head) if self.layout.bom else 0
        yield self._head[skip:]
        while chunk := self._stream.read(_CHUNK):
            yield chunk

    def problems(self) -> list[str]:
        """Lines to print after the run: the rows without a valid number, by line number (the
        first ``_KEPT``, then how many more), and the comment lines skipped."""
        lines: list[str] = []
        if self.bad_count:
            shown = ", ".join(
                f"line {r.line} {_short(r.value)} ({r.reason})" for r in self.bad_rows
            )
            more = self.bad_count - len(self.bad_rows)
            lines.append(
                f"{self.name}: {_plural(self.bad_count, 'row')} without a valid number "
                f"(counted as invalid): {shown}" + (f", and {more:,} more" if more else "")
            )
        if self.comment_count:
            shown = ", ".join(str(n) for n in self.comment_lines)
            more = self.comment_count - len(self.comment_lines)
            lines.append(
                f"{self.name}: {_plural(self.comment_count, 'line')} starting with # skipped "
                f"as comments: line{'s' if self.comment_count != 1 else ''} {shown}"
                + (f", and {more:,} more" if more else "")
            )
        return lines


def _short(value: str) -> str:
    """``value`` quoted, cut to 40 characters."""
    return (
        repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value):,} characters)"
    )


def _plural(count: int, word: str) -> str:
    """``1 row``, ``2 rows``, ``0 rows``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _cell(row: list[str], column: int, one_column: bool) -> str:
    """The number cell of ``row``, trimmed: quotes around a one-column line's number (a CSV
    row's are gone already) and Excel's leading apostrophe (``'0912345678``: text) removed."""
    cell = row[column].strip() if column < len(row) else ""
    if one_column and len(cell) > 1 and cell[0] == cell[-1] == '"':
        cell = cell[1:-1].strip()
    if cell.startswith("'"):
        cell = cell[1:].lstrip()
    return cell


def open_numbers(
    path: str | None, column: str | None, stdin: IO[bytes], opener: Callable[[str], IO[bytes]]
) -> NumbersFile:
    """The numbers file ``path`` (opened once, with ``opener``), or ``stdin`` when None, with
    its layout sniffed. A file that can be read again (``seekable``) is read once through by
    the reader first, then rewound; a pipe (``-f <(...)``, ``/dev/stdin``) is streamed as
    stdin is. Raises ``NumbersFileError`` naming the line of what cannot be read, before
    anything is sent."""
    if path is None:
        name, stream = "stdin", stdin
    else:
        name, stream = path, opener(path)
    owned = path is not None
    try:
        head = _read_head(stream)
        encoding, bom = _encoding(head, name)
        layout = _layout(_sample_text(head, encoding, bom), encoding, bom, column, name)
        if owned and stream.seekable():
            NumbersFile(name, stream, layout, head, owned=False, hint="nothing was sent").check()
            stream.seek(len(head))
    except BaseException:
        if owned:
            stream.close()
        raise
    return NumbersFile(name, stream, layout, head, owned=owned)


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
    An Excel workbook, a gzip file or a UTF-32 file is refused."""
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise NumbersFileError(
            f"{name}: this is an Excel workbook, not a text file; save it as "
            '"CSV UTF-8" or "Unicode Text" and give that file'
        )
    if head.startswith(b"\x1f\x8b"):
        raise NumbersFileError(
            f"{name}: this file is compressed (gzip); decompress it (gunzip) and give that file"
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


def _newlines(text: str) -> str:
    """``\\r\\n`` and a lone ``\\r`` (the old Mac's line ending) made ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _sample_text(head: bytes, encoding: str, bom: bool) -> str:
    """The head decoded, line endings made ``\\n``, cut at its last whole line when the file
    goes on (bad bytes replaced: the reader reports them with their line)."""
    data = head[_bom_length(head) if bom else 0 :]
    text, _ = _DECODERS[encoding](data, "replace", False)
    text = _newlines(text)
    if len(head) >= _SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    return text


def _looks_like_phone(cell: str) -> bool:
    """Whether ``cell`` is shaped like a phone number: digits (8 to 15) with the usual
    separators and an optional leading ``+``; not whether it is a valid one."""
    cell = cell.strip()
    if not _PHONE_LIKE.fullmatch(cell):
        return False
    digits = sum(c.isdigit() for c in cell)
    return 8 <= digits <= 15


def _is_mobile(cell: str) -> bool:
    """Whether ``cell`` is a valid Vietnamese mobile number (as the engine will take it)."""
    try:
        phone.normalize(_cell([cell], 0, False))
    except ValidationError:
        return False
    return True


def _sample_rows(
    lines: list[str], delimiter: str | None, first: int
) -> list[tuple[int, list[str]]]:
    """The sample's non-blank records (by the line they start on) as the reader splits them,
    up to ``_SNIFF_ROWS``; it stops at what the reader would refuse (the pre-check, or the
    reader, reports it) or at a record cut by the end of the sample. In a one-column file,
    ``#`` comment lines are left out."""
    rows: list[tuple[int, list[str]]] = []
    try:
        for start, row in _records(iter(lines), delimiter, first):
            if not any(cell.strip() for cell in row):
                continue
            if delimiter is None and row[0].lstrip().startswith("#"):
                continue
            rows.append((start, row))
            if len(rows) >= _SNIFF_ROWS:
                break
    except _Malformed:
        pass
    return rows


def _delimiter(lines: list[str], first: int) -> str | None:
    """The delimiter that splits at least 80 % of the sample's records alike into two columns
    or more (one-cell title lines at the top left out); between several, the one giving a
    column of phone-shaped cells wins, then the one splitting more records alike, then the
    first of comma, semicolon, tab, pipe. None when none does (one column). ``csv.Sniffer`` is
    not used: on a one-column file of numbers it picks a digit or a space as the delimiter."""
    best: tuple[bool, float, int] | None = None
    chosen: str | None = None
    for delimiter in _DELIMITERS:
        rows = [row for _, row in _sample_rows(lines, delimiter, first)]
        titles = 0  # one-cell lines above the rest (a report's title) do not count
        while titles < min(_TITLES, len(rows) - 1) and len(rows[titles]) == 1:
            titles += 1
        rows = rows[titles:]
        if not rows:
            continue
        widths = [len(row) for row in rows]
        common = max(set(widths), key=widths.count)
        share = widths.count(common) / len(widths)
        if common < 2 or share < 0.8:
            continue
        shaped = any(_share(rows[1:] or rows, i, _looks_like_phone) >= 0.5 for i in range(common))
        score = (shaped, share, -_DELIMITERS.index(delimiter))
        if best is None or score > best:
            best, chosen = score, delimiter
    return chosen


def _share(rows: list[list[str]], column: int, test: Callable[[str], bool]) -> float:
    """The share of ``rows`` whose cell in ``column`` passes ``test``."""
    if not rows:
        return 0.0
    return sum(1 for row in rows if column < len(row) and test(row[column])) / len(rows)


def _fold(name: str) -> str:
    """A header cell as ``--column`` matches it: trimmed, case-folded, without diacritics
    (``SDT`` matches ``SĐT``: Đ and đ fold to d)."""
    name = name.strip().casefold().replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _split_lines(text: str) -> list[str]:
    """``text`` (line endings made ``\\n``) as lines, each with its ``\\n``."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


def _layout(text: str, encoding: str, bom: bool, wanted: str | None, name: str) -> Layout:
    """Delimiter, header and column of the sample ``text``; ``wanted`` is ``--column``."""
    lines = _split_lines(text)
    first, forced, sep_line = 1, None, False
    if lines and (match := _SEP_LINE.fullmatch(lines[0].strip("\n"))):
        forced, sep_line, first, lines = match.group(1), True, 2, lines[1:]
    delimiter = forced if forced is not None else _delimiter(lines, first)
    numbered = _sample_rows(lines, delimiter, first)
    rows = [row for _, row in numbered]
    columns = max((len(row) for row in rows), default=1)
    header_at: int | None = None
    if wanted is not None and re.fullmatch(r"[+-]?[0-9]+", wanted.strip()):
        number = int(wanted)
        if number < 1:
            raise NumbersFileError(
                f"--column {wanted}: columns are numbered from 1 (the first column is 1)"
            )
        column = number - 1
        if column >= columns:
            raise NumbersFileError(f"--column {wanted}: {name} has {_plural(columns, 'column')}")
    elif wanted is not None:
        column, header_at = _named_column(rows, wanted)
    elif columns == 1:
        column = 0
    else:
        column = _phone_column(rows, columns, name)
    if header_at is None:
        header_at = _header_at(rows, column)
    titles: tuple[tuple[int, str], ...] = ()
    header: tuple[str, ...] | None = None
    data_from = first
    if header_at is not None:
        titles = tuple(
            (n, " ".join(c.strip() for c in row if c.strip())) for n, row in numbered[:header_at]
        )
        header = tuple(cell.strip() for cell in rows[header_at])
        data_from = numbered[header_at][0] + 1
    return Layout(
        encoding=encoding,
        bom=bom,
        delimiter=delimiter,
        columns=columns,
        column=column,
        header=header,
        sep_line=sep_line,
        titles=titles,
        data_from=data_from,
    )


def _leading(rows: list[list[str]]) -> int:
    """How many rows at the start hold no data: no cell with six digits in a row (at most
    ``_TITLES`` titles and a header)."""
    lead = 0
    for row in rows[: _TITLES + 1]:
        if any(_DIGIT_RUN.search(cell) for cell in row):
            break
        lead += 1
    return lead


def _named_column(rows: list[list[str]], wanted: str) -> tuple[int, int]:
    """The column ``--column NAME`` names and the row (the header) naming it: searched in the
    rows before the first data row. ``NumbersFileError`` when no row names it, or when the
    header names two columns so."""
    target = _fold(wanted)
    for at, row in enumerate(rows[: max(_leading(rows), 1)]):
        folded = [_fold(cell) for cell in row]
        if target in folded:
            same = [i + 1 for i, cell in enumerate(folded) if cell == target]
            if len(same) > 1:
                raise NumbersFileError(
                    f"--column {wanted!r}: columns {', '.join(map(str, same))} are all called "
                    "that; give the column's number instead (--column N)"
                )
            return folded.index(target), at
    cells = ", ".join(repr(cell.strip()) for cell in (rows[0] if rows else [])) or "nothing"
    raise NumbersFileError(f"--column {wanted!r}: no such column; the first row holds {cells}")


def _phone_column(rows: list[list[str]], columns: int, name: str) -> int:
    """The column of mobile numbers: the one whose cells ``phone.normalize`` takes most often,
    then the most phone-shaped. Two columns mostly of mobile numbers are ambiguous:
    ``NumbersFileError`` asking for ``--column``, naming both."""
    valid = [_share(rows, i, _is_mobile) for i in range(columns)]
    mobiles = [i for i in range(columns) if valid[i] >= 0.5]
    if len(mobiles) > 1:
        header = rows[0] if rows and _leading(rows[:1]) else []
        named = [
            f"{i + 1}" + (f" ({header[i].strip()!r})" if i < len(header) else "") for i in mobiles
        ]
        raise NumbersFileError(
            f"{name}: columns {', '.join(named[:-1])} and {named[-1]} all hold mobile numbers; "
            "say which to send to with --column (a name or a number)"
        )
    shaped = [_share(rows, i, _looks_like_phone) for i in range(columns)]
    return max(range(columns), key=lambda i: (valid[i], shaped[i]))


def _header_at(rows: list[list[str]], column: int) -> int | None:
    """Which row is the header, or None. A header's cell in ``column`` holds a letter and no
    six digits in a row (``O912345678``, with a letter O, is a mistyped number: data), and a
    data row follows it (or it is the only row). Above it, up to ``_TITLES`` one-cell lines
    (a report's title) may stand when the header has two cells or more."""
    lead = _leading(rows)
    if not lead or (lead == len(rows) and len(rows) > 1):
        return None
    last = lead - 1

    def filled(row: list[str]) -> int:
        return sum(1 for cell in row if cell.strip())

    titles = filled(rows[last]) >= 2 and all(filled(row) == 1 for row in rows[:last])
    at = last if titles else 0
    row = rows[at]
    cell = row[column] if column < len(row) else ""
    return at if any(c.isalpha() for c in cell) else None


def _decoded_text(chunks: Iterator[bytes], encoding: str) -> Iterator[tuple[str, int]]:
    """``(text, line)`` for each decoded chunk, line endings made ``\\n``, ``line`` being the
    line its first character is on. A byte that does not decode, or a NUL character, raises
    ``_Malformed`` at its line, after the text before it was yielded."""
    decode = _DECODERS[encoding]
    line = 1
    rest = b""
    carry = ""  # a \r ending a chunk: the next may start with its \n
    ended = False
    while not ended:
        chunk = next(chunks, b"")
        ended = not chunk
        data = rest + chunk
        bad: UnicodeDecodeError | None = None
        try:
            text, used = decode(data, "strict", ended)
        except UnicodeDecodeError as exc:
            bad = exc
            text, used = decode(data[: exc.start], "strict", True)
        text, carry = carry + text, ""
        if bad is None and not ended and text.endswith("\r"):
            text, carry = text[:-1], "\r"
        text = _newlines(text)
        if "\x00" in text:
            good = text[: text.index("\x00")]
            yield good, line
            raise _Malformed(line + good.count("\n"), "a NUL character: not a text file of numbers")
        yield text, line
        if bad is not None:
            size = bad.end - bad.start
            raise _Malformed(
                line + text.count("\n"),
                f"byte{'s' if size > 1 else ''} {data[bad.start : bad.end].hex(' ')} "
                f"{'are' if size > 1 else 'is'} not {_LABELS[encoding]}; save the file as UTF-8 "
                '(Excel: "CSV UTF-8") or UTF-16 ("Unicode Text") and run again',
            )
        rest = data[used:]
        line += text.count("\n")


def _lines(texts: Iterator[tuple[str, int]]) -> Iterator[str]:
    """The lines of the decoded ``texts``, each with its ``\\n``; a line longer than
    ``_LONGEST_LINE`` raises ``_Malformed`` (memory stays bounded), ended or not."""
    pending = ""
    number = 1  # the line pending starts
    for text, _ in texts:
        pending += text
        start = 0
        while (end := pending.find("\n", start)) >= 0:
            if end - start > _LONGEST_LINE:
                break
            yield pending[start : end + 1]
            start = end + 1
            number += 1
        pending = pending[start:]
        if len(pending) > _LONGEST_LINE and pending.find("\n", 0, _LONGEST_LINE + 1) < 0:
            raise _Malformed(number, _TOO_LONG)
    if pending:
        yield pending


def _records(
    lines: Iterator[str], delimiter: str | None, first: int
) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` for each record of ``lines`` (numbered from ``first``), ``line`` being
    the line it starts on: split by ``delimiter`` as CSV (a quoted field may hold line breaks),
    or one cell a line when None. A record still open ``_RECORD_LINES`` lines on, or at the
    end (a stray quote), or that ``csv`` refuses raises ``_Malformed`` at its first line."""
    read = first - 1  # lines read
    start = first  # the line the record being read starts on
    ended = False

    def pull() -> Iterator[str]:
        nonlocal read, ended
        for line in lines:
            read += 1
            if read - start >= _RECORD_LINES:
                raise _Malformed(
                    start,
                    f'a quote (") opens a field here that is still open {_RECORD_LINES} lines '
                    "later: a stray quote? (quote the whole cell, doubling the quotes in it)",
                )
            yield line
        ended = True

    if delimiter is None:
        for line in pull():
            start = read + 1
            yield read, [line[:-1] if line.endswith("\n") else line]
        return
    reader = csv.reader(pull(), delimiter=delimiter)
    while True:
        start = first + reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _Malformed(start, f'{exc}: a stray quote (")?') from None
        if ended and row:
            raise _Malformed(start, 'a quote (") opens a field here that is never closed')
        yield start, row
