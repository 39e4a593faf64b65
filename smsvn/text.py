"""Vietnamese message content: GSM-7 or UCS-2, how many segments it takes, and what it costs.

A message whose every character is in the GSM 03.38 alphabet goes as GSM-7: 160 characters in
one segment, 153 a segment when concatenated. Anything else, including most Vietnamese letters
with diacritics, forces UCS-2: 70 characters in one segment, 67 when concatenated, so the same
sentence can cost two or three times as much. ``segments`` tells which encoding a content needs
and how many segments it takes, ``estimate`` prices a campaign, and ``strip_diacritics`` turns
Vietnamese into plain Latin (``"Mã OTP của bạn"`` -> ``"Ma OTP cua ban"``) for the cheap path.

Note that a few accented letters Vietnamese shares with French (à è é ù ì ò) are in the GSM
basic set, so ``"Xin chào"`` is still GSM-7, while ``"Chào bạn"`` (ạ) is not.

The counts follow 3GPP TS 23.038 / 23.040 with the default alphabet and no national language
shift tables, the way a handset counts. A provider may still encode or bill its own way (for
instance send any non-ASCII content as Unicode), so an estimate is what the network would carry,
not a quote.
"""

from __future__ import annotations

import enum
import re
import unicodedata

import msgspec

__all__ = [
    "Encoding",
    "Estimate",
    "Segments",
    "estimate",
    "is_gsm7",
    "needs_unicode",
    "segments",
    "strip_diacritics",
]

# GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1), by code 0x00-0x7F. 0x1B is the escape to
# the extension table, not a character, so U+001B is deliberately absent.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The default extension table (§6.2.1.1): each costs two septets (ESC + code).
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM_ALL = _GSM_BASIC | _GSM_EXTENSION
# The same sets as ASCII bytes, for the common all-ASCII content: bytes.translate(None, delete)
# filters them in C, several times faster than testing characters one by one.
_GSM_ASCII = bytes(sorted(ord(char) for char in _GSM_ALL if char.isascii()))
_GSM_ASCII_EXTENSION = bytes(sorted(ord(char) for char in _GSM_EXTENSION if char.isascii()))

_GSM7_SINGLE = 160
_GSM7_MULTI = 153  # 160 minus the 7 septets a concatenation header (6 octets + fill) takes
_UCS2_SINGLE = 70
_UCS2_MULTI = 67  # 70 minus the 3 UTF-16 units the 6-octet concatenation header takes

# Vietnamese letters: base vowel, the vowel modifiers it takes (breve, circumflex, horn), and the
# five tone marks (huyền, sắc, hỏi, ngã, nặng). Built by composition so no letter can be mistyped.
_MODIFIERS = {
    "a": ("", "\u0306", "\u0302"),  # a ă â
    "e": ("", "\u0302"),  # e ê
    "i": ("",),
    "o": ("", "\u0302", "\u031b"),  # o ô ơ
    "u": ("", "\u031b"),  # u ư
    "y": ("",),
}
_TONES = ("", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323")


def _vietnamese_letters() -> dict[str, str]:
    """Map each precomposed Vietnamese letter to its plain form, so translation is one lookup."""
    letters = {"đ": "d", "Đ": "D"}
    for base, modifiers in _MODIFIERS.items():
        for plain in (base, base.upper()):
            for modifier in modifiers:
                for tone in _TONES:
                    letter = unicodedata.normalize("NFC", plain + modifier + tone)
                    if letter != plain:
                        letters[letter] = plain
    return letters


_LETTERS = _vietnamese_letters()
_STRIP_TABLE = str.maketrans(_LETTERS)
# Any combining diacritical mark (U+0300-U+036F) means the text may hold decomposed letters.
_COMBINING = re.compile("[\u0300-\u036f]")
# A plain vowel followed by combining marks: a candidate decomposed Vietnamese letter.
_CLUSTER = re.compile("[AEIOUYaeiouy][\u0300-\u036f]+")


class Encoding(enum.Enum):
    """The data coding an SMS is sent with: the 7-bit GSM alphabet or 16-bit UCS-2."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


class Segments(msgspec.Struct, frozen=True, kw_only=True):
    """How a content goes over the air: its encoding, length as the phone counts it, and parts.

    ``characters`` is septets for GSM-7 (an extension character such as ``€`` or ``{`` counts
    two) and UTF-16 units for UCS-2 (an emoji outside the BMP counts two). ``per_segment`` is
    the capacity of one segment: 160/70 when the content fits one, 153/67 when concatenated.
    """

    encoding: Encoding
    characters: int
    segments: int
    per_segment: int

    @property
    def unicode(self) -> bool:
        """True when the content must go as UCS-2, the expensive 70-character encoding."""
        return self.encoding is Encoding.UCS2


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """The price of sending one content to many recipients, segment by segment."""

    encoding: Encoding
    segments_per_message: int
    messages: int
    total_segments: int
    cost: float


def _strip_cluster(match: re.Match[str]) -> str:
    """Strip the Vietnamese marks of one decomposed letter, leaving any other mark in place."""
    cluster = match.group()
    current = unicodedata.normalize("NFC", cluster)
    stripped = current.translate(_STRIP_TABLE)
    if stripped == current:
        return cluster  # not a Vietnamese letter (e.g. ŷ, ǎ): leave it exactly as given
    while stripped != current:  # marks in a non-canonical order compose one layer at a time
        current = unicodedata.normalize("NFC", stripped)
        stripped = current.translate(_STRIP_TABLE)
    return stripped


def strip_diacritics(text: str) -> str:
    """Replace every Vietnamese letter by its plain Latin form (ễ -> e, Đ -> D) so it fits GSM-7.

    Precomposed (NFC) letters go through one ``str.translate``; only when combining marks are
    present are decomposed (NFD) letters handled, a base vowel with its marks at a time. Other
    text is left untouched: digits, punctuation, emoji, other scripts and non-Vietnamese accented
    letters (ñ, ü, ç, ŷ). Letters Vietnamese shares with other languages (é, à) are stripped too.
    """
    if text.isascii():
        return text
    stripped = text.translate(_STRIP_TABLE)
    if _COMBINING.search(stripped) is None:
        return stripped
    return _CLUSTER.sub(_strip_cluster, stripped)


def _escaped_count(content: str) -> int | None:
    """Count the extension characters of a GSM-7 content, or None if it needs UCS-2."""
    if content.isascii():
        raw = content.encode("ascii")
        if raw.translate(None, _GSM_ASCII):  # something left: ` or a control character
            return None
        return len(raw) - len(raw.translate(None, _GSM_ASCII_EXTENSION))
    if not _GSM_ALL.issuperset(content):
        return None
    return sum(content.count(char) for char in _GSM_EXTENSION)


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM 03.38 default alphabet or its extension table."""
    return _escaped_count(text) is not None


_UNENCODABLE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def is_encodable(content: str) -> bool:
    """True unless ``content`` has control characters (C0 other than tab, LF, FF, CR; DEL; C1,
    which Windows-1252 text read as Latin-1 turns its quotes into) or lone surrogates, which
    neither GSM-7 nor UCS-2 can carry and providers refuse."""
    return _UNENCODABLE.search(content) is None


def needs_unicode(content: str) -> bool:
    """True if the content must go as UCS-2 (70 characters a segment instead of 160)."""
    return _escaped_count(content) is None


def _pack(weights: list[int], capacity: int) -> int:
    """Count segments when units of the given weights are packed in order, none split."""
    count, used = 1, 0
    for weight in weights:
        if used + weight > capacity:
            count += 1
            used = 0
        used += weight
    return count


def _gsm7_segments(content: str, escaped: int) -> Segments:
    """Count a GSM-7 content in septets and split it without breaking an escape pair."""
    septets = len(content) + escaped
    if septets <= _GSM7_SINGLE:
        return Segments(
            encoding=Encoding.GSM7, characters=septets, segments=1, per_segment=_GSM7_SINGLE
        )
    if escaped:
        count = _pack([2 if char in _GSM_EXTENSION else 1 for char in content], _GSM7_MULTI)
    else:
        count = -(-septets // _GSM7_MULTI)
    return Segments(
        encoding=Encoding.GSM7, characters=septets, segments=count, per_segment=_GSM7_MULTI
    )


def _ucs2_segments(content: str) -> Segments:
    """Count a UCS-2 content in UTF-16 units and split it without breaking a surrogate pair."""
    # surrogatepass: a lone surrogate (possible in a Python str) is one unit, not a crash.
    units = len(content.encode("utf-16-le", "surrogatepass")) // 2
    if units <= _UCS2_SINGLE:
        return Segments(
            encoding=Encoding.UCS2, characters=units, segments=1, per_segment=_UCS2_SINGLE
        )
    if units != len(content):  # some characters outside the BMP take a surrogate pair
        count = _pack([2 if char > "\uffff" else 1 for char in content], _UCS2_MULTI)
    else:
        count = -(-units // _UCS2_MULTI)
    return Segments(
        encoding=Encoding.UCS2, characters=units, segments=count, per_segment=_UCS2_MULTI
    )


def segments(content: str, *, unicode: bool = False) -> Segments:
    """Tell how a content will be sent: GSM-7 if it fits the GSM alphabet, else UCS-2
    (``unicode=True``: UCS-2 whatever it holds, as when a provider is told to send Unicode).

    The content is counted as given: decomposed (NFD) text counts every combining mark as a
    character, so normalise it to NFC (or strip it) first. An empty content is one segment of
    0 characters, since providers charge for it.
    """
    escaped = None if unicode else _escaped_count(content)
    if escaped is None:
        return _ucs2_segments(content)
    return _gsm7_segments(content, escaped)


def estimate(content: str, recipients: int, price_per_segment: float) -> Estimate:
    """Price a campaign before sending it: one content to ``recipients`` numbers.

    The cost is ``segments(content).segments * recipients * price_per_segment``, in whatever
    currency the price is given (VND for the Vietnamese providers).
    """
    if recipients < 0:
        raise ValueError(f"recipients must be >= 0, not {recipients}")
    if price_per_segment < 0:
        raise ValueError(f"price_per_segment must be >= 0, not {price_per_segment}")
    parts = segments(content)
    total = parts.segments * recipients
    return Estimate(
        encoding=parts.encoding,
        segments_per_message=parts.segments,
        messages=recipients,
        total_segments=total,
        cost=total * price_per_segment,
    )
