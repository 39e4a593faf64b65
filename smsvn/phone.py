"""Vietnamese mobile numbers: normalise every written form to one canonical form, or refuse it.

The canonical form is the national one, ``0`` + 9 digits (``"0912345678"``); providers that want
the international form get :func:`to_international` (``"84912345678"``). Pre-2018 11-digit
``01xx`` numbers are converted to their 10-digit successors. Everything that cannot be a
Vietnamese mobile number (landlines, foreign numbers, unallocated prefixes, wrong lengths,
text) raises :class:`smsvn.errors.ValidationError` with the reason, before any request is made.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final, cast

from smsvn.errors import ValidationError

__all__ = ["Carrier", "carrier", "is_valid", "normalize", "to_international"]


class Carrier(enum.Enum):
    """The operator a mobile prefix was originally allocated to (see :func:`carrier`)."""

    VIETTEL = "Viettel"
    VINAPHONE = "VinaPhone"
    MOBIFONE = "MobiFone"
    VIETNAMOBILE = "Vietnamobile"
    GMOBILE = "Gmobile"
    ITELECOM = "Itelecom"
    WINTEL = "Wintel"
    # Mobicast's MVNO on 055 was sold as Reddi until its 2023 rebrand as Wintel: same network.
    REDDI = "Wintel"


# 3-digit national prefix of every 10-digit mobile number in service -> original allocation.
_PREFIX_CARRIER: Final[dict[str, Carrier]] = {
    **dict.fromkeys(
        ("032", "033", "034", "035", "036", "037", "038", "039", "086", "096", "097", "098"),
        Carrier.VIETTEL,
    ),
    **dict.fromkeys(
        ("081", "082", "083", "084", "085", "088", "091", "094"),
        Carrier.VINAPHONE,
    ),
    **dict.fromkeys(
        ("070", "076", "077", "078", "079", "089", "090", "093"),
        Carrier.MOBIFONE,
    ),
    **dict.fromkeys(("052", "056", "058", "092"), Carrier.VIETNAMOBILE),
    **dict.fromkeys(("059", "099"), Carrier.GMOBILE),
    "087": Carrier.ITELECOM,
    "055": Carrier.WINTEL,
}

# The same prefixes as a number written ``84...`` starts: "8432" for 032 (the fast path of
# ``normalize``).
_INTERNATIONAL_PREFIXES: Final = frozenset("84" + prefix[1:] for prefix in _PREFIX_CARRIER)

# The 2018 move of 11-digit numbers to 10 digits: old 4-digit prefix -> new 3-digit prefix.
_OLD_PREFIX: Final[dict[str, str]] = {
    # Viettel
    "0162": "032",
    "0163": "033",
    "0164": "034",
    "0165": "035",
    "0166": "036",
    "0167": "037",
    "0168": "038",
    "0169": "039",
    # MobiFone
    "0120": "070",
    "0121": "079",
    "0122": "077",
    "0126": "076",
    "0128": "078",
    # VinaPhone
    "0123": "083",
    "0124": "084",
    "0125": "085",
    "0127": "081",
    "0129": "082",
    # Vietnamobile
    "0186": "056",
    "0188": "058",
    # Gmobile
    "0199": "059",
}

# What people put between digits: any whitespace (NBSP, thin and narrow spaces included), dots,
# hyphens and dashes, parentheses, and the invisible marks copy-paste brings along (zero-width
# spaces, BOM, the bidi marks phones wrap numbers in).
_SEPARATORS: Final = re.compile(
    r"[\s.\-()\u00ad\u2010-\u2015\u2212\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]+"
)


def _canonical_list() -> re.Pattern[str]:
    """A regex matching canonical numbers joined by commas (each ``0`` + a 2-digit mobile
    prefix in service + 7 digits), built from the prefix table."""
    by_second: dict[str, list[str]] = {}
    for prefix in sorted(_PREFIX_CARRIER):
        by_second.setdefault(prefix[1], []).append(prefix[2])
    classes = "|".join(f"{d}[{''.join(last)}]" for d, last in by_second.items())
    # Each unit ends with its comma (the joined list gets one more): one possessive loop, no
    # backtracking, about a fifth faster than ``unit(?:,unit)*``.
    return re.compile(f"(?:0(?:{classes})[0-9]{{7}},)*+")


_CANONICAL_LIST: Final = _canonical_list()

# Full-width digits and plus (Vietnamese/CJK input methods) -> ASCII.
_FULLWIDTH: Final = str.maketrans("０１２３４５６７８９＋", "0123456789+")
_MESSAGE_EXCERPT: Final = 40


def normalize(number: str) -> str:
    """Return ``number`` in canonical national form (``"0912345678"``), or raise ValidationError.

    Accepts ``0...``, ``84...``, ``+84...`` and ``0084...`` with any spaces, dots, hyphens or
    parentheses, and converts pre-2018 ``01xx`` numbers to their new prefix. Idempotent.
    """
    # Fast paths for the two forms numbers mostly come in: canonical (a database, bulk sends),
    # returned as is, and ``84`` + 9 digits (a web form, an OTP send). Both give what the
    # general path gives: a mobile prefix never has 0 as its second digit, so the digits after
    # ``84`` cannot hold the trunk ``0`` the general path drops.
    if number.__class__ is str and number.isascii() and number.isdigit():
        size = len(number)
        if size == 10:
            if number[:3] in _PREFIX_CARRIER:
                return number
        elif size == 11 and number[:4] in _INTERNATIONAL_PREFIXES:
            return "0" + number[2:]
    return _normalize_slow(number)


def _all_canonical(numbers: Sequence[object]) -> bool:
    """Whether :func:`normalize` would return every item of ``numbers`` unchanged through its
    fast path (each a ``str``, not a subclass, of 10 ASCII digits with a mobile prefix).

    The batch form of that check, at C speed (one regex over the joined numbers): a send of 100
    canonical numbers skips 100 calls to :func:`normalize`. False for an empty batch.
    """
    strings = cast("Sequence[str]", numbers)  # checked: str.join raises TypeError otherwise
    try:
        joined = ",".join(strings) + ","
    except TypeError:
        return False
    # n numbers of 10 characters, each followed by a comma: an item holding a comma would add
    # a unit to the match and so 11 characters to the length, so each item is one whole unit.
    size = len(strings)
    return (
        len(joined) == 11 * size
        and size > 0
        and list(map(type, strings)).count(str) == size  # str itself, no subclass
        and _CANONICAL_LIST.fullmatch(joined) is not None
    )


def to_international(number: str) -> str:
    """Return ``number`` as ``84`` + 9 digits, no plus (``"84912345678"``), for providers
    that want it; raises ValidationError like :func:`normalize`."""
    return "84" + normalize(number)[1:]


def carrier(number: str) -> Carrier:
    """Return the carrier the number's prefix was originally allocated to.

    Since 2018 subscribers can port their number to another carrier (mobile number
    portability) and keep it, so this is the prefix's original allocation, not a guarantee of
    the network the number is on today. Raises ValidationError like :func:`normalize`.
    """
    return _PREFIX_CARRIER[normalize(number)[:3]]


def is_valid(number: str) -> bool:
    """Return whether ``number`` normalises to a Vietnamese mobile number (never raises)."""
    try:
        normalize(number)
    except ValidationError:
        return False
    return True


def _normalize_slow(number: object) -> str:
    """Strip separators, read the country/trunk prefix and check the rest (the general case)."""
    if not isinstance(number, str):
        raise ValidationError(f"phone number must be a str, not {type(number).__name__}")
    # Plain replaces cover the usual spaces, hyphens and dots cheaply; the regex the rest.
    text = number.replace(" ", "").replace("-", "").replace(".", "")
    if not (text.isdigit() or (text[:1] == "+" and text[1:].isdigit())):
        text = _SEPARATORS.sub("", text)
    if not text.isascii():
        text = text.translate(_FULLWIDTH)
    if not text:
        raise ValidationError("empty phone number")

    if text[0] == "+":
        digits, lead = text[1:], "+84"
    else:
        digits, lead = text, ""
    if not (digits.isdigit() and digits.isascii()):
        bad = next((c for c in digits if not "0" <= c <= "9"), None)
        if bad is None:
            raise ValidationError("not a phone number: no digits after '+'")
        raise ValidationError(
            f"not a phone number: unexpected character {bad!r} in {_excerpt(number)!r}"
        )

    if lead:  # "+": a country code must follow.
        if not digits.startswith("84"):
            raise ValidationError(
                f"not a Vietnamese number: +{digits[:4]}... does not start with +84"
            )
        nsn = digits[2:]
    elif digits.startswith("00"):  # International call prefix, as dialled from Vietnam.
        if not digits.startswith("0084"):
            raise ValidationError(
                f"not a Vietnamese number: international prefix 00 with country code other "
                f"than 84 ({digits[:5]}...)"
            )
        nsn, lead = digits[4:], "0084"
    elif digits[0] == "0":
        return _check_national(digits[1:], "0")
    elif digits.startswith("84"):
        nsn, lead = digits[2:], "84"
    elif len(digits) == 9 and "0" + digits[:2] in _PREFIX_CARRIER:
        raise ValidationError(
            "wrong length: 9 digits with no leading 0 or 84 (was the 0 lost in a spreadsheet?)"
        )
    else:
        raise ValidationError(
            f"not a Vietnamese mobile number: must start with 0, 84, +84 or 0084, "
            f"not {digits[:1]!r}"
        )
    # "+84 (0) 912 345 678": a trunk 0 written after the country code is dropped.
    if nsn[:1] == "0":
        nsn = nsn[1:]
    return _check_national(nsn, lead)


def _check_national(nsn: str, lead: str) -> str:
    """Turn a national significant number (the digits after 0/84) into canonical form."""
    size = len(nsn)
    if size == 9:
        national = "0" + nsn
        if national[:3] in _PREFIX_CARRIER:
            return national
        if nsn[0] == "2":
            raise ValidationError(
                f"not a Vietnamese mobile number: landline prefix {_area_code(nsn)}"
            )
        if nsn[0] == "1":
            raise ValidationError(
                f"not a Vietnamese mobile number: prefix {national[:3]} is not in service "
                f"(pre-2018 01xx numbers have 10 digits after the 0)"
            )
        raise ValidationError(
            f"not a Vietnamese mobile number: unknown mobile prefix {national[:3]}"
        )
    if nsn[:1] == "1" and size == 10:
        new = _OLD_PREFIX.get("0" + nsn[:3])
        if new is not None:
            return new + nsn[3:]
        raise ValidationError(f"not a Vietnamese mobile number: unknown pre-2018 prefix 0{nsn[:3]}")
    if nsn[:1] == "2":
        raise ValidationError(f"not a Vietnamese mobile number: landline prefix {_area_code(nsn)}")
    raise ValidationError(f"wrong length: {size} digits after {lead!r}, expected 9")


def _area_code(nsn: str) -> str:
    """Return a landline's area code in national form: 024/028 (Hanoi, HCMC) or 02xx."""
    return "0" + nsn[:2] if nsn[:2] in ("24", "28") else "0" + nsn[:3]


def _excerpt(number: str) -> str:
    """Bound how much of a (possibly huge) input goes into an error message."""
    if len(number) <= _MESSAGE_EXCERPT:
        return number
    return number[:_MESSAGE_EXCERPT] + "..."
