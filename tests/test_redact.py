"""``Redactor``: provider text that echoes a credential in any written form is never shown.

Every credential below holds ``SENTINEL``; each is echoed in the forms real servers write
(.NET, PHP, Python, JavaScript, System.Text.Json, XML twice, a Latin-1 body, mojibake, and
stacks of them), inside realistic error bodies, and nothing the redactor returns may show it.
Each case has a control: the same body echoing a look-alike that shares no run of the
credential, which must come back unchanged (withholding everything would pass the first half).
"""

from __future__ import annotations

import html
import json
import os
import unicodedata
from collections.abc import Callable
from html.entities import codepoint2name
from typing import Any
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape as xml_escape

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from smsvn._redact import EXCERPT, MIN_RUN, RUN, WITHHELD, Redactor

MARK = "sentinel"
SECRETS = [
    "tok SENTINEL+&=é'1",
    'pass<SENTINEL>&"x',
    "mật khẩu SENTINEL+€",
    "SENTINEL/with?query=1#frag",
]
_PROPERTY = settings(
    # SMSVN_FUZZ_EXAMPLES=20000 for a deeper run than the suite's quick one.
    max_examples=int(os.environ.get("SMSVN_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- how servers write a string ----------------------------------------------------------------


def dotnet_url_encode(text: str) -> str:
    """.NET ``HttpUtility.UrlEncode``: UTF-8, lower-case ``%xx``, ``+`` for a space."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!*()")
    out = []
    for byte in text.encode():
        if byte == 0x20:
            out.append("+")
        elif byte in safe:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02x}")
    return "".join(out)


def js_escape(text: str) -> str:
    """JavaScript's ``escape()``: ``%XX`` up to U+00FF, ``%uXXXX`` above."""
    safe = set("@*_+-./")
    out = []
    for c in text:
        if c.isascii() and (c.isalnum() or c in safe):
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"%{ord(c):02X}")
        else:
            out.extend(f"%u{unit:04X}" for unit in _utf16(c))
    return "".join(out)


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def php_htmlspecialchars(text: str) -> str:
    """PHP ``htmlspecialchars(ENT_QUOTES)``: ``&#039;`` for a quote."""
    return html.escape(text, quote=False).replace('"', "&quot;").replace("'", "&#039;")


def dotnet_html_encode(text: str) -> str:
    """.NET ``HttpUtility.HtmlEncode``: ``&#39;``, and U+00A0-U+00FF as decimal references."""
    out = html.escape(text, quote=False).replace('"', "&quot;").replace("'", "&#39;")
    return "".join(f"&#{ord(c)};" if 0xA0 <= ord(c) <= 0xFF else c for c in out)


def named_entities(text: str) -> str:
    """PHP ``htmlentities``: a named entity for every character that has one."""
    return "".join(f"&{codepoint2name[ord(c)]};" if ord(c) in codepoint2name else c for c in text)


def hex_entities(text: str) -> str:
    """Every character but letters and digits as ``&#xHH;``."""
    return "".join(c if c.isascii() and c.isalnum() else f"&#x{ord(c):x};" for c in text)


def decimal_entities_everywhere(text: str) -> str:
    """Every character, letters included, as ``&#NN;``."""
    return "".join(f"&#{ord(c)};" for c in text)


def percent_everywhere(text: str) -> str:
    """Every byte, letters included, as ``%XX``."""
    return "".join(f"%{b:02X}" for b in text.encode())


def system_text_json(text: str) -> str:
    """System.Text.Json's default encoder: non-ASCII and ``<>&'"+``` as ``\\u00XX``."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c.isascii() and c.isprintable() and c not in "<>&'\"+`":
            out.append(c)
        else:
            out.extend(f"\\u{unit:04X}" for unit in _utf16(c))
    return "".join(out)


def json_escape_everywhere(text: str) -> str:
    """Every character, letters included, as ``\\uXXXX``."""
    return "".join(f"\\u{unit:04x}" for c in text for unit in _utf16(c))


def js_hex_escapes(text: str) -> str:
    """JavaScript string escapes: ``\\xHH`` up to U+00FF, ``\\uXXXX`` above, letters kept."""
    out = []
    for c in text:
        if c.isascii() and c.isalnum():
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.extend(f"\\u{unit:04x}" for unit in _utf16(c))
    return "".join(out)


def mojibake(text: str, charset: str = "cp1252") -> str:
    """UTF-8 read in a single-byte charset (what a server with the wrong default writes)."""
    return text.encode().decode(charset, "replace")


def without_diacritics(text: str) -> str:
    """What a Vietnamese server sending "không dấu" (unaccented) text writes."""
    stripped = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in stripped if not unicodedata.combining(c))


def fullwidth(text: str) -> str:
    """ASCII letters and digits as their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


ENCODINGS: dict[str, Callable[[str], str]] = {
    "as is": lambda s: s,
    ".NET UrlEncode": dotnet_url_encode,
    ".NET UrlEncode twice": lambda s: dotnet_url_encode(dotnet_url_encode(s)),
    "Uri.EscapeDataString": lambda s: quote(s, safe="~"),
    "quote": lambda s: quote(s, safe=""),
    "quote keeps /": quote,
    "quote_plus": lambda s: quote_plus(s, safe=""),
    "quote twice": lambda s: quote(quote(s, safe=""), safe=""),
    "quote Latin-1": lambda s: quote(s, safe="", encoding="latin-1", errors="replace"),
    "encodeURIComponent": lambda s: quote(s, safe="!~*'()"),
    "JS escape()": js_escape,
    "yarl query": lambda s: URL("http://h/").extend_query({"p": s}).raw_query_string,
    "plus for space only": lambda s: s.replace(" ", "+"),
    "percent, letters too": percent_everywhere,
    "html.escape": html.escape,
    "PHP htmlspecialchars": php_htmlspecialchars,
    ".NET HtmlEncode": dotnet_html_encode,
    "PHP htmlentities": named_entities,
    "hex references": hex_entities,
    "decimal references, letters too": decimal_entities_everywhere,
    "xmlcharrefreplace": lambda s: xml_escape(s).encode("ascii", "xmlcharrefreplace").decode(),
    "XML escaped twice": lambda s: xml_escape(xml_escape(s)),
    "only & escaped": lambda s: s.replace("&", "&amp;"),
    "json ensure_ascii": lambda s: json.dumps(s)[1:-1],
    "json UTF-8": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "json \\/ (PHP, WCF)": lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    "System.Text.Json": system_text_json,
    "\\u everywhere": json_escape_everywhere,
    "JS \\x escapes": js_hex_escapes,
    "json twice": lambda s: json.dumps(json.dumps(s))[1:-1],
    "mojibake cp1252": mojibake,
    "mojibake Latin-1": lambda s: mojibake(s, "latin-1"),
    "mojibake twice": lambda s: mojibake(mojibake(s)),
    "Latin-1 with ?": lambda s: s.encode("latin-1", "replace").decode("latin-1"),
    "NFD": lambda s: unicodedata.normalize("NFD", s),
    "without diacritics": without_diacritics,
    "upper case": str.upper,
    "full width": fullwidth,
    # Half-decoded and stacked: one layer undone by a gateway, another added by the answer.
    "quote, then html.escape": lambda s: html.escape(quote(s, safe="")),
    "UrlEncode inside XML twice": lambda s: xml_escape(xml_escape(dotnet_url_encode(s))),
    "html.escape, then quote": lambda s: quote(html.escape(s), safe=""),
    "UrlEncode, then System.Text.Json": lambda s: system_text_json(dotnet_url_encode(s)),
    "non-ASCII percent-encoded only": lambda s: "".join(c if c.isascii() else quote(c) for c in s),
    "mojibake, then quote": lambda s: quote(mojibake(s), safe=""),
    "entities, then \\u": lambda s: json_escape_everywhere(named_entities(s)),
}
# Lossless ones only, for stacks: Latin-1 "?" and full width then "?" would leave nothing to see.
STACKABLE = sorted(
    name for name in ENCODINGS if name not in ("Latin-1 with ?", "quote Latin-1", "full width")
)


# -- the answers they are echoed in ---------------------------------------------------------------


class Answer(msgspec.Struct):
    """What a body is for the tests: its bytes, the text a parser takes from it (an error
    message), and the decoded value when it is JSON."""

    body: bytes
    message: str
    decoded: Any = None


def json_error(echo: str, charset: str = "ascii") -> Answer:
    payload = {"status": "error", "code": "101", "message": f"Invalid token {echo} (from {echo})"}
    if charset in ("ascii", "utf-8"):  # JSON with \uXXXX escapes, or UTF-8 as it is
        body = json.dumps(payload, ensure_ascii=charset == "ascii").encode()
        return Answer(body, payload["message"], msgspec.json.decode(body))
    # A server writing JSON in its own charset: not UTF-8, so the client shows an excerpt.
    body = json.dumps(payload, ensure_ascii=False).encode(charset, "replace")
    return Answer(body, body.decode("utf-8", "replace"))


def html_page(echo: str, charset: str = "utf-8") -> Answer:
    page = (
        "<!DOCTYPE html><html><head><title>400 Bad Request</title></head><body>"
        f"<h1>Bad Request</h1><p>The request to {echo} was refused.</p>"
        f"<pre>GET /api?key={echo} HTTP/1.1</pre></body></html>"
    )
    body = page.encode(charset, "replace")
    return Answer(body, body.decode("utf-8", "replace"))


def asmx_string(echo: str, charset: str = "utf-8") -> Answer:
    inner = f"<SMS><Code>3</Code><Message>Sai mật khẩu: {xml_escape(echo)}</Message></SMS>"
    page = (
        f'<?xml version="1.0" encoding="{charset}"?>\n'
        f'<string xmlns="http://tempuri.org/">{xml_escape(inner)}</string>'
    )
    return Answer(page.encode(charset, "replace"), f"Sai mật khẩu: {echo}")


CONTEXTS: dict[str, Callable[[str], Answer]] = {
    "JSON": json_error,
    "JSON UTF-8": lambda e: json_error(e, "utf-8"),
    "HTML": html_page,
    "XML": asmx_string,
    "JSON Latin-1": lambda e: json_error(e, "latin-1"),
    "HTML Latin-1": lambda e: html_page(e, "latin-1"),
    "XML Latin-1": lambda e: asmx_string(e, "latin-1"),
    "HTML cp1252": lambda e: html_page(e, "cp1252"),
}


def look_alike(secret: str) -> str:
    """``secret`` with every ASCII letter and digit changed (ROT13, digits + 5): the same
    shape and punctuation, no run of its skeleton."""
    rotated = secret.translate(str.maketrans("0123456789", "5678901234"))
    return "".join(
        chr((ord(c.lower()) - 97 + 13) % 26 + ord("a" if c.islower() else "A"))
        if c.isascii() and c.isalpha()
        else c
        for c in rotated
    )


def strings(value: object) -> list[str]:
    """Every string in a decoded value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings(item)]
    return []


def assert_withheld(redactor: Redactor, answer: Answer) -> None:
    """Nothing the redactor gives back for ``answer`` shows the sentinel; what echoed it is
    withheld whole."""
    assert redactor.text(answer.message) == WITHHELD
    assert redactor.text(answer.body.decode("utf-8", "replace")) == WITHHELD
    assert redactor.excerpt(answer.body) == WITHHELD
    if answer.decoded is not None:
        for redacted in (
            redactor.value(answer.decoded, answer.body),
            redactor.value(answer.decoded),
        ):
            assert redacted["message"] == "***"
            assert not [s for s in strings(redacted) if MARK in s.casefold()]


def assert_shown(redactor: Redactor, answer: Answer) -> None:
    """``answer`` echoes no credential: everything comes back as it was."""
    assert redactor.text(answer.message) is answer.message
    text = answer.body.decode("utf-8", "replace")
    assert redactor.text(text) is text
    shown = text if len(text) <= EXCERPT else text[:EXCERPT] + "..."
    assert redactor.excerpt(answer.body) == repr(shown)
    if answer.decoded is not None:
        assert redactor.value(answer.decoded, answer.body) is answer.decoded
        assert redactor.value(answer.decoded) is answer.decoded


# -- every encoding of every hostile credential ----------------------------------------------------


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("secret", SECRETS)
def test_every_written_form_is_withheld(secret: str, encoding: str) -> None:
    redactor = Redactor((secret,))
    encode = ENCODINGS[encoding]
    for context, make in CONTEXTS.items():
        if encoding == "full width" and context.endswith(("Latin-1", "cp1252")):
            continue  # a single-byte charset writes full-width letters as "?": nothing shown
        echoed = make(encode(secret))
        try:
            assert_withheld(redactor, echoed)
            assert_shown(redactor, make(encode(look_alike(secret))))
        except AssertionError as exc:
            raise AssertionError(f"{encoding} in {context}: {exc}") from exc


@pytest.mark.parametrize("secret", SECRETS)
def test_the_look_alikes_share_no_run(secret: str) -> None:
    """The controls above are fair: a look-alike keeps the shape and no letter or digit."""
    other = look_alike(secret)
    assert len(other) == len(secret)
    assert all(a != b for a, b in zip(secret, other, strict=True) if a.isascii() and a.isalnum())
    assert MARK not in other.casefold()


@given(
    before=st.text(max_size=6),
    after=st.text(max_size=6),
    stack=st.lists(st.sampled_from(STACKABLE), min_size=1, max_size=3),
    context=st.sampled_from(sorted(CONTEXTS)),
)
@_PROPERTY
def test_any_stack_of_encodings_is_withheld(
    before: str, after: str, stack: list[str], context: str
) -> None:
    secret = f"{before}SENTINEL{after}"
    assume("\x00" not in secret)
    redactor = Redactor((secret,))
    echo = secret
    for name in stack:
        echo = ENCODINGS[name](echo)
    answer = CONTEXTS[context](echo)
    assert redactor.text(answer.message) == WITHHELD
    assert redactor.excerpt(answer.body) == WITHHELD
    if answer.decoded is not None:
        assert redactor.value(answer.decoded, answer.body)["message"] == "***"


# -- ordinary answers are shown as they are -------------------------------------------------------

TOKEN = "Xq3kP9vLm2Rt7Yw1Zb5Nc8Hd4Jf6Gs0A"
ORDINARY = [
    b'{"status":"success","code":"00","data":{"tranId":1,"totalSMS":100,"totalPrice":25000,'
    b'"invalidPhone":[]}}',
    b'{"CodeResult":"100","CountRegenerate":0,"SMSID":"4dad2986-ce83-4960-aa06-e9ab85a0bcc1"}',
    '{"CodeResult":"104","ErrorMessage":"Brandname chưa được đăng ký \\u0026 duyệt"}'.encode(),
    b'{"status":"error","code":"007","message":"IP bi chan: 10.0.0.1 \\/ 50% & more"}',
    b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">&lt;SMS&gt;'
    b"&lt;Code&gt;200&lt;/Code&gt;&lt;Message&gt;Sending...&lt;/Message&gt;&lt;/SMS&gt;</string>",
    "Tin nhắn: Mã OTP của bạn là 123456. Cảm ơn quý khách!".encode(),
    b"<html><body>502 Bad Gateway: upstream %7Bapi%7D timed out &mdash; try again</body></html>",
]


@pytest.mark.parametrize("body", ORDINARY)
def test_ordinary_answers_are_shown_as_they_are(body: bytes) -> None:
    redactor = Redactor((TOKEN, "dGhlLWF1dGgtaGVhZGVyLXZhbHVlOng="))
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        decoded = None
    assert_shown(redactor, Answer(body, body.decode(), decoded))


@given(text=st.text(max_size=400))
@_PROPERTY
def test_random_text_without_a_run_of_the_secret_is_shown_unchanged(text: str) -> None:
    # A random 32-character token: any text hypothesis makes holds no 8 of it in a row.
    redactor = Redactor((TOKEN,))
    assert redactor.text(text) is text
    body = json.dumps({"message": text}).encode()
    decoded = msgspec.json.decode(body)
    assert redactor.value(decoded, body) is decoded
    assert redactor.excerpt(text.encode("utf-8", "surrogatepass")) != WITHHELD


# -- the cheap check -----------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# ASCII that is not a letter, a digit or an escape introducer: what the cheap check must see past.
_SEPARATORS = "".join(chr(c) for c in range(32, 127) if chr(c) not in _ALNUM + "\\%&")


@given(
    secret=st.text(alphabet=_ALNUM + "-_ ", min_size=MIN_RUN, max_size=40),
    data=st.data(),
)
@_PROPERTY
def test_the_cheap_check_never_skips_a_string_that_echoes(secret: str, data: st.DataObject) -> None:
    """``value(v, body)`` gives what ``value(v)`` gives: the check of the undecoded body
    skips the walk only when the walk would change nothing."""
    redactor = Redactor((secret,))
    start = data.draw(st.integers(0, len(secret)))
    piece = secret[start : start + data.draw(st.integers(0, len(secret)))]
    # The piece with random separators between its characters and random case.
    echoed = "".join(
        data.draw(st.sampled_from([c.lower(), c.upper()]))
        + data.draw(st.text(alphabet=_SEPARATORS, max_size=2))
        for c in piece
    )
    noise = st.text(alphabet=_ALNUM + _SEPARATORS, max_size=12)
    text = data.draw(noise) + echoed + data.draw(noise)
    body = json.dumps({"message": text, "other": "ok"}).encode()
    decoded = msgspec.json.decode(body)
    assert redactor.value(decoded, body) == redactor.value(decoded)
    assert redactor.text(text) in (text, WITHHELD)


_PIECES = [
    "\\",
    "%4",
    "%",
    "&am",
    "&",
    "&#8",
    "\\u00",
    "\u0301",
    "\xc3",
    "\xe1\xba",
    "\n",
    "é",
    " ",
    "+",
]


@given(
    parts=st.lists(
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(_PIECES),
            st.sampled_from(sorted(ENCODINGS)).map(lambda name: ENCODINGS[name](SECRETS[0])),
            st.sampled_from(["Xq3kP9vL", "m2Rt7Yw1", "Zb5Nc8Hd"]),  # 8 of TOKEN, split apart
        ),
        max_size=12,
    ),
    secret=st.sampled_from([SECRETS[0], TOKEN, "k", "p@ss-12"]),
)
@_PROPERTY
def test_a_decoded_answer_is_redacted_string_by_string(parts: list[str], secret: str) -> None:
    """``value`` decides for each string what ``text`` decides for it alone, though it checks
    them together first (a piece ending in a backslash or a lead byte touches the next)."""
    redactor = Redactor((secret,))
    expected = ["***" if redactor.text(p) == WITHHELD else p for p in parts]
    assert redactor.value(parts) == expected
    body = json.dumps(parts).encode()
    assert redactor.value(msgspec.json.decode(body), body) == expected


def test_an_ordinary_answer_costs_no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path: a success answer echoing nothing is never decoded or walked."""

    def fail(self: Redactor, text: str) -> bool:
        raise AssertionError(f"decoded {text!r}")

    monkeypatch.setattr(Redactor, "_echoes", fail)
    redactor = Redactor((TOKEN, "dGhlLWF1dGgtaGVhZGVyLXZhbHVlOng="))
    for body in ORDINARY[:2]:
        decoded = msgspec.json.decode(body)
        assert redactor.value(decoded, body) is decoded
    assert redactor.text("Sending...") == "Sending..."
    # And an answer that may hide an echo is decoded (the spy sees it).
    with pytest.raises(AssertionError, match="decoded"):
        redactor.value({"m": "a\\u0041"}, b'{"m":"a\\\\u0041"}')


# -- short secrets, as documented on MIN_RUN and RUN ---------------------------------------------


def test_a_long_secret_is_withheld_by_any_run_of_eight() -> None:
    redactor = Redactor((TOKEN,))
    assert RUN == 8
    for start in range(len(TOKEN) - RUN + 1):
        run = TOKEN[start : start + RUN]
        assert redactor.text(f"... {run.lower()} ...") == WITHHELD
        assert redactor.text(f"... {run[:-1]} ...") != WITHHELD  # seven in a row are shown


VIETNAMESE = "Mật khẩu của tôi đẹp 1"  # NFKC skeleton "mtkhucatip1", NFKD "matkhaucuatoidep1"


@pytest.mark.parametrize(
    ("secret", "echo"),
    [
        (VIETNAMESE, VIETNAMESE),
        (VIETNAMESE, "Mat khau cua toi dep 1"),  # unaccented: only the NFKD skeleton sees it
        (VIETNAMESE, "MAT KHAU CUA TOI DEP 1"),
        (VIETNAMESE, "M?t kh?u c?a t?i ??p 1"),  # a charset without them: only NFKC sees it
        (VIETNAMESE, mojibake(VIETNAMESE)),
        (VIETNAMESE, quote_plus(VIETNAMESE)),
        # "đ" has no decomposition: unaccented, it is "d", and the runs need it.
        ("Đinh Đức Đạt 99", "Dinh Duc Dat 99"),
    ],
)
def test_a_vietnamese_password_is_withheld_with_or_without_its_diacritics(
    secret: str, echo: str
) -> None:
    redactor = Redactor((secret,))
    assert redactor.text(f"Sai: {echo}") == WITHHELD
    assert redactor.text("Mật khẩu không đúng") == "Mật khẩu không đúng"


def test_a_secret_of_four_to_seven_letters_and_digits_is_searched_whole() -> None:
    redactor = Redactor(("p@ss-12",))  # skeleton "pss12"
    for shown in ("your p@ss-12 is wrong", "PSS12", "p.s.s.1.2", "p%40ss-12", "xpss12y"):
        assert redactor.text(shown) == WITHHELD, shown
    for fine in ("pss1", "ps-x-s12", "p@ss-13"):
        assert redactor.text(fine) == fine
    # Decoding "%12" would destroy the echo that follows it: the undecoded text counts too.
    assert Redactor(("12p@ss",)).text("id=%12p@ss") == WITHHELD


@pytest.mark.parametrize(
    ("secret", "withheld", "shown"),
    [
        (
            "k",
            ["token=k&x=1", "key: K", "%6B", "&#107;", "é k"],
            ["kilo", "ok", "token=kk", "ok & fine", "kilo: 5%", "ồk", "kỳ"],
        ),
        ("a+1", ["p=a+1&q", "p=a%201", "p=a%2B1", "(a 1)"], ["ba+1", "a+12", "a-1"]),
        (
            "密码",
            ["mật khẩu 密码 sai", "%E5%AF%86%E7%A0%81", "\\u5bc6\\u7801", "å¯\x86ç\xa0\x81"],
            ["密码学", "密", "mật khẩu"],
        ),
        ("!@#$", ["pw=!@#$;", "%21%40%23%24", "x!@#$y"], ["!@#", "!@ #$"]),
        ("&", [], ["a & b", "&amp;", "%26"]),  # 1-3 punctuation characters: not searched
        ("&amp;", ["x=&amp;", "&amp;amp;"], ["a & b", "&lt;"]),
    ],
)
def test_a_secret_of_one_to_three_letters_and_digits_is_matched_as_a_word(
    secret: str, withheld: list[str], shown: list[str]
) -> None:
    redactor = Redactor((secret,))
    for text in withheld:
        assert redactor.text(text) == WITHHELD, text
    for text in shown:
        assert redactor.text(text) == text, text


def test_no_secret_withholds_nothing_and_says_nothing() -> None:
    redactor = Redactor(("", ""))
    assert redactor.text("anything") == "anything"
    decoded = {"a": "b"}
    assert redactor.value(decoded, b'{"a":"b"}') is decoded
    assert repr(Redactor((TOKEN,))) == "Redactor(1 secrets)"


def test_an_excerpt_shows_the_start_of_a_clean_body_and_withholds_a_late_echo() -> None:
    redactor = Redactor((TOKEN,))
    clean = b"x" * 1000
    assert redactor.excerpt(clean) == repr("x" * EXCERPT + "...")
    # An echo that starts inside the excerpt and is cut by it is still seen whole.
    cut = b"y" * (EXCERPT - 4) + quote(TOKEN).encode()
    assert redactor.excerpt(cut) == WITHHELD


def test_the_redacted_value_keeps_its_types() -> None:
    class Data(msgspec.Struct):
        note: str
        items: list[str]
        count: int

    redactor = Redactor((TOKEN,))
    body = json.dumps({"note": f"echo {quote(TOKEN)}", "items": ["a", TOKEN], "count": 3})
    data = msgspec.json.decode(body, type=Data)
    redacted = redactor.value(data, body.encode())
    assert redacted == Data(note="***", items=["a", "***"], count=3)
    assert isinstance(redacted, Data)
