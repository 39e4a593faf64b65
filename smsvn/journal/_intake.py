"""Turning a campaign's input into journal rows: normalised, keyed, checked.

**The idempotency rule.** Each input row is keyed by a hash chain: the key of row *n* is a
digest of everything the input held up to and including row *n* (each number as written, or a
``Message``'s number, text and request id), starting from the input's shared content (or from
"messages", for ``Message`` items). So:

- the same input again (the same items, in the same order, with the same content) yields the
  same keys, and adds nothing, also when two processes add it at once;
- an input that begins with one already added (a file appended to) adds only its new rows;
- a number repeated within the input gets a different key at each place, so the repeat is a
  new row, recorded as a ``duplicate``: duplicates are found by a unique index on the number
  and a digest of its text, never by a set in memory;
- the same numbers with another content start another chain: another message (each number
  may get one message of each text).

The input is taken in segments of ``CHUNK`` rows, each added atomically. A key is two 64-bit
integers: the chain's value where the row's segment starts (``Chunk.segment``) and its value at
the row itself (``Chunk.chains``). PostgreSQL keeps a unique index of the keys (a segment's keys
sit together in it, so a million rows insert in order instead of at random). SQLite keeps no
index of them but a record of each add of a segment, found by the chain of the first row it
wrote (see ``_sqlite``): the rows an input shares with one added before are always its first
ones, since a row's chain is a digest of everything up to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from smsvn import text
from smsvn.errors import ValidationError
from smsvn.journal._store import Chunk, Run, State
from smsvn.models import Message
from smsvn.phone import normalize

__all__ = [
    "CHUNK",
    "GIVEN_MAX",
    "MAX_CONTENT",
    "MAX_REQUEST_ID",
    "Intake",
    "check_content",
    "digest",
    "storable",
]

CHUNK: Final = 20_000
"""Rows per segment: one transaction each. Memory stays bounded by it (a few MB)."""
GIVEN_MAX: Final = 64
"""Characters of an invalid input kept, to show what it was."""
MAX_CONTENT: Final = 2000
"""The longest content a journal takes (beyond any provider's limit: they check their own)."""
MAX_REQUEST_ID: Final = 50
"""The longest request id a ``Message`` may carry (eSMS's, the only provider that takes one:
its developer guide caps it at 50)."""
_SEED: Final = b"smsvn-journal-1\x00"
_LENGTHS: Final = tuple(n.to_bytes(4, "big") for n in range(64))
"""``n.to_bytes(4, "big")`` for the lengths numbers have, made once (a tenth of the intake's
time)."""
_NO_CONTENT: Final = "a number needs the campaign's text: add(numbers, content=...)"


def digest(value: str) -> int:
    """A 64-bit digest of a text, as a signed integer (what the store indexes)."""
    raw = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def check_content(content: object) -> str:
    """A content every provider could carry, or ``ValidationError`` (before anything is added):
    a non-empty ``str`` of at most ``MAX_CONTENT`` characters without control characters or
    lone surrogates."""
    if not isinstance(content, str):
        raise ValidationError(f"content must be a str, not {type(content).__name__}")
    if not content:
        raise ValidationError("content is empty")
    if len(content) > MAX_CONTENT:
        raise ValidationError(
            f"content is {len(content)} characters; no provider sends more than {MAX_CONTENT}"
        )
    if not text.is_encodable(content):
        raise ValidationError(
            "content has characters no SMS encoding can carry (control characters or lone "
            "surrogates)"
        )
    return content


def _clip(value: str) -> str:
    """What an invalid input was, as every store keeps it: at most ``GIVEN_MAX`` characters
    (``storable``)."""
    return storable(value if len(value) <= GIVEN_MAX else value[:GIVEN_MAX] + "...")


def storable(value: str) -> str:
    """``value`` as every store can keep it: a lone surrogate (UTF-8 cannot encode it: what
    ``json.loads`` makes of ``"\\ud800"``, or a stray byte read with ``surrogateescape``)
    becomes its escape ``\\ud800``, a NUL (PostgreSQL's text cannot hold it) ``\\x00``. An
    invalid input's text and reason are written so: one such input must not fail the write of
    its whole segment, and it reads the same on SQLite and PostgreSQL."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _shown(item: object) -> str:
    """What an input that is not a number was, for its ``invalid`` row."""
    try:
        return _clip(str(item))
    except Exception:  # a hostile __str__
        return f"<{type(item).__name__}>"


def _signed(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


class Intake:
    """The rows of one ``add``, segment by segment, keyed by the hash chain."""

    def __init__(self, content: str | None) -> None:
        self.content = content
        self.digest = 0 if content is None else digest(content)
        seed = _SEED + (b"messages" if content is None else b"content\x00" + _bytes(content))
        self._chain = hashlib.blake2b(seed, digest_size=8)

    def chunk(self, items: Iterable[object]) -> Chunk:
        """The rows of ``items`` (at most ``CHUNK`` of them: one segment)."""
        chain = self._chain
        update, finish, from_bytes = chain.update, chain.digest, int.from_bytes
        lengths = _LENGTHS
        segment = _signed(finish())
        runs: list[Run] = []
        plain: list[tuple[object, ...]] | None = None
        row: tuple[int, State, int | None, int, str | None, str | None, str | None, str | None]
        chains: list[int] = []
        shared = self.content is not None
        size = 0
        for item in items:
            size += 1
            if shared and type(item) is not str and isinstance(item, str):
                # A str subclass (pydantic's, Django's, an ORM cursor's): its characters are
                # the number, keyed and normalised as the same str would be.
                item = str.__str__(item)
            if type(item) is str and shared:
                raw = item.encode("utf-8", "surrogatepass")
                n = len(raw)  # its length as 4 bytes, then it: one update, the same bytes
                update((lengths[n] if n < 64 else n.to_bytes(4, "big")) + raw)
                key = from_bytes(finish(), "big", signed=True)
                chains.append(key)
                try:
                    number = int(normalize(item))
                except ValidationError as exc:
                    reason = storable(exc.message)
                    row = (key, State.INVALID, None, 0, None, _clip(item), None, reason)
                else:
                    if plain is None:
                        plain = []
                        runs.append(Run(True, plain))
                    plain.append((key, number))
                    continue
            else:
                row = self._other(item)
                chains.append(row[0])
            plain = None
            if runs and not runs[-1].plain:
                runs[-1].rows.append(row)
            else:
                runs.append(Run(False, [row]))
        return Chunk(segment, runs, size, chains)

    def _other(
        self, item: object
    ) -> tuple[int, State, int | None, int, str | None, str | None, str | None, str | None]:
        """The row of an item that is not a plain number of the shared content."""
        if isinstance(item, Message):
            to, content, request_id = item.to, item.content, item.request_id
            parts = [to if isinstance(to, str) else _shown(to)]
            parts.append(content if isinstance(content, str) else _shown(content))
            parts.append("\x01" if request_id is None else _shown(request_id))
            key = self._next(b"m" + _bytes("\x00".join(parts)))
            shown = _shown(to)
            try:
                content = check_content(content)
                if request_id is not None and (
                    not isinstance(request_id, str)
                    or not 0 < len(request_id) <= MAX_REQUEST_ID
                    or not text.is_encodable(request_id)
                ):
                    # Kept as is and sent as is: one the stores cannot keep (a NUL, a lone
                    # surrogate) or a provider cannot carry is refused here, on every store.
                    raise ValidationError(
                        f"request_id must be a str of 1-{MAX_REQUEST_ID} characters, without "
                        "control characters or lone surrogates"
                    )
                if not isinstance(to, str):
                    raise ValidationError(f"not a phone number string: {type(to).__name__}")
                number = int(normalize(to))
            except ValidationError as exc:
                return (key, State.INVALID, None, 0, None, shown, None, storable(exc.message))
            return (key, State.PENDING, number, digest(content), content, None, request_id, None)
        if isinstance(item, str):  # a number, but the input has no shared content
            key = self._next(b"s" + _bytes(item))
            return (key, State.INVALID, None, 0, None, _clip(item), None, _NO_CONTENT)
        shown = _shown(item)
        key = self._next(b"o" + _bytes(type(item).__name__ + "\x00" + shown))
        reason = storable(f"not a phone number string: {type(item).__name__}")
        return (key, State.INVALID, None, 0, None, shown, None, reason)

    def _next(self, data: bytes) -> int:
        # A length with the top bit set: never the same bytes as a plain number's.
        self._chain.update((len(data) | 1 << 31).to_bytes(4, "big"))
        self._chain.update(data)
        return _signed(self._chain.digest())


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")
