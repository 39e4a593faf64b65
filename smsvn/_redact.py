"""Redaction: provider text that echoes a credential, in any written form, is never shown.

A provider, a proxy or a gateway may echo a request back in an answer (an error message, a
debugging page) in any form it travelled in, half-decoded, escaped once more for the answer's
own format, or mangled by a wrong character set. No list of encodings is ever complete, so the
rule is not "replace the known forms" but "compare what is left once every form is undone":

- *Levels.* The text is decoded again and again (JSON / JavaScript escapes, ``%xx`` and
  ``%uXXXX``, HTML / XML entities, UTF-8 read as Latin-1 or cp1252) until nothing changes; the
  text itself and every step are compared, so an over-eager decoding cannot hide a literal echo.
- *Skeletons.* Each level is casefolded and reduced to its ASCII letters and digits, once after
  NFKC (so an accented letter, or the "?", U+FFFD or mojibake a wrong charset makes of it, drops
  out of both sides alike) and once after NFKD (so "é" counts as "e"). Punctuation, spaces and
  case, where the encodings differ, are gone; only the credential's own letters remain.
- *Runs.* Text whose skeleton holds any ``RUN`` consecutive characters of a credential's
  skeleton is withheld whole (``WITHHELD``); a decoded string field becomes ``***``.

The transport owns one ``Redactor`` per client; nothing else builds error text from a provider's
words. Checking plain ASCII text with no escape character costs one ``bytes.translate`` and a few
substring searches, since no decoding can change it (see ``Redactor._may_echo``).
"""

from __future__ import annotations

import codecs
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Final, TypeVar, cast

import msgspec

__all__ = ["EXCERPT", "MIN_RUN", "RUN", "WITHHELD", "Redactor"]

EXCERPT: Final = 200
"""Characters of a provider's answer quoted in an error message."""
WITHHELD: Final = "[redacted: the answer echoed a credential]"
"""What is shown instead of provider text that echoes a credential."""
RUN: Final = 8
"""Consecutive skeleton characters of a credential that withhold a text. Eight letters and
digits of a random credential (41 bits for base 36) never turn up by chance in a provider's
answer, while an echo keeps far longer runs: every real credential (SpeedSMS and eSMS keys of 32
characters, passwords) is longer, so at most 7 of its characters in a row can ever be shown."""
MIN_RUN: Final = 4
"""A skeleton of ``MIN_RUN`` to ``RUN - 1`` characters is searched whole (a weak password, so
text holding its letters anywhere is withheld: the safe mistake). A shorter one (a credential of
1-3 letters and digits: mostly punctuation, or Chinese) cannot be searched in skeletons without
withholding ordinary text, so its normalised form (NFKC, casefolded, ``+`` as a space) is
searched instead in each level, as a whole word when it starts or ends with a letter or digit;
an echo in a charset that cannot write it is then not recognised, and a form of 1-3
punctuation characters ("&", "!!") is not searched at all."""
_CHECKED: Final = 16 * 1024
"""Bytes of an answer checked before an excerpt of it is shown, far past the excerpt: a
credential cut off by the excerpt is still seen whole in any encoding that writes it in less
than this (all but absurd ones; a piece of a bigger one in the excerpt is less than a character).
"""
_MAX_LEVELS: Final = 8
"""Decoding passes at most: more layers than any real echo has (double encoding is two)."""
_PROBE: Final = 5
"""Length of the skeleton samples the cheap check looks for (see ``_needles``)."""

T = TypeVar("T")

_ASCII_LETTERS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER: Final = bytes.maketrans(_ASCII_LETTERS, _ASCII_LETTERS.lower())
_NOT_ALNUM: Final = bytes(
    c for c in range(256) if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122)
)

# JSON, JavaScript and Python escapes: a surrogate pair, \u{...}, \UXXXXXXXX, \uXXXX, \xXX, or
# one character; "u" and "x" in either case, as a server that upper-cases its text writes them.
_ESCAPE: Final = re.compile(
    r"\\(?:[uU]([dD][89abAB][0-9a-fA-F]{2})\\[uU]([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|[uU]\{([0-9a-fA-F]{1,6})\}|U(00(?:0[0-9a-fA-F]|10)[0-9a-fA-F]{4})"
    r"|[uU]([0-9a-fA-F]{4})|[xX]([0-9a-fA-F]{2})|(.))",
    re.DOTALL,
)
_SINGLE_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
}
# %uXXXX (IIS, JavaScript's escape()) or a run of %xx (both cases).
_PERCENT: Final = re.compile(r"%[uU]([0-9a-fA-F]{4})|((?:%[0-9a-fA-F]{2})+)")
_PERCENT_ASCII: Final = {
    f"%{high}{low}": chr(int(high + low, 16))
    for high in "01234567"
    for low in "0123456789abcdefABCDEF"
}
# UTF-8 read as cp1252 or Latin-1: a lead byte's character and its continuation bytes'.
_CP1252: Final = {codecs.decode(bytes([b]), "cp1252", "ignore"): b for b in range(0x80, 0xA0)}
_CP1252.pop("", None)
_CONTINUATION: Final = "[\x80-\xbf" + "".join(_CP1252) + "]"
_MOJIBAKE: Final = re.compile(
    f"[\xc2-\xdf]{_CONTINUATION}|[\xe0-\xef]{_CONTINUATION}{{2}}|[\xf0-\xf4]{_CONTINUATION}{{3}}"
)
_MOJIBAKE_START: Final = re.compile(f"[\xc2-\xf4]{_CONTINUATION}")  # a quick test for the above
# Letters with no decomposition to a base letter, as diacritics-stripping writes them.
_BASE_LETTERS: Final = str.maketrans({"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ħ": "h", "ı": "i"})
_NO_BASE: Final = re.compile("[đðøłħı]")
# In a short credential's form: what a query string, a form or a pretty-printer turns into space.
_SPACES: Final = re.compile(r"[ \t\n\r\f\v+]")


class Redactor:
    """Withholds provider text that echoes any of the given secrets, in any written form."""

    __slots__ = ("_count", "_forms", "_needles", "_probes", "_short_ascii")

    def __init__(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        probes: set[str] = set()
        forms: set[str] = set()
        count = 0
        for secret in secrets:
            if not secret:
                continue
            count += 1
            for level in _levels(secret):
                found = _needles(level)
                if found is None:
                    form = _form(level)
                    # Two "!" or a lone "&" would withhold half of all text: not searched.
                    if len(form) >= MIN_RUN or any(c.isalnum() for c in form):
                        forms.add(form)
                else:
                    needles.update(found[0])
                    probes.update(found[1])
        self._count = count
        self._needles = tuple(sorted(needles))
        self._probes = tuple(sorted(probes))
        self._forms = tuple(_form_pattern(form) for form in sorted(forms))
        ascii_forms = [_form_ascii_pattern(form) for form in sorted(forms) if form.isascii()]
        self._short_ascii = (
            re.compile("|".join(ascii_forms), re.ASCII | re.IGNORECASE) if ascii_forms else None
        )

    def __repr__(self) -> str:
        return f"Redactor({self._count} secrets)"

    def text(self, text: str) -> str:
        """``text`` itself, or ``WITHHELD`` when it echoes a secret in any form."""
        if not self._count or (text.isascii() and self._clean_ascii(text, text.encode())):
            return text
        return WITHHELD if self._echoes(text) else text

    def value(self, value: T, body: bytes | None = None) -> T:
        """A decoded answer (structs, lists, dicts, strings) with every string that echoes a
        secret replaced by ``***``; the same object when there was none.

        Redacting after decoding is what makes ``raw`` safe: JSON may write any character as a
        ``\\uXXXX`` escape, so no search of the undecoded bytes finds every echo. Given the
        ``body`` it was decoded from, the walk is skipped when ``_may_echo(body)`` is false,
        since no string decoded from such a body can echo a secret (the hot path).
        """
        if not self._count:
            return value
        if body is not None and not self._may_echo(body):
            return value
        suspects: list[str] = []

        def collect(text: str) -> str:
            if not (text.isascii() and self._clean_ascii(text, text.encode())):
                suspects.append(text)
            return text

        _redact_value(value, collect)
        echoing = self._echoing(suspects)
        if not echoing:
            return value
        return cast(T, _redact_value(value, lambda text: "***" if text in echoing else text))

    def excerpt(self, body: bytes) -> str:
        """A short, printable excerpt of a body for an error message, or ``WITHHELD`` when the
        body's first ``_CHECKED`` bytes echo a secret."""
        window = body[:_CHECKED]
        text = window.decode("utf-8", "replace")
        if self._may_echo(window) and self._echoes(text):
            return WITHHELD
        if len(text) > EXCERPT:
            text = text[:EXCERPT] + "..."
        return repr(text)

    # -- the rule ----------------------------------------------------------------------------

    def _may_echo(self, raw: bytes) -> bool:
        """False only when ``raw`` certainly echoes no secret: the cheap check of every call.

        It cannot miss. Every decoding needs a backslash, ``%``, ``&`` or a non-ASCII byte
        (and only non-ASCII characters change under casefolding and NFKC/NFKD beyond ASCII
        lower-casing), so text without any has a single level and its skeleton is ``raw``
        lower-cased without its non-alphanumeric bytes; any string decoded from such a body is
        a piece of it, with a piece of its skeleton. Then a ``RUN``-long piece of a secret's
        skeleton holds one of the ``_probes``, a shorter needle is a probe itself, and a short
        secret's form is matched by ``_short_ascii`` as it would be by its own pattern.
        """
        if not self._count:
            return False
        return not raw.isascii() or not self._clean_ascii(raw.decode("ascii"), raw)

    def _clean_ascii(self, text: str, raw: bytes) -> bool:
        """``not _may_echo`` of ASCII ``text``, given as ``raw`` bytes too (for ``translate``)."""
        if "\\" in text or "%" in text or "&" in text:
            return False
        skeleton = raw.translate(_LOWER, _NOT_ALNUM).decode("ascii")
        for probe in self._probes:
            if probe in skeleton:
                return False
        return self._short_ascii is None or self._short_ascii.search(text) is None

    def _echoes(self, text: str) -> bool:
        """Whether any level of ``text`` holds a needle in a skeleton or a short secret's form."""
        levels = _levels(text)
        # Every skeleton of every level, apart (a needle has no space): one search for each.
        haystack = " ".join(skeleton for level in levels for skeleton in _skeletons(level))
        for probe in self._probes:
            if probe in haystack:  # no probe, no needle (see ``_needles``)
                for needle in self._needles:
                    if needle in haystack:
                        return True
                break
        for pattern in self._forms:
            for level in levels:
                if pattern.search(_form(level)):
                    return True
        return False

    def _echoing(self, texts: list[str]) -> set[str]:
        """Those of ``texts`` that echo a secret, found by halving: a large answer that echoes
        nothing costs one ``_echoes``, not one for each of its strings.

        ``_echoes`` of the texts joined by newlines finds whatever it finds in any one of them:
        no decoding reaches across a newline (escapes, ``%xx``, entities and mojibake are each
        on one line; a newline composes with no mark), and a skeleton or form of the whole holds
        each one's. It may also find a run across two of them: halving then finds no culprit.
        """
        if not texts or not self._echoes("\n".join(texts)):
            return set()
        if len(texts) == 1:
            return {texts[0]}
        half = len(texts) // 2
        return self._echoing(texts[:half]) | self._echoing(texts[half:])


# -- normalisation ---------------------------------------------------------------------------------


def _levels(text: str) -> list[str]:
    """``text`` and each result of decoding it once more, until nothing changes."""
    levels = [text]
    for _ in range(_MAX_LEVELS):
        text = _decode_once(text)
        if text in levels:
            break
        levels.append(text)
    return levels


def _decode_once(text: str) -> str:
    """One pass of every decoding an echo may need: escapes, percent, entities, mojibake."""
    if "\\" in text:
        text = _ESCAPE.sub(_unescape, text)
    if "%" in text:
        text = _PERCENT.sub(_unpercent, text)
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii() and _MOJIBAKE_START.search(text):
        text = _MOJIBAKE.sub(_unmojibake, text)
    return text


def _unescape(match: re.Match[str]) -> str:
    """One JSON / JavaScript escape as the character it stands for."""
    high, low, braced, eight, four, two, single = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    if braced is not None:
        code = int(braced, 16)
        return chr(code) if code <= 0x10FFFF else "\ufffd"
    if eight is not None or four is not None or two is not None:
        return chr(int(eight or four or two, 16))
    return _SINGLE_ESCAPES.get(single, single)


def _unpercent(match: re.Match[str]) -> str:
    """``%uXXXX`` or a run of ``%xx`` as text (UTF-8, else Latin-1, as servers differ)."""
    if match[1] is not None:
        return chr(int(match[1], 16))
    one = _PERCENT_ASCII.get(match[2])
    if one is not None:  # the usual case: one ASCII character
        return one
    data = bytes.fromhex(match[2].replace("%", ""))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _unmojibake(match: re.Match[str]) -> str:
    """A UTF-8 sequence that was read as cp1252 or Latin-1, as the character it was."""
    data = bytes(_CP1252.get(c, ord(c)) for c in match[0])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return match[0]


def _skeletons(text: str) -> tuple[str, ...]:
    """The skeletons of one level: its letters and digits after NFKC (accented letters drop
    out, as a wrong charset drops them) and after NFKD (they count as their base letter, as
    when a Vietnamese server strips diacritics, "không dấu"); one for ASCII, where both agree."""
    folded = text.casefold()
    if folded.isascii():
        return (_skeleton(folded),)
    return (
        _skeleton(unicodedata.normalize("NFKC", folded)),
        _skeleton(unicodedata.normalize("NFKD", _base_letters(folded))),
    )


def _base_letters(text: str) -> str:
    """``text`` with ``_BASE_LETTERS`` replaced (``str.translate`` only when one is there)."""
    return text.translate(_BASE_LETTERS) if _NO_BASE.search(text) else text


def _skeleton(text: str) -> str:
    """The ASCII letters (lower case) and digits of an already casefolded, normalised text."""
    return text.encode("ascii", "ignore").translate(_LOWER, _NOT_ALNUM).decode("ascii")


def _needles(secret: str) -> tuple[set[str], set[str]] | None:
    """What a text holding ``secret`` (one of its levels) holds in a skeleton, and the probes
    of the cheap check: every ``RUN`` characters in a row of its skeletons, or a whole skeleton
    of ``MIN_RUN`` to ``RUN - 1``; None when both skeletons are too short to search (its form
    is searched instead, see ``MIN_RUN``).

    Probes (the q-gram lemma): the ``_PROBE`` characters at every ``RUN - _PROBE + 1``-th
    position of a skeleton. A run of ``RUN`` starting at ``i`` holds the sample at the first
    such position at or after ``i`` (at most ``i + RUN - _PROBE``), so any skeleton holding a
    needle holds a probe: a quarter of the needles, each of them short."""
    needles: set[str] = set()
    probes: set[str] = set()
    for skeleton in _skeletons(secret):
        if len(skeleton) >= RUN:
            needles.update(skeleton[i : i + RUN] for i in range(len(skeleton) - RUN + 1))
            step = RUN - _PROBE + 1
            probes.update(
                skeleton[j : j + _PROBE] for j in range(0, len(skeleton) - _PROBE + 1, step)
            )
        elif len(skeleton) >= MIN_RUN:
            needles.add(skeleton)
            probes.add(skeleton)
    return (needles, probes) if needles else None


def _form(text: str) -> str:
    """A short secret, or a level of text, as compared whole: NFKC, casefolded, every space
    and ``+`` (which query strings use for one) a plain space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text.casefold()))


def _form_pattern(form: str) -> re.Pattern[str]:
    """A short secret's form as a whole word: no letter or digit right before or after it."""
    before = r"(?<![^\W_])" if form[:1].isalnum() else ""
    after = r"(?![^\W_])" if form[-1:].isalnum() else ""
    return re.compile(before + re.escape(form) + after)


def _form_ascii_pattern(form: str) -> str:
    """``_form_pattern`` of an ASCII form for undecoded ASCII text (see ``_may_echo``), where
    casefolding is lower-casing and ``_form`` makes space of each of ``_SPACES``."""
    before = r"(?<![0-9A-Za-z])" if form[:1].isalnum() else ""
    after = r"(?![0-9A-Za-z])" if form[-1:].isalnum() else ""
    body = "".join(_SPACES.pattern if c == " " else re.escape(c) for c in form)
    return f"(?:{before}{body}{after})"


# -- decoded answers -------------------------------------------------------------------------------


def _redact_value(value: object, redact: Callable[[str], str]) -> object:
    """``value`` with ``redact`` applied to every string in it (see ``Redactor.value``)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, msgspec.Struct):
        changes: dict[str, object] = {}
        for name in value.__struct_fields__:
            old = getattr(value, name)
            new = _redact_value(old, redact)
            if new is not old:
                changes[name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(value, list | tuple):
        items = [_redact_value(item, redact) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        pairs = [(_redact_value(k, redact), _redact_value(v, redact)) for k, v in value.items()]
        if all(k is ok and v is ov for (k, v), (ok, ov) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    return value
