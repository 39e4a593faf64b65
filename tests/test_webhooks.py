"""Webhook parsers, the forward-only tracker and the aiohttp receiver over loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict, MultiDictProxy

from smsvn import providers, webhooks
from smsvn.errors import ValidationError
from smsvn.models import CallReport, CallStatus, DeliveryReport, DeliveryState, InboundSms
from smsvn.providers import esms, speedsms
from smsvn.webhooks import (
    TRACKER_KEY,
    DeliveryTracker,
    Event,
    MaskedAccessLogger,
    SpeedSmsInbound,
    SpeedSmsReport,
    callback_url,
    new_secret,
    parse_esms,
    parse_speedsms,
)

SECRET = "primary-SENTINEL-0123456789"
OLD_SECRET = "rotated-SENTINEL-9876543210"
WRONG = "wrong-secret-value-000000000"

Client = TestClient[web.Request, web.Application]


def speedsms_body(**fields: Any) -> bytes:
    """A SpeedSMS delivery report body, with fields overridden or removed (value None)."""
    body: dict[str, Any] = {"type": "report", "tranId": 1234, "phone": "0912345678", "status": 0}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def esms_sms(**fields: str | None) -> dict[str, str]:
    """An eSMS SMS delivery callback query, with fields overridden or removed (value None)."""
    query: dict[str, str | None] = {
        "SMSID": "8eb2af6d-fb4c-4814-b9cc-4c0e3ed32edf",
        "SendFailed": "0",
        "SendStatus": "5",
        "SendSuccess": "1",
        "TotalPrice": "650",
        "TypeId": "2",
        "telcoid": "1",
        "phonenumber": "84912345678",
    }
    query.update(fields)
    return {k: v for k, v in query.items() if v is not None}


def esms_call(**fields: str | None) -> dict[str, str]:
    """An eSMS voice-call callback query, with fields overridden or removed (value None)."""
    query: dict[str, str | None] = {
        "ReferenceId": "ref-42",
        "CallDuration": "24",
        "CallStatus": "ANSWERED",
        "Ivr": "2",
        "Price": "800",
        "SentResult": "1",
        "CID": "02471001234",
    }
    query.update(fields)
    return {k: v for k, v in query.items() if v is not None}


class Recorder:
    """A handler that records events, can be made to fail, and can be held until released."""

    def __init__(self, failures: int = 0) -> None:
        self.events: list[Event] = []
        self.failures = failures
        self.entered = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.entered.set()
        if self.release is not None:
            await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database down")


@contextlib.asynccontextmanager
async def serve(application: web.Application, **runner: Any) -> AsyncIterator[Client]:
    """A TestClient on a 127.0.0.1 TestServer (runner options such as access_log_class)."""
    server = TestServer(application, host="127.0.0.1")
    await server.start_server(**runner)
    client: Client = TestClient(server)
    try:
        await client.start_server()
        yield client
    finally:
        await client.close()


# --------------------------------------------------------------------------------------------
# parse_speedsms


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (0, DeliveryState.DELIVERED),
        (1, DeliveryState.TEMPORARY_FAILURE),
        (63, DeliveryState.TEMPORARY_FAILURE),
        (64, DeliveryState.FAILED),
        (69, DeliveryState.FAILED),
    ],
)
def test_speedsms_report_states(status: int, state: DeliveryState) -> None:
    report = parse_speedsms(speedsms_body(status=status))
    assert isinstance(report, DeliveryReport)
    assert report.provider == "speedsms"
    assert report.message_id == "1234"
    assert report.phone == "0912345678"
    assert report.state is state
    assert report.raw_status == str(status)
    assert report.cost is None
    assert isinstance(report.raw, SpeedSmsReport)


@pytest.mark.parametrize("tran_id", [1234, "1234", " 1234 "])
def test_speedsms_tran_id_int_or_string(tran_id: int | str) -> None:
    report = parse_speedsms(speedsms_body(tranId=tran_id))
    assert isinstance(report, DeliveryReport)
    assert report.message_id == "1234"


def test_speedsms_opaque_string_tran_id_kept() -> None:
    report = parse_speedsms(speedsms_body(tranId="abc-0001"))
    assert isinstance(report, DeliveryReport)
    assert report.message_id == "abc-0001"


@pytest.mark.parametrize(("status", "raw"), [("69", "69"), (" 0 ", "0"), ("064", "64")])
def test_speedsms_numeric_string_status(status: str, raw: str) -> None:
    report = parse_speedsms(speedsms_body(status=status))
    assert isinstance(report, DeliveryReport)
    assert report.raw_status == raw
    assert report.state is (DeliveryState.DELIVERED if raw == "0" else DeliveryState.FAILED)


def test_speedsms_phone_normalised() -> None:
    report = parse_speedsms(speedsms_body(phone="+84 912 345 678"))
    assert report.phone == "0912345678"


def test_speedsms_inbound_sms() -> None:
    body = json.dumps({"type": "sms", "phone": "84912345678", "content": "Đồng ý"}).encode()
    sms = parse_speedsms(body)
    assert isinstance(sms, InboundSms)
    assert sms.provider == "speedsms"
    assert sms.phone == "0912345678"
    assert sms.content == "Đồng ý"
    assert isinstance(sms.raw, SpeedSmsInbound)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(speedsms_body(type="mo"), id="unknown-type"),
        pytest.param(speedsms_body(type=None), id="missing-type"),
        pytest.param(speedsms_body(tranId=None), id="missing-tranId"),
        pytest.param(speedsms_body(phone=None), id="missing-phone"),
        pytest.param(speedsms_body(status=None), id="missing-status"),
        pytest.param(b'{"type": "sms", "phone": "0912345678"}', id="sms-missing-content"),
        pytest.param(b'{"type": "report", ', id="truncated-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="garbage"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"report"', id="string"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(speedsms_body(phone="12345"), id="bad-phone"),
        pytest.param(speedsms_body(phone="02438251234"), id="landline"),
        pytest.param(speedsms_body(phone=912345678), id="phone-number-type"),
        pytest.param(speedsms_body(status="abc"), id="status-text"),
        pytest.param(speedsms_body(status="-1"), id="status-negative-string"),
        pytest.param(speedsms_body(status=-1), id="status-negative"),
        pytest.param(speedsms_body(status=1.5), id="status-float"),
        pytest.param(speedsms_body(status=True), id="status-bool"),
        pytest.param(speedsms_body(status="9" * 40), id="status-huge"),
        pytest.param(speedsms_body(tranId=""), id="tranId-empty"),
        pytest.param(speedsms_body(tranId="x" * 300), id="tranId-too-long"),
        pytest.param(speedsms_body(tranId=12.5), id="tranId-float"),
        pytest.param(speedsms_body(tranId=[1]), id="tranId-list"),
    ],
)
def test_speedsms_malformed(body: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        parse_speedsms(body)
    assert info.value.provider == "speedsms"


def test_speedsms_error_text_is_bounded() -> None:
    with pytest.raises(ValidationError) as info:
        parse_speedsms(speedsms_body(type="x" * 10_000))
    assert len(str(info.value)) < 400


@given(st.binary(max_size=512))
def test_speedsms_arbitrary_bytes(body: bytes) -> None:
    try:
        result = parse_speedsms(body)
    except ValidationError:
        return
    assert isinstance(result, DeliveryReport | InboundSms)


_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["report", "sms", "0912345678", "84912345678", "0", "69"]),
    st.lists(st.integers(), max_size=2),
)


@given(
    st.dictionaries(
        st.sampled_from(["type", "tranId", "phone", "status", "content", "extra"]),
        _json_values,
    )
)
def test_speedsms_arbitrary_objects(body: dict[str, Any]) -> None:
    try:
        result = parse_speedsms(json.dumps(body).encode())
    except ValidationError:
        return
    assert isinstance(result, DeliveryReport | InboundSms)


# --------------------------------------------------------------------------------------------
# parse_esms


def test_esms_sms_delivered() -> None:
    report = parse_esms(esms_sms())
    assert isinstance(report, DeliveryReport)
    assert report.provider == "esms"
    assert report.message_id == "8eb2af6d-fb4c-4814-b9cc-4c0e3ed32edf"
    assert report.phone == "0912345678"
    assert report.state is DeliveryState.DELIVERED
    assert report.raw_status == "5"
    assert report.cost == 650.0
    assert report.raw == esms_sms()


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"SendSuccess": "0", "SendFailed": "1"}, DeliveryState.FAILED),
        ({"SendSuccess": "0", "SendStatus": "4"}, DeliveryState.FAILED),
        ({"SendSuccess": "0", "SendStatus": "6"}, DeliveryState.FAILED),
        ({"SendSuccess": "0", "SendStatus": "1"}, DeliveryState.PENDING),
        ({"SendSuccess": "0", "SendStatus": "2"}, DeliveryState.PENDING),
        ({"SendSuccess": "0", "SendStatus": "3"}, DeliveryState.PENDING),
        ({"SendSuccess": "0", "SendStatus": "5"}, DeliveryState.PENDING),
        ({"SendSuccess": None, "SendFailed": None, "SendStatus": "2"}, DeliveryState.PENDING),
        ({"SendSuccess": "1", "SendFailed": "1"}, DeliveryState.DELIVERED),
    ],
)
def test_esms_sms_states(fields: dict[str, str | None], state: DeliveryState) -> None:
    report = parse_esms(esms_sms(**fields))
    assert isinstance(report, DeliveryReport)
    assert report.state is state
    assert report.raw_status == esms_sms(**fields)["SendStatus"]


def test_esms_sms_optional_price_and_key_variants() -> None:
    query = esms_sms(TotalPrice=None, phonenumber=None)
    query["PhoneNumber"] = "0912345678"
    report = parse_esms(query)
    assert isinstance(report, DeliveryReport)
    assert report.cost is None
    assert report.phone == "0912345678"
    assert parse_esms(esms_sms(TotalPrice="")).cost is None  # type: ignore[union-attr]


def test_esms_sms_padded_id_stripped() -> None:
    report = parse_esms(esms_sms(SMSID=" 24342680 "))
    assert isinstance(report, DeliveryReport)
    assert report.message_id == "24342680"


def test_esms_accepts_multidict_proxy() -> None:
    query = MultiDictProxy(MultiDict([*esms_sms().items(), ("SMSID", "second-ignored")]))
    report = parse_esms(query)
    assert isinstance(report, DeliveryReport)
    assert report.message_id == "8eb2af6d-fb4c-4814-b9cc-4c0e3ed32edf"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(esms_sms(phonenumber=None), id="missing-phone"),
        pytest.param(esms_sms(SendStatus=None), id="missing-status"),
        pytest.param(esms_sms(SendStatus="abc"), id="status-text"),
        pytest.param(esms_sms(SendStatus="9", SendSuccess="0"), id="status-unknown"),
        pytest.param(esms_sms(SendStatus="0", SendSuccess="0"), id="status-zero"),
        pytest.param(esms_sms(SendSuccess="-1"), id="success-negative"),
        pytest.param(esms_sms(SendFailed="x"), id="failed-text"),
        pytest.param(esms_sms(TotalPrice="abc"), id="price-text"),
        pytest.param(esms_sms(TotalPrice="nan"), id="price-nan"),
        pytest.param(esms_sms(TotalPrice="-5"), id="price-negative"),
        pytest.param(esms_sms(TotalPrice="1e999"), id="price-infinite"),
        pytest.param(esms_sms(phonenumber="abc"), id="bad-phone"),
        pytest.param(esms_sms(SMSID=""), id="empty-id"),
        pytest.param(esms_sms(SMSID="x" * 300), id="long-id"),
        pytest.param({}, id="empty"),
        pytest.param({"foo": "bar"}, id="neither-id"),
    ],
)
def test_esms_sms_malformed(query: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        parse_esms(query)
    assert info.value.provider == "esms"


def test_esms_call_answered() -> None:
    report = parse_esms(esms_call())
    assert isinstance(report, CallReport)
    assert report.provider == "esms"
    assert report.reference_id == "ref-42"
    assert report.status is CallStatus.ANSWERED
    assert report.duration == 24
    assert report.ivr == "2"
    assert report.price == 800.0
    assert report.sent is True
    assert report.caller_id == "02471001234"
    assert report.raw == esms_call()


@pytest.mark.parametrize("status", ["NO ANSWER", "NOANSWERED", "no answer", "NO_ANSWER"])
def test_esms_call_no_answer(status: str) -> None:
    report = parse_esms(esms_call(CallStatus=status, CallDuration="0", SentResult="0"))
    assert isinstance(report, CallReport)
    assert report.status is CallStatus.NO_ANSWER
    assert report.duration == 0
    assert report.sent is False


def test_esms_call_empty_and_unknown_fields() -> None:
    report = parse_esms(
        esms_call(CallStatus="BUSY", CallDuration="", Ivr="", Price="", SentResult="", CID="")
    )
    assert isinstance(report, CallReport)
    assert report.status is CallStatus.UNKNOWN
    assert (report.duration, report.ivr, report.price, report.sent, report.caller_id) == (
        None,
        None,
        None,
        None,
        None,
    )
    # No status yet is PENDING, as in ESMS.call_status(): one table, one rule.
    for query in ({"ReferenceId": "r1"}, {"ReferenceId": "r1", "CallStatus": " "}):
        missing = parse_esms(query)
        assert isinstance(missing, CallReport)
        assert missing.status is CallStatus.PENDING


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("ANSWERED", CallStatus.ANSWERED),
        ("answered", CallStatus.ANSWERED),
        ("NO ANSWER", CallStatus.NO_ANSWER),
        ("NO ANSWERED", CallStatus.NO_ANSWER),
        ("NOANSWER", CallStatus.NO_ANSWER),
        ("NOANSWERED", CallStatus.NO_ANSWER),
        ("no_answer", CallStatus.NO_ANSWER),
        (" No  Answer ", CallStatus.NO_ANSWER),
        ("PENDING", CallStatus.PENDING),
        ("", CallStatus.PENDING),
        (None, CallStatus.PENDING),
        ("BUSY", CallStatus.UNKNOWN),
    ],
)
def test_esms_call_status_same_in_callback_and_rest(value: str | None, status: CallStatus) -> None:
    assert esms._call_status(value) is status
    report = parse_esms(esms_call(CallStatus=value))
    assert isinstance(report, CallReport)
    assert report.status is status


def test_esms_call_lowercase_keys() -> None:
    report = parse_esms(
        {"referenceid": "r1", "callduration": "12.0", "callstatus": "ANSWERED", "ivr": "1"}
    )
    assert isinstance(report, CallReport)
    assert (report.reference_id, report.duration, report.status) == ("r1", 12, CallStatus.ANSWERED)


def test_esms_call_or_sms_when_both_ids() -> None:
    call = parse_esms({**esms_call(), "SMSID": "abc"})
    assert isinstance(call, CallReport)
    sms = parse_esms({**esms_sms(), "ReferenceId": "abc"})
    assert isinstance(sms, DeliveryReport)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(esms_call(CallDuration="long"), id="duration-text"),
        pytest.param(esms_call(CallDuration="-3"), id="duration-negative"),
        pytest.param(esms_call(Price="inf"), id="price-infinite"),
        pytest.param(esms_call(Price="１２"), id="price-fullwidth"),
        pytest.param(esms_call(SentResult="2"), id="sent-result-2"),
        pytest.param(esms_call(ReferenceId="  "), id="blank-reference"),
    ],
)
def test_esms_call_malformed(query: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        parse_esms(query)


_esms_keys = st.sampled_from(
    [
        "SMSID",
        "SendStatus",
        "SendSuccess",
        "SendFailed",
        "TotalPrice",
        "phonenumber",
        "ReferenceId",
        "CallDuration",
        "CallStatus",
        "Ivr",
        "Price",
        "SentResult",
        "CID",
    ]
)
_esms_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["0", "1", "5", "84912345678", "ANSWERED", "1e3", "nan", "-1", ""]),
)


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=30)))
def test_esms_arbitrary_dicts(query: dict[str, str]) -> None:
    try:
        result = parse_esms(query)
    except ValidationError:
        return
    assert isinstance(result, DeliveryReport | CallReport)


@given(st.dictionaries(_esms_keys, _esms_values))
def test_esms_arbitrary_callbacks(query: dict[str, str]) -> None:
    try:
        result = parse_esms(query)
    except ValidationError:
        return
    assert isinstance(result, DeliveryReport | CallReport)


# --------------------------------------------------------------------------------------------
# DeliveryTracker


def _report(state: DeliveryState, message_id: str = "m1", raw: str = "0") -> DeliveryReport:
    return DeliveryReport(
        provider="speedsms", message_id=message_id, phone="0912345678", state=state, raw_status=raw
    )


def test_tracker_moves_forward_only() -> None:
    tracker = DeliveryTracker()
    assert tracker.state("speedsms", "m1", "0912345678") is None
    assert tracker.history("speedsms", "m1", "0912345678") == ()
    assert tracker.record(_report(DeliveryState.PENDING)) is DeliveryState.PENDING
    assert tracker.record(_report(DeliveryState.TEMPORARY_FAILURE, raw="5")) is (
        DeliveryState.TEMPORARY_FAILURE
    )
    assert tracker.record(_report(DeliveryState.DELIVERED)) is DeliveryState.DELIVERED
    late = _report(DeliveryState.TEMPORARY_FAILURE, raw="7")
    assert tracker.record(late) is DeliveryState.DELIVERED
    assert tracker.record(_report(DeliveryState.FAILED, raw="69")) is DeliveryState.DELIVERED
    assert tracker.state("speedsms", "m1", "0912345678") is DeliveryState.DELIVERED
    history = tracker.history("speedsms", "m1", "0912345678")
    assert [r.state for r in history] == [
        DeliveryState.PENDING,
        DeliveryState.TEMPORARY_FAILURE,
        DeliveryState.DELIVERED,
        DeliveryState.TEMPORARY_FAILURE,
        DeliveryState.FAILED,
    ]
    assert history[3] is late


def test_tracker_failed_is_final() -> None:
    tracker = DeliveryTracker()
    tracker.record(_report(DeliveryState.FAILED, raw="69"))
    assert tracker.record(_report(DeliveryState.DELIVERED)) is DeliveryState.FAILED


def test_tracker_counts_and_eviction() -> None:
    tracker = DeliveryTracker(max_entries=2)
    tracker.record(_report(DeliveryState.PENDING, "a"))
    tracker.record(_report(DeliveryState.DELIVERED, "b"))
    tracker.record(_report(DeliveryState.DELIVERED, "a"))  # a is now the most recent
    assert tracker.counts() == {
        DeliveryState.PENDING: 0,
        DeliveryState.TEMPORARY_FAILURE: 0,
        DeliveryState.DELIVERED: 2,
        DeliveryState.FAILED: 0,
    }
    tracker.record(_report(DeliveryState.FAILED, "c"))  # evicts b, the least recently updated
    assert len(tracker) == 2
    assert tracker.state("speedsms", "b", "0912345678") is None
    assert tracker.state("speedsms", "a", "0912345678") is DeliveryState.DELIVERED
    assert tracker.counts()[DeliveryState.DELIVERED] == 1
    assert tracker.counts()[DeliveryState.FAILED] == 1
    assert "entries=2" in repr(tracker)


def test_tracker_rejects_zero_capacity() -> None:
    with pytest.raises(ValidationError):
        DeliveryTracker(max_entries=0)


def test_deduplicator_expiry_and_cap() -> None:
    now = [100.0]
    dedup = webhooks._Deduplicator(10.0, 2, clock=lambda: now[0])
    key = ("speedsms", "1", "0912345678", "0", "delivered")
    assert not dedup.seen(key)
    dedup.add(key)
    assert dedup.seen(key)
    now[0] = 110.0
    assert not dedup.seen(key)
    keys = [("esms", str(i), "", "", "") for i in range(3)]
    for k in keys:
        dedup.add(k)
    assert not dedup.seen(keys[0])
    assert dedup.seen(keys[1])
    assert dedup.seen(keys[2])


# --------------------------------------------------------------------------------------------
# The application


def _hooks(handler: Callable[[Event], Any] | None = None, **options: Any) -> web.Application:
    options.setdefault("secret", SECRET)
    return webhooks.app(handler or Recorder(), **options)


def _toy_parse(body: bytes, query: Mapping[str, str]) -> Event:
    """A toy provider's callback: the body is the reply text, ``?from=`` the phone number."""
    if not body:
        raise ValidationError("empty", provider="toyhooks", endpoint="webhook")
    return InboundSms(provider="toyhooks", phone=query.get("from", ""), content=body.decode())


@pytest.fixture
def toy() -> Iterator[providers.Provider]:
    """A provider registered for one test, whose callbacks are PUT or POST."""
    spec = providers.register(
        providers.Provider(
            name="toyhooks",
            title="Toy",
            client=speedsms.SpeedSMS,
            credentials=(),
            price=0.0,
            unit="VND",
            simulator="tests.nowhere:Toy",
            webhook=providers.Webhook(methods=("put", "POST"), parse=_toy_parse),
        )
    )
    try:
        yield spec
    finally:
        providers.unregister(spec.name)


async def test_routes_come_from_the_registry(
    toy: providers.Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    recorder = Recorder()
    application = _hooks(recorder)
    names = {r.name for r in application.router.resources()}
    assert names == {"smsvn-speedsms", "smsvn-esms", "smsvn-toyhooks"}  # Fibo makes no callbacks
    async with serve(application) as client:
        url = callback_url(str(client.make_url("/")), "ToyHooks", SECRET)
        assert url.endswith(f"/toyhooks/{SECRET}")
        resp = await client.session.put(url, data=b"YES", params={"from": "0912345678"})
        assert resp.status == 200
        resp = await client.get(f"/toyhooks/{SECRET}")
        assert resp.status == 405
        assert resp.headers["Allow"] == "PUT, POST"
        resp = await client.post(f"/toyhooks/{SECRET}", data=b"")
        assert resp.status == 400
        resp = await client.put(f"/toyhooks/{WRONG}", data=b"YES")
        assert resp.status == 404
    assert recorder.events == [InboundSms(provider="toyhooks", phone="0912345678", content="YES")]
    assert not _leaks(caplog.records, "SENTINEL")
    assert "/toyhooks/***" in caplog.text
    providers.unregister(toy.name)
    assert "smsvn-toyhooks" not in {r.name for r in _hooks().router.resources()}
    with pytest.raises(ValidationError):
        callback_url("https://example.com", "toyhooks", SECRET)
    assert "SENTINEL" in webhooks._mask(f"/toyhooks/{SECRET}")  # no longer a webhook route


def test_registry_parsers_are_the_public_ones() -> None:
    assert webhooks.parse_speedsms is speedsms.parse_speedsms
    assert webhooks.parse_esms is esms.parse_esms
    assert webhooks.SpeedSmsReport is speedsms.SpeedSmsReport
    hooks = {p.name: p.webhook for p in providers.all_providers()}
    assert hooks["fibo"] is None
    speedsms_hook, esms_hook = hooks["speedsms"], hooks["esms"]
    assert speedsms_hook is not None and esms_hook is not None
    assert speedsms_hook.methods == ("POST",)
    assert esms_hook.methods == ("GET",)
    assert speedsms_hook.parse(speedsms_body(), {}) == parse_speedsms(speedsms_body())
    assert esms_hook.parse(b"", esms_sms()) == parse_esms(esms_sms())


async def test_speedsms_route_delivers_to_handler() -> None:
    recorder = Recorder()
    application = _hooks(recorder)
    async with serve(application) as client:
        resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body(status=69))
        assert resp.status == 200
        assert await resp.text() == "OK"
    assert len(recorder.events) == 1
    event = recorder.events[0]
    assert isinstance(event, DeliveryReport)
    assert event.state is DeliveryState.FAILED
    tracker = application[TRACKER_KEY]
    assert tracker.state("speedsms", "1234", "0912345678") is DeliveryState.FAILED


async def test_rotation_accepts_both_secrets() -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder, secret=[SECRET, OLD_SECRET])) as client:
        for secret, status in ((SECRET, 0), (OLD_SECRET, 69)):
            resp = await client.post(f"/speedsms/{secret}", data=speedsms_body(status=status))
            assert resp.status == 200
        resp = await client.post(f"/speedsms/{WRONG}", data=speedsms_body())
        assert resp.status == 404
    assert len(recorder.events) == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/speedsms/{WRONG}"),
        ("POST", f"/speedsms/{SECRET[:-1]}"),
        ("POST", f"/speedsms/{SECRET}x"),
        ("POST", "/speedsms/"),
        ("GET", f"/speedsms/{WRONG}"),
        ("GET", f"/esms/{WRONG}"),
        ("GET", f"/esms/{SECRET}/extra"),
        ("GET", "/elsewhere"),
        ("POST", f"/esms/{WRONG}"),
    ],
)
async def test_wrong_secret_or_path_is_a_bare_404(method: str, path: str) -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder)) as client:
        resp = await client.request(method, path, data=speedsms_body())
        assert resp.status == 404
        assert await resp.read() == b""
    assert recorder.events == []


async def test_wrong_method_with_right_secret_is_405() -> None:
    async with serve(_hooks()) as client:
        resp = await client.get(f"/speedsms/{SECRET}")
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        resp = await client.post(f"/esms/{SECRET}", params=esms_sms())
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET"


async def test_body_cap() -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder, max_body=1024)) as client:
        resp = await client.post(f"/speedsms/{SECRET}", data=b"x" * 2000)
        assert resp.status == 413

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 200

        resp = await client.post(f"/speedsms/{SECRET}", data=chunked())
        assert resp.status == 413
        padded = speedsms_body() + b" " * (1024 - len(speedsms_body()))
        resp = await client.post(f"/speedsms/{SECRET}", data=padded)
        assert resp.status == 200
    assert len(recorder.events) == 1


async def test_default_body_cap_is_64_kib() -> None:
    async with serve(_hooks()) as client:
        resp = await client.post(f"/speedsms/{SECRET}", data=b" " * (64 * 1024 + 1))
        assert resp.status == 413


@pytest.mark.parametrize(
    "body", [b"garbage", b"", speedsms_body(type="mo"), speedsms_body(phone="123")]
)
async def test_garbage_is_400(body: bytes) -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder)) as client:
        resp = await client.post(f"/speedsms/{SECRET}", data=body)
        assert resp.status == 400
        assert (await resp.text()).startswith("bad request: ")
    assert recorder.events == []


async def test_esms_route() -> None:
    recorder = Recorder()
    application = _hooks(recorder)
    async with serve(application) as client:
        resp = await client.get(f"/esms/{SECRET}", params=esms_sms())
        assert resp.status == 200
        resp = await client.get(f"/esms/{SECRET}", params=esms_call())
        assert resp.status == 200
        resp = await client.get(f"/esms/{SECRET}", params={"SMSID": "1", "SendStatus": "x"})
        assert resp.status == 400
    assert isinstance(recorder.events[0], DeliveryReport)
    assert isinstance(recorder.events[1], CallReport)
    tracker = application[TRACKER_KEY]
    assert tracker.state("esms", esms_sms()["SMSID"], "0912345678") is DeliveryState.DELIVERED


async def test_duplicates_call_handler_once() -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder)) as client:
        for _ in range(3):
            resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body())
            assert resp.status == 200
        for _ in range(3):
            resp = await client.get(f"/esms/{SECRET}", params=esms_call())
            assert resp.status == 200
        # Same message, new status: not a duplicate.
        resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body(status=5))
        assert resp.status == 200
        # "0" as a string is the same report as 0.
        resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body(status="0"))
        assert resp.status == 200
    assert len(recorder.events) == 3


async def test_esms_pending_then_delivered_same_send_status_is_not_a_duplicate() -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder)) as client:
        pending = esms_sms(SendSuccess="0")
        for query in (pending, esms_sms()):
            assert (await client.get(f"/esms/{SECRET}", params=query)).status == 200
    assert [e.state for e in recorder.events if isinstance(e, DeliveryReport)] == [
        DeliveryState.PENDING,
        DeliveryState.DELIVERED,
    ]


async def test_numeric_status_spellings_are_one_report() -> None:
    # Regression: SendStatus "05" and "5" made two dedup keys, so the handler ran twice.
    recorder = Recorder()
    async with serve(_hooks(recorder)) as client:
        for status in ("05", "5", " 005 "):
            query = esms_sms(SendStatus=status)
            assert (await client.get(f"/esms/{SECRET}", params=query)).status == 200
        for number in ("064", 64, "64"):
            body = speedsms_body(status=number)
            assert (await client.post(f"/speedsms/{SECRET}", data=body)).status == 200
    assert [e.provider for e in recorder.events] == ["esms", "speedsms"]


def test_dedup_key_compares_digits_by_value() -> None:
    keys = {webhooks._dedup_key(parse_esms(esms_sms(SendStatus=s))) for s in ("5", "05", "0005")}
    assert len(keys) == 1
    opaque = DeliveryReport(
        provider="toy", message_id="1", phone="0912345678", state=DeliveryState.FAILED,
        raw_status=" E05 ",
    )  # fmt: skip
    assert webhooks._dedup_key(opaque) == ("toy", "1", "0912345678", "E05", "failed")


async def test_inbound_sms_are_not_deduplicated() -> None:
    recorder = Recorder()
    body = json.dumps({"type": "sms", "phone": "0912345678", "content": "YES"}).encode()
    async with serve(_hooks(recorder)) as client:
        for _ in range(2):
            assert (await client.post(f"/speedsms/{SECRET}", data=body)).status == 200
    assert len(recorder.events) == 2


async def test_zero_window_disables_dedup() -> None:
    recorder = Recorder()
    async with serve(_hooks(recorder, dedup_window=0.0)) as client:
        for _ in range(2):
            assert (await client.post(f"/speedsms/{SECRET}", data=speedsms_body())).status == 200
    assert len(recorder.events) == 2


async def test_handler_failure_is_500_then_retry_processed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smsvn.webhooks")
    recorder = Recorder(failures=1)
    application = _hooks(recorder)
    async with serve(application) as client:
        resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body())
        assert resp.status == 500
        tracker = application[TRACKER_KEY]
        assert tracker.state("speedsms", "1234", "0912345678") is None
        resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body())
        assert resp.status == 200
        resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body())
        assert resp.status == 200
    assert len(recorder.events) == 2
    assert tracker.state("speedsms", "1234", "0912345678") is DeliveryState.DELIVERED
    assert len(tracker.history("speedsms", "1234", "0912345678")) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "RuntimeError" in warnings[0].getMessage()
    assert "/speedsms" not in warnings[0].getMessage()
    for record in caplog.records:
        assert SECRET not in record.getMessage()


async def test_concurrent_duplicates_call_handler_once() -> None:
    recorder = Recorder()
    recorder.release = asyncio.Event()
    async with serve(_hooks(recorder)) as client:
        first = asyncio.create_task(client.post(f"/speedsms/{SECRET}", data=speedsms_body()))
        await asyncio.wait_for(recorder.entered.wait(), 5)
        second = asyncio.create_task(client.post(f"/speedsms/{SECRET}", data=speedsms_body()))
        await asyncio.sleep(0.1)
        assert len(recorder.events) == 1
        recorder.release.set()
        responses = await asyncio.gather(first, second)
        assert [r.status for r in responses] == [200, 200]
    assert len(recorder.events) == 1


async def test_concurrent_duplicate_processed_when_first_fails() -> None:
    recorder = Recorder(failures=1)
    recorder.release = asyncio.Event()
    async with serve(_hooks(recorder)) as client:
        first = asyncio.create_task(client.post(f"/speedsms/{SECRET}", data=speedsms_body()))
        await asyncio.wait_for(recorder.entered.wait(), 5)
        second = asyncio.create_task(client.post(f"/speedsms/{SECRET}", data=speedsms_body()))
        await asyncio.sleep(0.1)
        recorder.release.set()
        responses = await asyncio.gather(first, second)
        assert [r.status for r in responses] == [500, 200]
    assert len(recorder.events) == 2


async def test_late_temporary_failure_does_not_overwrite_delivered() -> None:
    recorder = Recorder()
    tracker = DeliveryTracker()
    application = _hooks(recorder, store=tracker)
    assert application[TRACKER_KEY] is tracker
    async with serve(application) as client:
        for status in (0, 5):
            resp = await client.post(f"/speedsms/{SECRET}", data=speedsms_body(status=status))
            assert resp.status == 200
    assert len(recorder.events) == 2  # the handler sees every report and decides
    assert tracker.state("speedsms", "1234", "0912345678") is DeliveryState.DELIVERED
    states = [r.state for r in tracker.history("speedsms", "1234", "0912345678")]
    assert states == [DeliveryState.DELIVERED, DeliveryState.TEMPORARY_FAILURE]


async def test_mounted_under_prefix_with_callback_url() -> None:
    recorder = Recorder()
    parent = web.Application()
    parent.add_subapp("/hooks", _hooks(recorder))
    async with serve(parent) as client:
        base = str(client.make_url("/hooks"))
        for provider, kwargs in (
            ("speedsms", {"data": speedsms_body()}),
            ("esms", {"params": esms_sms()}),
        ):
            url = callback_url(base, provider, SECRET)
            method = "POST" if provider == "speedsms" else "GET"
            resp = await client.session.request(method, url, **kwargs)
            assert resp.status == 200
            resp.release()
    assert len(recorder.events) == 2


@pytest.mark.parametrize("wbits", [15, 9, -15], ids=["zlib", "zlib-small-window", "raw-deflate"])
async def test_a_deflate_callback_is_read_in_any_of_its_forms(wbits: int) -> None:
    """``Content-Encoding: deflate`` is a zlib stream by the standard (its header byte varies
    with the window: 0x78, 0x18, ...) and raw deflate from some senders: each is inflated."""
    recorder = Recorder()
    deflater = zlib.compressobj(9, zlib.DEFLATED, wbits)
    body = deflater.compress(speedsms_body()) + deflater.flush()
    async with serve(_hooks(recorder)) as client:
        resp = await client.post(
            f"/speedsms/{SECRET}", data=body, headers={"Content-Encoding": "deflate"}
        )
        assert resp.status == 200
    assert len(recorder.events) == 1


@pytest.mark.parametrize("inflating", [True, False], ids=["parent-inflates", "parent-does-not"])
async def test_a_compressed_callback_when_mounted(inflating: bool) -> None:
    """Mounted, the parent's server inflates a gzip body before the receiver (aiohttp's
    default), and the receiver must not inflate it again; a parent made with
    ``auto_decompress`` off leaves it compressed: refused (400), nothing handled."""
    recorder = Recorder()
    parent = web.Application(handler_args={"auto_decompress": inflating})
    parent.add_subapp("/hooks", _hooks(recorder))
    async with serve(parent) as client:
        resp = await client.post(
            f"/hooks/speedsms/{SECRET}",
            data=gzip.compress(speedsms_body()),
            headers={"Content-Encoding": "gzip"},
        )
        assert resp.status == (200 if inflating else 400)
    assert len(recorder.events) == (1 if inflating else 0)


async def test_access_log_masks_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with serve(_hooks(), access_log_class=MaskedAccessLogger) as client:
        assert (await client.post(f"/speedsms/{SECRET}", data=speedsms_body())).status == 200
        assert (await client.get(f"/esms/{SECRET}", params=esms_sms())).status == 200
        assert (await client.get(f"/esms/{WRONG}", params=esms_sms())).status == 404
        assert (await client.get(f"/esms/esms/{SECRET}")).status == 404
    records = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(records) == 4
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        assert "SENTINEL" not in text
        assert WRONG not in text
    assert "POST /speedsms/*** HTTP/1.1" in records[0].getMessage()
    assert "GET /esms/***?SMSID=" in records[1].getMessage()
    assert records[0].__dict__["first_request_line"] == "POST /speedsms/*** HTTP/1.1"


async def test_default_access_log_is_masked_too(caplog: pytest.LogCaptureFixture) -> None:
    # app() puts a filter on aiohttp's loggers: aiohttp's own AccessLogger leaks nothing either.
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with serve(_hooks()) as client:
        assert (await client.post(f"/speedsms/{SECRET}", data=speedsms_body())).status == 200
        assert (await client.post(f"/SpeedSMS/{SECRET}", data=speedsms_body())).status == 404
    records = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(records) == 2
    for record in records:
        assert "SENTINEL" not in record.getMessage() + repr(record.__dict__)
    assert "POST /speedsms/*** HTTP/1.1" in records[0].getMessage()
    assert "POST /SpeedSMS/*** HTTP/1.1" in records[1].getMessage()
    assert records[1].__dict__["first_request_line"] == "POST /SpeedSMS/*** HTTP/1.1"


async def test_masked_access_logger_masks_any_case(caplog: pytest.LogCaptureFixture) -> None:
    # Regression: /SpeedSMS/<secret> matches no route (404) and was logged unmasked. An access
    # log on a logger of the user's own has no filter: MaskedAccessLogger alone must mask it.
    own = logging.getLogger("tests.webhooks.access")
    caplog.set_level(logging.INFO, logger=own.name)
    async with serve(_hooks(), access_log_class=MaskedAccessLogger, access_log=own) as client:
        assert (await client.post(f"/SpeedSMS/{SECRET}", data=speedsms_body())).status == 404
        assert (await client.get(f"/ESMS/{SECRET}", params=esms_sms())).status == 404
        assert (await client.get(f"/hooks/eSmS/{SECRET}")).status == 404
        assert (await client.post(f"/speedsms/{SECRET}", data=speedsms_body())).status == 200
    records = [r for r in caplog.records if r.name == own.name]
    assert len(records) == 4
    for record in records:
        assert "SENTINEL" not in record.getMessage() + repr(record.__dict__)
    assert "POST /SpeedSMS/*** HTTP/1.1" in records[0].getMessage()
    assert "GET /ESMS/***?SMSID=" in records[1].getMessage()
    assert "GET /hooks/eSmS/*** HTTP/1.1" in records[2].getMessage()


@pytest.mark.parametrize(
    "text",
    [
        f"/SPEEDSMS/{SECRET}",
        f"/hooks/eSMS/{SECRET}?SMSID=1",
        f"GET /speedsms//{SECRET} HTTP/1.1",
        f"b'GET /esms/{SECRET}'",
        f"/esms/esms/{SECRET}",
        f"http://example.com/hooks/Esms/{SECRET}#x",
    ],
)
def test_mask_ignores_case_and_routes(text: str) -> None:
    masked = webhooks._mask(text)
    assert "SENTINEL" not in masked
    assert "***" in masked


async def _send_raw(port: int, data: bytes) -> bytes:
    """Send raw bytes to 127.0.0.1:port and return whatever comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _leaks(records: list[logging.LogRecord], text: str) -> list[str]:
    """Every rendering of the records (message, extras, traceback) that contains ``text``."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    rendered = [
        formatter.format(r) + repr(r.args) + repr(r.__dict__) + (r.exc_text or "") for r in records
    ]
    return [line for line in rendered if text in line]


async def test_malformed_request_line_never_logs_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: aiohttp logs a request line it cannot parse at ERROR on aiohttp.server, the
    # line (secret included) in the exception, before any route or access logger sees it. The
    # app is mounted as a user would, on a plain AppRunner with aiohttp's own access logger.
    caplog.set_level(logging.DEBUG)
    parent = web.Application()
    parent.add_subapp("/hooks", _hooks())
    runner = web.AppRunner(parent)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    lines = [
        f"GET /hooks/speedsms/{SECRET} HTTP/1.1 garbage",  # junk after the version
        f"G@T /hooks/esms/{SECRET} HTTP/1.1",  # invalid method (logged at DEBUG)
        f"POST /hooks/SpeedSMS/{SECRET} HTTP/9.x",  # invalid version, wrong case
        f"GET /speedsms/{SECRET} HTTP/1.1\r\nbad header",  # valid line, malformed header
    ]
    try:
        for line in lines:
            answer = await _send_raw(port, line.encode() + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.0 400 ")
        await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    errors = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(errors) >= len(lines)  # one per bad request (more if the loop is in debug mode)
    assert any(r.levelno == logging.ERROR for r in errors)
    leaked = _leaks(caplog.records, "SENTINEL")
    assert not leaked, "\n".join(leaked[:3])
    assert "SENTINEL" not in caplog.text
    # Masked, not dropped: the request line is still there to debug with.
    assert "/hooks/speedsms/*** HTTP/1.1 garbage" in caplog.text


def test_run_uses_masked_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run_app(application: web.Application, **kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr(web, "run_app", fake_run_app)
    webhooks.run(_hooks(), host="127.0.0.1", port=8081)
    assert calls == [{"host": "127.0.0.1", "port": 8081, "access_log_class": MaskedAccessLogger}]


def test_run_masks_aiohttp_server_records(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    application = _hooks()
    server = logging.getLogger("aiohttp.server")
    monkeypatch.setattr(server, "filters", [])  # as if app() had not installed the filter
    monkeypatch.setattr(web, "run_app", lambda application, **kwargs: None)
    webhooks.run(application)
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError(f"Bad status line 'GET /esms/{SECRET} HTTP/1.1 x'")
    except ValueError:
        server.exception(
            "Error handling %s", f"GET /eSMS/{SECRET}?a=1", extra={"line": f"/speedsms/{SECRET}"}
        )
    [record] = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert not _leaks([record], "SENTINEL")
    assert "SENTINEL" not in caplog.text
    assert record.getMessage() == "Error handling GET /eSMS/***?a=1"
    assert "Bad status line 'GET /esms/*** HTTP/1.1 x'" in caplog.text


def test_log_filter_leaves_clean_records_alone(caplog: pytest.LogCaptureFixture) -> None:
    _hooks()
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError("nothing secret")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "1.2.3.4")
    [record] = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert (record.msg, record.args) == ("Error handling request from %s", ("1.2.3.4",))
    assert record.exc_info is not None
    server = logging.getLogger("aiohttp.server")
    assert server.filters.count(webhooks._SECRET_FILTER) == 1  # installed once, not per app


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("short-SENTINEL", id="short"),
        pytest.param("has/slash-SENTINEL-0000", id="slash"),
        pytest.param("has space-SENTINEL-0000", id="space"),
        pytest.param("ünicode-SENTINEL-000000", id="non-ascii"),
        pytest.param([], id="empty-list"),
        pytest.param([SECRET, "short-SENTINEL"], id="one-short"),
        pytest.param([SECRET, 12345678901234567890], id="not-str"),
    ],
)
def test_bad_secrets_refused_without_quoting(secret: Any) -> None:
    with pytest.raises(ValidationError) as info:
        webhooks.app(Recorder(), secret=secret)
    assert "SENTINEL" not in str(info.value) + repr(info.value)


@pytest.mark.parametrize(
    "options",
    [{"max_body": 0}, {"dedup_window": -1.0}, {"dedup_window": float("nan")}, {"dedup_max": 0}],
)
def test_bad_options_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _hooks(**options)


def test_handler_must_be_callable() -> None:
    with pytest.raises(TypeError):
        webhooks.app(None, secret=SECRET)  # type: ignore[arg-type]


def test_secret_absent_from_reprs() -> None:
    application = _hooks(secret=[SECRET, OLD_SECRET])
    text = repr(application) + repr(list(application.router.resources()))
    text += repr(list(application.router.routes()))
    assert "SENTINEL" not in text


def test_new_secret() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(first) >= webhooks.MIN_SECRET_LENGTH
    webhooks.app(Recorder(), secret=[first, second])


@pytest.mark.parametrize(
    ("base", "provider", "expected"),
    [
        ("https://example.com/hooks", "speedsms", f"https://example.com/hooks/speedsms/{SECRET}"),
        ("https://example.com/hooks/", "esms", f"https://example.com/hooks/esms/{SECRET}"),
        ("https://example.com", "esms", f"https://example.com/esms/{SECRET}"),
        ("http://127.0.0.1:8080/", "speedsms", f"http://127.0.0.1:8080/speedsms/{SECRET}"),
    ],
)
def test_callback_url(base: str, provider: str, expected: str) -> None:
    assert callback_url(base, provider, SECRET) == expected


@pytest.mark.parametrize(
    ("base", "provider", "secret"),
    [
        ("https://example.com", "fibo", SECRET),
        ("https://example.com", "speedsms", "short"),
        ("example.com/hooks", "speedsms", SECRET),
        ("ftp://example.com", "speedsms", SECRET),
        ("https://example.com/?a=1", "speedsms", SECRET),
        ("https://example.com/#x", "speedsms", SECRET),
        ("http://[::1", "speedsms", SECRET),
    ],
)
def test_callback_url_refuses(base: str, provider: str, secret: str) -> None:
    with pytest.raises(ValidationError) as info:
        callback_url(base, provider, secret)
    assert "SENTINEL" not in str(info.value)


def test_a_rotation_may_be_any_collection_of_secrets() -> None:
    """Secrets during a rotation: a list, a tuple or a set (as before the option checks);
    a mapping or bytes are refused."""
    first, second = webhooks.new_secret(), webhooks.new_secret()
    for secrets in ([first, second], (first, second), {first, second}, frozenset({first})):
        webhooks.app(lambda event: None, secret=secrets)
    for wrong in ({first: second}, first.encode()):
        with pytest.raises(ValidationError):
            webhooks.app(lambda event: None, secret=wrong)  # type: ignore[arg-type]
