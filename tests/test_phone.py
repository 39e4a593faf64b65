"""Tests for smsvn.phone: written forms, the 2018 conversion, rejections, carriers, properties."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from smsvn import phone
from smsvn.errors import ValidationError
from smsvn.phone import Carrier

# Written out here rather than imported, so a typo in the module's tables shows up as a failure.
CURRENT_PREFIXES: dict[str, Carrier] = {
    **dict.fromkeys(
        ["032", "033", "034", "035", "036", "037", "038", "039", "086", "096", "097", "098"],
        Carrier.VIETTEL,
    ),
    **dict.fromkeys(["081", "082", "083", "084", "085", "088", "091", "094"], Carrier.VINAPHONE),
    **dict.fromkeys(["070", "076", "077", "078", "079", "089", "090", "093"], Carrier.MOBIFONE),
    **dict.fromkeys(["052", "056", "058", "092"], Carrier.VIETNAMOBILE),
    **dict.fromkeys(["059", "099"], Carrier.GMOBILE),
    "087": Carrier.ITELECOM,
    "055": Carrier.WINTEL,
}

CONVERSIONS_2018: list[tuple[str, str]] = [
    ("0162", "032"),
    ("0163", "033"),
    ("0164", "034"),
    ("0165", "035"),
    ("0166", "036"),
    ("0167", "037"),
    ("0168", "038"),
    ("0169", "039"),
    ("0120", "070"),
    ("0121", "079"),
    ("0122", "077"),
    ("0126", "076"),
    ("0128", "078"),
    ("0123", "083"),
    ("0124", "084"),
    ("0125", "085"),
    ("0127", "081"),
    ("0129", "082"),
    ("0186", "056"),
    ("0188", "058"),
    ("0199", "059"),
]

CANONICAL = re.compile(r"^0\d{9}$")


# --- written forms ----------------------------------------------------------------------------

WRITTEN_FORMS = [
    ("0912345678", "0912345678"),
    ("84912345678", "0912345678"),
    ("+84912345678", "0912345678"),
    ("+84 912 345 678", "0912345678"),
    ("0912.345.678", "0912345678"),
    ("0912-345-678", "0912345678"),
    ("0912 345 678", "0912345678"),
    ("(+84) 912345678", "0912345678"),
    ("(091) 2345678", "0912345678"),
    ("0084912345678", "0912345678"),
    ("00 84 912 345 678", "0912345678"),
    ("+84 (0) 912 345 678", "0912345678"),
    ("+840912345678", "0912345678"),
    ("  0912345678  ", "0912345678"),
    ("\t0912345678\n", "0912345678"),
    ("\u00a00912\u00a0345\u00a0678\u00a0", "0912345678"),
    ("0912\u202f345\u202f678", "0912345678"),
    ("\u202a+84 91 234 56 78\u202c", "0912345678"),
    ("\ufeff0912345678\u200b", "0912345678"),
    ("0912–345–678", "0912345678"),
    ("０９１２３４５６７８", "0912345678"),
    ("＋８４９１２３４５６７８", "0912345678"),
    ("+84-98-765-4321", "0987654321"),
    ("098 765 43 21", "0987654321"),
    ("84 86 123 4567", "0861234567"),
    ("0559 123 456", "0559123456"),
    ("087.123.4567", "0871234567"),
    ("+84 52 234 5678", "0522345678"),
]


@pytest.mark.parametrize(("written", "expected"), WRITTEN_FORMS)
def test_written_forms(written: str, expected: str) -> None:
    assert phone.normalize(written) == expected


@pytest.mark.parametrize(("written", "expected"), WRITTEN_FORMS)
def test_to_international(written: str, expected: str) -> None:
    assert phone.to_international(written) == "84" + expected[1:]


def test_fast_path_returns_the_same_string() -> None:
    number = "0912345678"
    assert phone.normalize(number) is number


def test_str_subclass_is_accepted_and_plain_str_returned() -> None:
    class Tagged(str):
        pass

    result = phone.normalize(Tagged("0912345678"))
    assert result == "0912345678"
    assert type(result) is str


@pytest.mark.parametrize("prefix", sorted(CURRENT_PREFIXES))
def test_every_current_prefix_is_accepted(prefix: str) -> None:
    number = prefix + "1234567"
    assert phone.normalize(number) == number
    assert phone.normalize("84" + number[1:]) == number
    assert phone.normalize("+84 " + number[1:]) == number


# --- the 2018 conversion ----------------------------------------------------------------------


def test_conversion_table_is_complete() -> None:
    assert len(CONVERSIONS_2018) == 21
    assert {new for _, new in CONVERSIONS_2018} <= set(CURRENT_PREFIXES)


@pytest.mark.parametrize(("old", "new"), CONVERSIONS_2018)
@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda n: n, id="national"),
        pytest.param(lambda n: "84" + n[1:], id="84"),
        pytest.param(lambda n: "+84" + n[1:], id="+84"),
        pytest.param(lambda n: f"+84 {n[1:4]} {n[4:7]} {n[7:]}", id="+84-spaced"),
        pytest.param(lambda n: f"{n[:4]}.{n[4:7]}.{n[7:]}", id="national-dotted"),
        pytest.param(lambda n: "0084" + n[1:], id="0084"),
    ],
)
def test_2018_conversion(old: str, new: str, render: Callable[[str], str]) -> None:
    old_number = old + "3456789"
    assert len(old_number) == 11
    assert phone.normalize(render(old_number)) == new + "3456789"


@pytest.mark.parametrize(("old", "new"), CONVERSIONS_2018)
def test_converted_number_keeps_its_carrier(old: str, new: str) -> None:
    assert phone.carrier(old + "1234567") is CURRENT_PREFIXES[new]


def test_examples_from_the_provider_digest() -> None:
    assert phone.normalize("01623456789") == "0323456789"
    assert phone.normalize("841623456789") == "0323456789"
    assert phone.normalize("+84 162 345 6789") == "0323456789"
    assert phone.normalize("0120 123 4567") == "0701234567"
    assert phone.normalize("01231234567") == "0831234567"
    assert phone.normalize("01861234567") == "0561234567"
    assert phone.normalize("01991234567") == "0591234567"


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        # landlines
        ("024 3825 1234", "landline prefix 024"),
        ("02438251234", "landline prefix 024"),
        ("+84 24 3825 1234", "landline prefix 024"),
        ("842838251234", "landline prefix 028"),
        ("(028) 3822 1234", "landline prefix 028"),
        ("0236 382 1234", "landline prefix 0236"),
        ("+84 236 382 1234", "landline prefix 0236"),
        ("0212345678", "landline prefix 0212"),
        # lengths
        ("091234567", "wrong length"),
        ("09123456789", "wrong length"),
        ("+8491234567", "wrong length"),
        ("849123456789", "wrong length"),
        ("0", "wrong length"),
        ("84", "wrong length"),
        ("+84", "wrong length"),
        ("0162345678", "prefix 016 is not in service"),
        ("016234567890", "wrong length"),
        ("912345678", "wrong length"),
        ("0912345678 0987654321", "wrong length"),
        # foreign
        ("+1 415 555 0100", "not a Vietnamese number"),
        ("+6591234567", "not a Vietnamese number"),
        ("+65 9123 4567", "not a Vietnamese number"),
        ("0065 9123 4567", "not a Vietnamese number"),
        ("+0912345678", "not a Vietnamese number"),
        ("0091234567890", "not a Vietnamese number"),
        ("6591234567", "must start with 0, 84, +84 or 0084"),
        ("1900 1234", "must start with 0, 84, +84 or 0084"),
        # unallocated or retired mobile prefixes
        ("0951234567", "unknown mobile prefix 095"),
        ("0801234567", "unknown mobile prefix 080"),
        ("0691234567", "unknown mobile prefix 069"),
        ("0501234567", "unknown mobile prefix 050"),
        ("0301234567", "unknown mobile prefix 030"),
        ("0123456789", "prefix 012 is not in service"),
        ("01301234567", "unknown pre-2018 prefix 0130"),
        ("01611234567", "unknown pre-2018 prefix 0161"),
        # letters and other characters
        ("abc", "unexpected character 'a'"),
        ("0912345678x", "unexpected character 'x'"),
        ("O912345678", "unexpected character 'O'"),
        ("tel:+84912345678", "unexpected character 't'"),
        ("0912345678,", "unexpected character ','"),
        ("09+12345678", "unexpected character '+'"),
        ("++84912345678", "unexpected character '+'"),
        ("٠٩١٢٣٤٥٦٧٨", "unexpected character"),
        ("+", "no digits after '+'"),
        # empty
        ("", "empty"),
        ("   ", "empty"),
        ("\u00a0\t\n", "empty"),
        ("-.()", "empty"),
    ],
)
def test_rejections(number: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)):
        phone.normalize(number)
    assert not phone.is_valid(number)


@pytest.mark.parametrize("value", [None, 912345678, 84912345678, 9.1e8, b"0912345678", ["0912"]])
def test_non_str_input_is_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError, match="must be a str"):
        phone.normalize(value)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        phone.to_international(value)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        phone.carrier(value)  # type: ignore[arg-type]
    assert phone.is_valid(value) is False  # type: ignore[arg-type]


def test_rejection_is_local_and_has_no_provider() -> None:
    with pytest.raises(ValidationError) as info:
        phone.normalize("024 3825 1234")
    assert info.value.provider is None
    assert info.value.code is None
    assert str(info.value) == "not a Vietnamese mobile number: landline prefix 024"


def test_huge_input_gives_a_bounded_message() -> None:
    with pytest.raises(ValidationError) as info:
        phone.normalize("x" * 100_000)
    assert len(info.value.message) < 200


# --- carriers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("prefix", "expected"), sorted(CURRENT_PREFIXES.items()))
def test_carrier(prefix: str, expected: Carrier) -> None:
    assert phone.carrier(prefix + "1234567") is expected
    assert phone.carrier("+84 " + prefix[1:] + " 123 4567") is expected


def test_carrier_examples() -> None:
    assert phone.carrier("0987654321") is Carrier.VIETTEL
    assert phone.carrier("+84 91 234 5678") is Carrier.VINAPHONE
    assert phone.carrier("0901234567") is Carrier.MOBIFONE
    assert phone.carrier("0921234567") is Carrier.VIETNAMOBILE
    assert phone.carrier("0991234567") is Carrier.GMOBILE
    assert phone.carrier("0871234567") is Carrier.ITELECOM
    assert phone.carrier("0551234567") is Carrier.WINTEL
    assert phone.carrier("01681234567") is Carrier.VIETTEL


def test_reddi_is_the_former_name_of_wintel() -> None:
    assert Carrier.REDDI is Carrier.WINTEL
    assert Carrier("Wintel") is Carrier.WINTEL


def test_every_carrier_has_a_prefix() -> None:
    assert set(Carrier) == set(CURRENT_PREFIXES.values())


def test_carrier_rejects_invalid_numbers() -> None:
    with pytest.raises(ValidationError, match="landline"):
        phone.carrier("02438251234")


def test_is_valid() -> None:
    assert phone.is_valid("0912345678")
    assert phone.is_valid("+84 162 345 6789")
    assert not phone.is_valid("02438251234")
    assert not phone.is_valid("")


def test_public_api() -> None:
    assert set(phone.__all__) == {"Carrier", "carrier", "is_valid", "normalize", "to_international"}


# --- properties -------------------------------------------------------------------------------

_SEPARATORS = st.sampled_from(["", " ", ".", "-", "\u00a0", "\u202f", "  ", " - "])


@st.composite
def valid_numbers(draw: st.DrawFn, *, old_forms: bool = True) -> tuple[str, str]:
    """(a written form, its canonical national form) for a random number on a known prefix."""
    subscriber = draw(st.text("0123456789", min_size=7, max_size=7))
    if old_forms and draw(st.booleans()):
        old, new = draw(st.sampled_from(CONVERSIONS_2018))
        nsn, canonical = old[1:] + subscriber, new + subscriber
    else:
        prefix = draw(st.sampled_from(sorted(CURRENT_PREFIXES)))
        nsn, canonical = prefix[1:] + subscriber, prefix + subscriber
    lead = draw(
        st.sampled_from(["0", "84", "+84", "+84 ", "0084", "(+84) ", "+84 (0) ", "(0", "+(84)"])
    )
    body = nsn[:2] + ")" + nsn[2:] if lead == "(0" else nsn  # "(0" renders "(091) 2345678"
    sep = draw(_SEPARATORS)
    # Split the digits into random groups joined by the separator.
    cuts = sorted(draw(st.sets(st.integers(1, len(body) - 1), max_size=4)))
    groups = [body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    pad_left = draw(st.sampled_from(["", " ", "\t", "\u00a0", "\ufeff"]))
    pad_right = draw(st.sampled_from(["", " ", "\n", "\u00a0", "\u200b"]))
    return pad_left + lead + sep.join(groups) + pad_right, canonical


@given(valid_numbers())
def test_generated_forms_normalise(case: tuple[str, str]) -> None:
    written, canonical = case
    assert phone.normalize(written) == canonical


@given(valid_numbers())
def test_idempotent(case: tuple[str, str]) -> None:
    once = phone.normalize(case[0])
    assert phone.normalize(once) == once
    assert phone.normalize(phone.to_international(once)) == once


@given(valid_numbers())
def test_output_is_canonical(case: tuple[str, str]) -> None:
    out = phone.normalize(case[0])
    assert CANONICAL.match(out)
    assert out[:3] in CURRENT_PREFIXES
    assert re.fullmatch(r"84\d{9}", phone.to_international(case[0]))
    assert phone.carrier(case[0]) is CURRENT_PREFIXES[out[:3]]


_PHONEY_TEXT = st.text(alphabet="0123456789+ .-()84\u00a0x", max_size=20)


@given(st.one_of(st.text(), _PHONEY_TEXT, st.from_regex(r"\+?(84|0|00)?\d{6,13}", fullmatch=True)))
def test_arbitrary_text_only_ever_raises_validation_error(text: str) -> None:
    try:
        out = phone.normalize(text)
    except ValidationError as exc:
        message = exc.message
        assert message
        assert not phone.is_valid(text)
    else:
        assert CANONICAL.match(out)
        assert out[:3] in CURRENT_PREFIXES
        assert phone.normalize(out) == out
        assert phone.is_valid(text)


@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text())))
def test_arbitrary_non_str_raises_validation_error(value: object) -> None:
    with pytest.raises(ValidationError):
        phone.normalize(value)  # type: ignore[arg-type]


# --- agreement with libphonenumber (only when the optional package is installed) ---------------

# Prefixes libphonenumber's data treats as mobile that this module does not accept, and why:
# 012x, 014x and 016x with 10 digits are the M2M (machine SIM) ranges of 2019-2020, not people;
# 030, 031 and 051 appear in recent libphonenumber metadata without an allocation we could
# confirm; 095 (S-Fone, closed 2012) is matched by its broad ``9[0-8]`` pattern.
PHONENUMBERS_ONLY = {"012", "014", "016", "030", "031", "051", "095"}


def test_agrees_with_phonenumbers_on_current_numbers() -> None:
    pn = pytest.importorskip("phonenumbers")

    @given(valid_numbers(old_forms=False))
    def check(case: tuple[str, str]) -> None:
        written, canonical = case
        # libphonenumber does not strip these invisible characters; normalize() does.
        assume(not any(c in written for c in "\u202f\ufeff\u200b"))
        parsed = pn.parse(written, "VN")
        assert parsed.country_code == 84
        assert str(parsed.national_number) == canonical[1:]
        e164 = pn.format_number(parsed, pn.PhoneNumberFormat.E164)
        assert e164 == "+" + phone.to_international(written)

    check()


def test_phonenumbers_mobile_prefixes_are_known() -> None:
    pn = pytest.importorskip("phonenumbers")
    mobile = pn.PhoneNumberType.MOBILE
    theirs: set[str] = set()
    for i in range(100):
        prefix = f"0{i:02d}"
        for block in range(10):
            try:
                parsed = pn.parse(f"{prefix}{block}234567", "VN")
            except pn.NumberParseException:  # "00..." reads as an international call prefix
                continue
            if pn.is_valid_number(parsed) and pn.number_type(parsed) == mobile:
                theirs.add(prefix)
                break
    assert theirs - set(CURRENT_PREFIXES) <= PHONENUMBERS_ONLY
    assert set(CURRENT_PREFIXES) <= theirs


@pytest.mark.parametrize("number", ["024 3825 1234", "028 3822 1234", "0236 382 1234"])
def test_phonenumbers_agrees_on_landlines(number: str) -> None:
    pn = pytest.importorskip("phonenumbers")
    parsed = pn.parse(number, "VN")
    assert pn.number_type(parsed) == pn.PhoneNumberType.FIXED_LINE
    assert not phone.is_valid(number)
