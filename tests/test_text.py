"""Vietnamese content: GSM-7 or UCS-2, segment counts, diacritic stripping and cost estimates.

Every expected number below was counted by hand (and cross-checked with ``len``), never with the
functions under test.
"""

from __future__ import annotations

import unicodedata

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsvn.text import (
    Encoding,
    Estimate,
    Segments,
    estimate,
    is_encodable,
    is_gsm7,
    needs_unicode,
    segments,
    strip_diacritics,
)

GSM7 = Encoding.GSM7
UCS2 = Encoding.UCS2

# Every Vietnamese letter with a diacritic, by the plain letter it strips to: for each vowel the
# five tones (huyền, sắc, hỏi, ngã, nặng), then ă â ê ô ơ ư with their five tones.
VIETNAMESE: dict[str, str] = {
    "a": "àáảãạăằắẳẵặâầấẩẫậ",
    "e": "èéẻẽẹêềếểễệ",
    "i": "ìíỉĩị",
    "o": "òóỏõọôồốổỗộơờớởỡợ",
    "u": "ùúủũụưừứửữự",
    "y": "ỳýỷỹỵ",
    "d": "đ",
    "A": "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ",
    "E": "ÈÉẺẼẸÊỀẾỂỄỆ",
    "I": "ÌÍỈĨỊ",
    "O": "ÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ",
    "U": "ÙÚỦŨỤƯỪỨỬỮỰ",
    "Y": "ỲÝỶỸỴ",
    "D": "Đ",
}
LETTER_TO_PLAIN = {letter: plain for plain, letters in VIETNAMESE.items() for letter in letters}
ALL_LETTERS = "".join(LETTER_TO_PLAIN)

PROMO = (
    "[Siêu Sale 11.11] Giảm đến 50% toàn bộ sản phẩm thời trang nam nữ, miễn phí vận chuyển "
    "cho đơn từ 299000đ. Nhập mã SALE1111 khi thanh toán. Ưu đãi chỉ trong hôm nay, số lượng "
    "có hạn! Chi tiết: shop.vn"
)
PROMO_PLAIN = (
    "[Sieu Sale 11.11] Giam den 50% toan bo san pham thoi trang nam nu, mien phi van chuyen "
    "cho don tu 299000d. Nhap ma SALE1111 khi thanh toan. Uu dai chi trong hom nay, so luong "
    "co han! Chi tiet: shop.vn"
)

# (content, encoding, characters as the phone counts them, segments)
SENTENCES: list[tuple[str, Encoding, int, int]] = [
    ("Mã OTP của bạn là 123456", UCS2, 24, 1),
    ("Ma OTP cua ban la 123456", GSM7, 24, 1),
    ("Quý khách vui lòng thanh toán hóa đơn tháng 11 trước ngày 25/11", UCS2, 63, 1),
    ("Quy khach vui long thanh toan hoa don thang 11 truoc ngay 25/11", GSM7, 63, 1),
    (
        "Mã xác thực của bạn là 482915. Mã có hiệu lực trong 5 phút. "
        "Không chia sẻ mã này cho bất kỳ ai.",
        UCS2,
        95,
        2,
    ),
    (
        "Ma xac thuc cua ban la 482915. Ma co hieu luc trong 5 phut. "
        "Khong chia se ma nay cho bat ky ai.",
        GSM7,
        95,
        1,
    ),
    (
        "Nhắc lịch: Quý khách có lịch hẹn khám răng lúc 9h30 ngày 12/12/2024 tại Nha khoa "
        "Sài Gòn. Vui lòng đến trước 15 phút.",
        UCS2,
        117,
        2,
    ),
    (
        "Nhac lich: Quy khach co lich hen kham rang luc 9h30 ngay 12/12/2024 tai Nha khoa "
        "Sai Gon. Vui long den truoc 15 phut.",
        GSM7,
        117,
        1,
    ),
    (PROMO, UCS2, 200, 3),
    (PROMO_PLAIN, GSM7, 202, 2),  # [ and ] are extension characters: two septets each
    # à è é ì ò ù É are in the GSM basic set: these stay GSM-7 despite their accents.
    ("Xin chào", GSM7, 8, 1),
    ("Xin chào bà Hà", GSM7, 14, 1),
    ("Chào bạn", UCS2, 8, 1),  # ạ is not
    ("XIN CHÀO", UCS2, 8, 1),  # nor is À
    ("Ma OTP: 123456 | Het han sau 5 phut", GSM7, 36, 1),  # | counts two
    ("🎉 Ưu đãi 50% hôm nay!", UCS2, 22, 1),  # the emoji is a surrogate pair
]

# (with diacritics, without) for every sentence pair above.
STRIPPED = [(SENTENCES[i][0], SENTENCES[i + 1][0]) for i in (0, 2, 4, 6)] + [
    (PROMO, PROMO_PLAIN),
    ("Chào bạn", "Chao ban"),
    ("XIN CHÀO", "XIN CHAO"),
    ("🎉 Ưu đãi 50% hôm nay!", "🎉 Uu dai 50% hom nay!"),
]


@pytest.mark.parametrize(("content", "encoding", "characters", "count"), SENTENCES)
def test_real_sentences(content: str, encoding: Encoding, characters: int, count: int) -> None:
    result = segments(content)
    assert result.encoding is encoding
    assert result.characters == characters
    assert result.segments == count
    assert result.unicode is (encoding is UCS2)
    assert needs_unicode(content) is (encoding is UCS2)
    assert is_gsm7(content) is (encoding is GSM7)


@pytest.mark.parametrize(("accented", "plain"), STRIPPED)
def test_strip_real_sentences(accented: str, plain: str) -> None:
    assert strip_diacritics(accented) == plain
    assert strip_diacritics(unicodedata.normalize("NFD", accented)) == plain


# --- the GSM 03.38 alphabet ---------------------------------------------------------------------

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"


def test_gsm_alphabet_is_complete() -> None:
    assert len(set(GSM_BASIC)) == 127  # 128 codes minus ESC
    for char in GSM_BASIC:
        assert is_gsm7(char), repr(char)
        assert segments(char).characters == 1
    for char in GSM_EXTENSION:
        assert is_gsm7(char), repr(char)
        assert segments(char) == Segments(encoding=GSM7, characters=2, segments=1, per_segment=160)


@pytest.mark.parametrize(
    "char",
    ["`", "\t", "\x1b", "\xa0", "ç", "á", "ú", "í", "ó", "È", "À", "đ", "₫", "中", "😀"],
)
def test_not_gsm(char: str) -> None:
    assert not is_gsm7(char)
    assert needs_unicode(char)
    assert segments(char).encoding is UCS2


def test_ascii_outside_gsm() -> None:
    # Only the backtick, DEL and the control characters other than LF, CR and FF (the latter an
    # extension character) are ASCII yet not GSM.
    outside = {chr(code) for code in range(128) if not is_gsm7(chr(code))}
    assert outside == {chr(code) for code in range(32)} - set("\n\r\f") | {"`", "\x7f"}
    assert segments("Ma OTP `123456`") == Segments(
        encoding=UCS2, characters=15, segments=1, per_segment=70
    )


@given(st.text())
def test_is_gsm7_matches_the_table(text: str) -> None:
    expected = all(char in GSM_BASIC or char in GSM_EXTENSION for char in text)
    assert is_gsm7(text) is expected
    assert needs_unicode(text) is not expected


def test_only_french_accents_of_vietnamese_are_gsm() -> None:
    assert {letter for letter in ALL_LETTERS if is_gsm7(letter)} == set("àèéìòùÉ")


# --- boundaries ---------------------------------------------------------------------------------


def _seg(encoding: Encoding, characters: int, count: int, per: int) -> Segments:
    return Segments(encoding=encoding, characters=characters, segments=count, per_segment=per)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", _seg(GSM7, 0, 1, 160)),
        ("a" * 160, _seg(GSM7, 160, 1, 160)),
        ("a" * 161, _seg(GSM7, 161, 2, 153)),
        ("a" * 306, _seg(GSM7, 306, 2, 153)),
        ("a" * 307, _seg(GSM7, 307, 3, 153)),
        ("{}" * 40, _seg(GSM7, 160, 1, 160)),
        ("{}" * 40 + "a", _seg(GSM7, 161, 2, 153)),
        ("a" * 158 + "€", _seg(GSM7, 160, 1, 160)),
        ("a" * 159 + "€", _seg(GSM7, 161, 2, 153)),
        # 306 septets either way, but an escape pair may not straddle two segments.
        ("a" * 151 + "€" + "a" * 153, _seg(GSM7, 306, 2, 153)),
        ("a" * 152 + "€" + "a" * 152, _seg(GSM7, 306, 3, 153)),
        ("a" * 152 + "|" + "a" * 152, _seg(GSM7, 306, 3, 153)),
        ("a" * 153 + "|" + "a" * 151, _seg(GSM7, 306, 2, 153)),
        ("ạ" * 70, _seg(UCS2, 70, 1, 70)),
        ("ạ" * 71, _seg(UCS2, 71, 2, 67)),
        ("ạ" * 201, _seg(UCS2, 201, 3, 67)),
        ("ạ" * 202, _seg(UCS2, 202, 4, 67)),
        ("😀" * 35, _seg(UCS2, 70, 1, 70)),
        ("😀" * 36, _seg(UCS2, 72, 2, 67)),
        # 134 units either way, but a surrogate pair may not straddle two segments.
        ("ạ" * 65 + "😀" + "ạ" * 67, _seg(UCS2, 134, 2, 67)),
        ("ạ" * 66 + "😀" + "ạ" * 66, _seg(UCS2, 134, 3, 67)),
        # One non-GSM character turns a whole GSM text into UCS-2.
        ("a" * 69 + "ạ", _seg(UCS2, 70, 1, 70)),
        ("a" * 70 + "ạ", _seg(UCS2, 71, 2, 67)),
        # A lone surrogate can sit in a Python str (bad JSON, surrogateescape): one unit.
        ("\ud800", _seg(UCS2, 1, 1, 70)),
    ],
)
def test_boundaries(content: str, expected: Segments) -> None:
    assert segments(content) == expected


def test_segments_is_a_frozen_struct() -> None:
    result = segments("Xin chào")
    assert not result.unicode
    assert segments("Chào bạn").unicode
    with pytest.raises(AttributeError):
        result.segments = 2  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(result), type=Segments) == result


# --- strip_diacritics ---------------------------------------------------------------------------


def test_letter_table_is_complete() -> None:
    # 12 vowels (a ă â e ê i o ô ơ u ư y) x 6 forms, minus the 6 plain ones, x 2 cases, + đ Đ.
    assert len(ALL_LETTERS) == len(set(ALL_LETTERS)) == 134
    for letter, plain in LETTER_TO_PLAIN.items():
        assert unicodedata.normalize("NFC", letter) == letter
        if plain not in "dD":
            assert unicodedata.normalize("NFD", letter)[0] == plain


@pytest.mark.parametrize(("letter", "plain"), list(LETTER_TO_PLAIN.items()))
def test_strip_every_letter(letter: str, plain: str) -> None:
    assert strip_diacritics(letter) == plain
    assert strip_diacritics(unicodedata.normalize("NFD", letter)) == plain
    assert strip_diacritics(f"x{letter}1") == f"x{plain}1"


def test_strip_all_letters_at_once() -> None:
    expected = "".join(LETTER_TO_PLAIN.values())
    assert strip_diacritics(ALL_LETTERS) == expected
    assert strip_diacritics(unicodedata.normalize("NFD", ALL_LETTERS)) == expected


def test_strip_mixed_nfc_and_nfd() -> None:
    mixed = "Mã" + unicodedata.normalize("NFD", " OTP của bạn") + " là 123456"
    assert strip_diacritics(mixed) == "Ma OTP cua ban la 123456"
    # A precomposed ơ carrying a combining tone, and marks in a non-canonical order.
    assert strip_diacritics("Cả\u01a1\u0301n") == "Caon"
    assert strip_diacritics("a\u0301\u0302 A\u0309\u0306") == "a A"
    # The deprecated tone marks U+0340/U+0341 are canonically U+0300/U+0301.
    assert strip_diacritics("a\u0340 e\u0341") == "a e"


def test_strip_leaves_other_text_alone() -> None:
    others = "Giá: 100.000₫ 😀👍🏽 中文 日本語 한국어 Привет Ελλάδα Müller garçon ñ ŷ ǎ ß € @ \n\t"
    assert strip_diacritics(others) == others.replace("á", "a")
    decomposed = "y\u0302 a\u030c n\u0303 c\u0327 o\u0308"  # ŷ ǎ ñ ç ö: not Vietnamese
    assert strip_diacritics(decomposed) == decomposed
    assert strip_diacritics("Hẹn gặp 😀 bạn 中文") == "Hen gap 😀 ban 中文"
    assert strip_diacritics("") == ""
    assert strip_diacritics("plain ASCII 123") == "plain ASCII 123"


def test_strip_keeps_a_non_vietnamese_mark_on_a_vietnamese_letter() -> None:
    # The acute belongs to Vietnamese é; the diaeresis does not and stays.
    assert strip_diacritics("e\u0301\u0308") == "ë"


# --- estimate -----------------------------------------------------------------------------------


def test_estimate_campaign() -> None:
    assert estimate(PROMO, 1000, 350.0) == Estimate(
        encoding=UCS2, segments_per_message=3, messages=1000, total_segments=3000, cost=1_050_000
    )
    assert estimate(PROMO_PLAIN, 1000, 350.0) == Estimate(
        encoding=GSM7, segments_per_message=2, messages=1000, total_segments=2000, cost=700_000
    )
    assert estimate("", 3, 250).total_segments == 3
    assert estimate("Xin chào", 0, 350).cost == 0


@pytest.mark.parametrize(("recipients", "price"), [(-1, 350.0), (1, -0.5)])
def test_estimate_rejects_negatives(recipients: int, price: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        estimate("Xin chào", recipients, price)


# --- properties ---------------------------------------------------------------------------------

_PLAIN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?:;-()/'\"%"
_MARKS = "\u0300\u0301\u0302\u0303\u0306\u0308\u0309\u031b\u0323"

vietnamese_text = st.builds(
    lambda text, form: unicodedata.normalize(form, text),
    st.text(alphabet=st.sampled_from(ALL_LETTERS + _PLAIN_ALPHABET)),
    st.sampled_from(["NFC", "NFD"]),
)
any_text = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(ALL_LETTERS + _MARKS + "€[]")),
)


@given(st.one_of(vietnamese_text, any_text))
def test_strip_is_idempotent(text: str) -> None:
    once = strip_diacritics(text)
    assert strip_diacritics(once) == once


@given(vietnamese_text)
def test_stripped_vietnamese_is_gsm7(text: str) -> None:
    stripped = strip_diacritics(text)
    assert is_gsm7(stripped)
    assert len(stripped) == len(unicodedata.normalize("NFC", text))


@given(st.one_of(vietnamese_text, any_text))
def test_strip_never_costs_more(text: str) -> None:
    assert segments(strip_diacritics(text)).segments <= segments(text).segments


_NON_VIETNAMESE = st.characters(
    exclude_characters=ALL_LETTERS + "".join(chr(code) for code in range(0x300, 0x370))
)


@given(st.text(alphabet=_NON_VIETNAMESE))
def test_strip_leaves_non_vietnamese_text_alone(text: str) -> None:
    assert strip_diacritics(text) == text


def _reference_count(content: str) -> tuple[int, int]:
    """Split content into its encoded units and cut them into segments, one unit at a time."""
    if all(char in GSM_BASIC or char in GSM_EXTENSION for char in content):
        units = [2 if char in GSM_EXTENSION else 1 for char in content]
        single, multi = 160, 153
    else:
        units = [len(char.encode("utf-16-le")) // 2 for char in content]
        single, multi = 70, 67
    if sum(units) <= single:
        return sum(units), 1
    parts: list[list[int]] = [[]]
    for unit in units:
        if sum(parts[-1]) + unit > multi:
            parts.append([])
        parts[-1].append(unit)
    return sum(units), len(parts)


@given(
    st.text(
        alphabet=st.sampled_from("a€[ạ😀" + GSM_BASIC[:40]),
        min_size=140,
        max_size=420,
    )
)
def test_segments_match_a_reference_split(content: str) -> None:
    result = segments(content)
    assert (result.characters, result.segments) == _reference_count(content)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("Xin chào\r\n\tbạn", True),
        ("form\ffeed", True),
        ("emoji 😀 €", True),
        ("nul\x00", False),
        ("bell\x07", False),
        ("esc\x1b", False),
        ("del\x7f", False),
        ("lone \udc00", False),
    ],
)
def test_is_encodable(content: str, expected: bool) -> None:
    assert is_encodable(content) is expected


@pytest.mark.parametrize(
    ("content", "count"), [("x" * 70, 1), ("x" * 71, 2), ("x" * 134, 2), ("x" * 135, 3)]
)
def test_segments_forced_to_unicode(content: str, count: int) -> None:
    forced = segments(content, unicode=True)
    assert forced.encoding is Encoding.UCS2
    assert forced.segments == count
    assert segments(content).encoding is Encoding.GSM7
