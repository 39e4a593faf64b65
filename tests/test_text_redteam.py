"""Red-team checks of content fidelity and cost: what each client refuses, encodes and estimates,
against the vendors' documents (``/work/shared/seeds``) and the README's promises.

Tests whose docstring starts with "Finding:" fail on the code they were written against."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from smsvn import ESMS, Fibo, SpeedSMS, text
from smsvn.errors import ValidationError
from smsvn.providers import esms, fibo, speedsms
from smsvn.sandbox import Sandbox
from tests.conftest import FAST_RETRY, SENTINEL_TOKEN, sent_body
from tests.test_cli_numbers import run

SPEEDSMS_SEND = "https://api.speedsms.vn/index.php/sms/send"


def _speedsms_ok() -> dict[str, Any]:
    return {"status": "success", "code": "00", "data": {"tranId": 1, "totalSMS": 1}}


def _sent_contents(mocked: aioresponses) -> list[str]:
    calls = mocked.requests.get(("POST", URL(SPEEDSMS_SEND)), [])
    return [json.loads(sent_body(call))["content"] for call in calls]


# --- strip_diacritics=True on SpeedSMS ---------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "Giá chỉ 100.000₫ hôm nay",  # the Vietnamese currency sign
        "Mã OTP của bạn là “123456”",  # smart quotes from a word processor
        "Mã\u00a0OTP của bạn là 123456",  # a non-breaking space
        "\ufeffMã OTP của bạn là 123456",  # a BOM left from a UTF-8 file
    ],
)
async def test_speedsms_strip_diacritics_never_sends_unicode_silently(
    mocked: aioresponses, content: str
) -> None:
    """Finding: SpeedSMS.send's own docstring promises "``strip_diacritics=True`` sends the plain
    (GSM-7, cheaper) form instead", and the README ("Vietnamese text and cost") says
    "`strip_diacritics=True` sends the plain form". For eSMS and Fibo a stripped content that
    still needs Unicode is refused with a ValidationError; SpeedSMS sends it as UCS-2 without a
    word: ₫, smart quotes, NBSP or a BOM survive ``strip_diacritics`` and silently keep the
    70/67-character encoding the user asked to avoid (2-3x the cost). Root cause:
    ``speedsms._check_content`` never checks that the stripped content is GSM-7 (eSMS's and
    Fibo's ``_prepare`` do)."""
    mocked.post(SPEEDSMS_SEND, payload=_speedsms_ok(), repeat=True)
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, retry=FAST_RETRY) as sms:
        try:
            await sms.send("0912345678", content, strip_diacritics=True)
        except ValidationError:
            return  # refused, as eSMS and Fibo do: acceptable
    (sent,) = _sent_contents(mocked)
    assert text.segments(sent).encoding is text.Encoding.GSM7, (sent, text.segments(sent))


# --- C1 control characters ---------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x80", "\x85", "\x93", "\x94", "\x9f"])
def test_c1_control_characters_are_not_encodable(char: str) -> None:
    """Finding: ``text.is_encodable`` says it is "True unless ``content`` has control
    characters (other than tab, LF, FF, CR) or lone surrogates, which ... providers refuse",
    and the README promises "Content a provider would refuse — control characters, ... — is
    refused locally with a ValidationError". The C1 controls U+0080-U+009F (Unicode category
    Cc; what Windows-1252 smart quotes and "…" become when a file is decoded as Latin-1) pass.
    Root cause: ``text._UNENCODABLE`` lists only C0 controls and DEL."""
    assert not text.is_encodable(f"Ma OTP {char}123456")


@pytest.mark.parametrize("provider", ["speedsms", "esms", "fibo"])
async def test_c1_control_characters_are_refused_before_sending(sb: Sandbox, provider: str) -> None:
    """Finding: same promise as above ("control characters ... refused locally with a
    ValidationError", README "Vietnamese text and cost"): every client sends
    "Ma OTP \\x93123456\\x94" (Latin-1-decoded Windows-1252 quotes) to the provider, as UCS-2.
    Root cause: ``providers._base.checked_content`` relies on ``text.is_encodable``, whose
    ``_UNENCODABLE`` pattern stops at U+001F/U+007F."""
    async with sb.client(provider, rate_limit=None, retry=FAST_RETRY) as client:
        with pytest.raises(ValidationError):
            await client.send("0912345678", "Ma OTP \x93123456\x94")


# --- the CLI's estimate before sending ----------------------------------------------------------


def test_cli_send_estimate_counts_each_recipient_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: the README promises "The CLI's `send` and `bulk` print the segment count and the
    estimated cost before sending" and "The estimate counts segments as the provider's client
    will send the text". ``smsvn send --to 0912345678 --to "+84 912 345 678"`` estimates
    2 recipients (500 VND) and then sends to one number (cost 250 VND): the client normalises
    and de-duplicates the numbers, the estimate does not (an invalid number is counted too).
    Root cause: ``cli._estimate_line(args, len(args.to))`` in ``cli._cmd_send`` counts the raw
    ``--to`` values instead of ``split_recipients(args.to).valid``."""
    argv = ["send", "--sandbox", "-p", "speedsms", "-m", "Chào bạn", "--price", "250",
            "--to", "0912345678", "--to", "+84 912 345 678"]  # fmt: skip
    assert run(argv) == 0
    out = capsys.readouterr().out
    estimate, *rest = out.splitlines()
    assert "cost 250 VND" in rest  # what was sent: one message of one segment
    assert "1 recipient;" in estimate, estimate
    assert "estimated cost 250 VND" in estimate, estimate


# --- guards: the estimate is what the client sends ----------------------------------------------

_ALPHABET = "aàáạăắâấđeêếoôơờuưứyỳ AZ09{€`\n’₫\u00a0\u200b😀e\u0302\u0301"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, min_size=1, max_size=400), st.booleans())
def test_count_segments_is_what_each_client_sends(content: str, strip: bool) -> None:
    """Guard: ``count_segments`` (the CLI's estimate) agrees with the encoding and segments
    each client's send path prepares, for NFC and NFD Vietnamese, GSM-7 extension characters,
    emoji, invisible characters, with and without ``strip_diacritics``."""
    prepared: list[tuple[str, type[Any], Any]] = [
        ("speedsms", SpeedSMS, lambda: text.segments(speedsms._prepare(content, strip))),
        ("esms", ESMS, lambda: esms._prepare(content, None, strip, "send")),
        ("fibo", Fibo, lambda: fibo._prepare(content, None, strip)),
    ]
    for name, cls, prepare in prepared:
        estimate = cls.count_segments(content, strip_diacritics=strip)
        try:
            sent = prepare()
        except ValidationError:
            continue
        if name == "speedsms":
            assert (sent.encoding, sent.segments) == (estimate.encoding, estimate.segments)
        else:
            assert sent.segments == estimate.segments, name
            assert estimate.unicode == (sent[1] == "1"), name  # IsUnicode / serviceType


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=335))
def test_speedsms_ascii_fast_path_is_within_five_segments(content: str) -> None:
    """Guard: ``speedsms._prepare`` lets printable ASCII of up to 335 characters through
    unchecked; whatever it holds (escape pairs, a backtick forcing UCS-2) it fits the 5
    segments the full check allows."""
    assert text.segments(content).segments <= speedsms.MAX_SEGMENTS


async def test_speedsms_limit_refuses_an_escape_pair_straddling_segments(
    mocked: aioresponses,
) -> None:
    """Guard: 765 septets, but the escape pair of the € would straddle segments 1 and 2, so the
    content takes 6 segments and is refused locally (SpeedSMS: "113: Sms content too long",
    001_13f1852ecf3ccc04.txt); the same length without the straddle is sent."""
    straddling = "a" * 152 + "€" + "a" * 611
    fitting = "a" * 151 + "€" + "a" * 612
    assert text.segments(straddling).characters == text.segments(fitting).characters == 765
    mocked.post(SPEEDSMS_SEND, payload=_speedsms_ok(), repeat=True)
    async with SpeedSMS(SENTINEL_TOKEN, rate_limit=None, retry=FAST_RETRY) as sms:
        with pytest.raises(ValidationError, match="113"):
            await sms.send("0912345678", straddling)
        await sms.send("0912345678", fitting)
    assert _sent_contents(mocked) == [fitting]
