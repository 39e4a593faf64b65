"""The single-send fast paths (issue #12, item 5) give what the general paths give."""

from __future__ import annotations

import random
import string
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from smsvn import phone
from smsvn.errors import ValidationError
from smsvn.providers import speedsms
from smsvn.providers._base import split_recipients
from smsvn.transport import Response

_PREFIXES = sorted(phone._PREFIX_CARRIER)


def _outcome(fn: object, *args: object) -> tuple[str, str]:
    try:
        return ("ok", fn(*args))  # type: ignore[operator]
    except ValidationError as exc:
        return ("error", exc.message)


def test_normalize_84_form_matches_the_general_path() -> None:
    rng = random.Random(12)
    inputs = [f"84{a}{b}{rng.randrange(10**7):07d}" for a in "0123456789" for b in "0123456789"]
    inputs += ["84" + p[1:] + "1234567" for p in _PREFIXES]
    inputs += [
        "".join(rng.choice("0123456789") for _ in range(rng.randrange(9, 14))) for _ in range(3000)
    ]
    inputs += ["84" + "".join(rng.choice("0123456789") for _ in range(9)) for _ in range(3000)]
    for number in inputs:
        assert _outcome(phone.normalize, number) == _outcome(phone._normalize_slow, number), number


def test_normalize_84_form_of_a_str_subclass_is_a_plain_str() -> None:
    class Number(str):
        pass

    out = phone.normalize(Number("84912345678"))
    assert out == "0912345678" and type(out) is str


def _printable_ascii(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(string.printable[:95]) for _ in range(size))


@pytest.mark.parametrize(
    "content",
    [
        "x",
        "Ma OTP cua ban la 4821",
        "{" * 335,  # every character an escape pair in GSM-7: 670 septets
        "`" * 335,  # not in GSM-7: UCS-2, 5 x 67
        "`" * 336,
        "{" * 336,
        "a" * 765,
        "a" * 766,
        "",
        "tab\there",
        "Chào bạn",
    ],
)
def test_prepare_fast_path_matches_every_check(content: str) -> None:
    for strip in (False, True):
        speedsms._PREPARED.clear()
        fast = _outcome(speedsms._prepare, content, strip)
        assert fast == _outcome(speedsms._check_content, content, strip)
        assert _outcome(speedsms._prepare, content, strip) == fast  # from the cache, if kept


def test_prepare_matches_on_random_contents() -> None:
    rng = random.Random(5)
    alphabet = string.printable + "àáạảãâầấậẩẫăằắặẳẵèéẹẻẽđ€😀\x00\x7f"
    for _ in range(3000):
        size = rng.choice((rng.randrange(0, 40), rng.randrange(300, 800)))
        content = (
            _printable_ascii(rng, size)
            if rng.random() < 0.5
            else "".join(rng.choice(alphabet) for _ in range(size))
        )
        strip = rng.random() < 0.3
        assert _outcome(speedsms._prepare, content, strip) == _outcome(
            speedsms._check_content, content, strip
        ), content


def test_prepare_cache_is_bounded() -> None:
    speedsms._PREPARED.clear()
    for i in range(speedsms._PREPARED_MAX * 3):
        speedsms._prepare(f"Chào bạn {i}", False)
    assert len(speedsms._PREPARED) <= speedsms._PREPARED_MAX


@pytest.mark.parametrize(
    "number", ["0912345678", "84912345678", "+84 912 345 678", "01623456789", "123", "0212345678"]
)
def test_split_one_number_matches_a_one_tuple(number: str) -> None:
    one, tup = split_recipients(number), split_recipients((number,))
    assert one.valid == tup.valid
    assert [(str(n), n.reason) for n in one.invalid] == [(str(n), n.reason) for n in tup.invalid]
    assert {n: one.given.get(n, n) for n in one.valid} == {
        n: tup.given.get(n, n) for n in tup.valid
    }


@pytest.mark.parametrize(
    ("data", "walked"),
    [
        (b'{"tranId": 123, "totalSMS": 1, "totalPrice": 250}', False),
        (b'{"tranId": "abc"}', True),
        (b'{"tranId": 1, "invalidPhone": ["84912345678"]}', True),
        (b'{"tranId": 1, "invalidPhone": [84912345678]}', True),
    ],
)
def test_send_answer_without_strings_skips_the_redactor(
    monkeypatch: pytest.MonkeyPatch, data: bytes, walked: bool
) -> None:
    """Only an answer holding a string goes through the redactor (the usual one, all numbers,
    is returned as decoded)."""
    client = speedsms.SpeedSMS("t" * 32, rate_limit=None)
    calls: list[object] = []
    redactor = type(client._transport.redactor)
    original = redactor.value

    def value(self: Any, item: Any, body: bytes) -> Any:
        calls.append(item)
        return original(self, item, body)

    monkeypatch.setattr(redactor, "value", value)
    body = b'{"status": "success", "code": "00", "data": ' + data + b"}"
    headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
    parsed = client._parse(Response(200, headers, body, 1), speedsms._SEND, "sms/send")
    assert isinstance(parsed, speedsms._SendData)
    assert bool(calls) is walked


_DIGITS_OR_NOT = st.text(alphabet="0123456789,+ 8x", min_size=0, max_size=12)
_CANONICAL = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(_PREFIXES),
    st.text(alphabet="0123456789", min_size=7, max_size=7),
)


@given(st.lists(st.one_of(_CANONICAL, _CANONICAL, _DIGITS_OR_NOT), max_size=12))
def test_the_batch_check_agrees_with_normalize_one_by_one(numbers: list[str]) -> None:
    """``_all_canonical`` says yes exactly when ``normalize`` returns every item unchanged."""
    one_by_one = bool(numbers) and all(
        _outcome(phone.normalize, n) == ("ok", n) and type(n) is str for n in numbers
    )
    assert phone._all_canonical(numbers) is one_by_one


def test_the_batch_check_refuses_str_subclasses_and_non_strings() -> None:
    class Number(str):
        pass

    assert phone._all_canonical(["0912345678", "0987654321"])
    assert not phone._all_canonical(["0912345678", Number("0987654321")])
    assert not phone._all_canonical(["0912345678", 912345678])
    assert not phone._all_canonical(["0912345678,0987654321"])
    assert not phone._all_canonical([])


@given(st.lists(_CANONICAL, max_size=100))
@example(["0912345678"])  # a send of one number builds its list in ``_send`` instead
@example([])
def test_the_speedsms_array_is_the_international_forms(numbers: list[str]) -> None:
    assert msgspec.json.decode(speedsms._to_array(numbers)) == ["84" + n[1:] for n in numbers]
