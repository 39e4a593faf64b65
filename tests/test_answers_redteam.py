"""Red-team tests of how smsvn reads provider answers, Fibo's XML above all, served by a hostile
HTTP server on 127.0.0.1.

The promises under test (README "Errors", "Reliability"; PROVIDERS.md section 3): an unexpected
answer surfaces only as a typed ``SmsError``; a send whose answer cannot be understood is
``MalformedResponse`` (an ``OutcomeUnknown``), never a refusal class that tells ``Failover`` and
``send_bulk`` "nothing was sent"; the XML parser reads no file and fetches no URL; CPU stays
bounded; secrets never reach an error, a log or a result's ``raw``.

A test whose docstring starts with "Finding:" failed on the code it was written against. The
others are guards of probes that held and that no other suite makes: each checks the effect
(a file opened, a URL fetched, the number of requests), not only the text of an outcome.

Not repeated here: ``test_fibo.py`` (wrapper forms, the code table, malformed bodies by parse
call), ``test_fuzz_parsers.py`` (random bodies, hostile XML by output text), ``faults/
test_hostile.py`` (endless, compressed and unsolicited bodies), ``test_secrets_redteam.py``.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from smsvn import errors
from smsvn.failover import Failover
from smsvn.models import DailyTotals, SendResult
from smsvn.providers.fibo import Fibo
from smsvn.providers.speedsms import SpeedSMS
from tests.conftest import FAST_RETRY, SENTINEL_PASS, SENTINEL_TOKEN

NUMBER = "0912345678"
CLIENT_NO = "CL1609110001"
TEMPURI = "http://tempuri.org/"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SEND_PATH = "/SendMT/service.asmx/SendMaskedSMS"
BACKUP_SEND_PATH = "/backup/service.asmx/SendMaskedSMS"
TOTALS_PATH = "/WebserivceFibo/PartnerMtTotal.asmx"
SPEEDSMS_BALANCE_PATH = "/index.php/user/info"
EVIL_PATH = "/evil"
EVIL_TEXT = "PWNED-BY-A-FETCH"
DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'
SENT = "<SMS><Code>200</Code><Message>Sending...</Message><Time></Time></SMS>"


def escaped(inner: str) -> bytes:
    """The ASMX form: Fibo's XML entity-escaped inside ``<string>`` (a second parse)."""
    return literal(escape(inner))


def literal(inner: str) -> bytes:
    """The other ASMX form: Fibo's XML as child elements of ``<string>``."""
    return f'{DECLARATION}<string xmlns="{TEMPURI}">{inner}</string>'.encode()


def soap_totals(result: str) -> bytes:
    return (
        f'{DECLARATION}<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
        f'<GetTotalMtResponse xmlns="{TEMPURI}"><GetTotalMtResult>{result}</GetTotalMtResult>'
        "</GetTotalMtResponse></soap:Body></soap:Envelope>"
    ).encode()


class Answers:
    """What the hostile server answers, per path, and every request it got."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {EVIL_PATH: f'<!ENTITY x "{EVIL_TEXT}">'.encode()}
        self.hits: Counter[str] = Counter()
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits[request.path] += 1
        body = self.bodies.get(request.path)
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, headers={"Content-Type": "text/xml; charset=utf-8"})


@pytest.fixture
async def server() -> AsyncIterator[Answers]:
    answers = Answers()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answers.handle)
    async with TestServer(app, host="127.0.0.1") as test_server:
        answers.base = str(test_server.make_url("")).rstrip("/")
        yield answers


def fibo(server: Answers, password: str = SENTINEL_PASS, send_path: str = SEND_PATH) -> Fibo:
    return Fibo(
        CLIENT_NO,
        password,
        base_url=server.base,
        send_path=send_path,
        sender="BRAND",
        rate_limit=None,
        retry=FAST_RETRY,
    )


# -- Finding: an ambiguous answer is read as a refusal --------------------------------------------

AMBIGUOUS = {
    # A gateway that concatenates two answers, or a hostile one: which Code is Fibo's?
    "two Code elements": escaped("<SMS><Code>3</Code><Code>200</Code><Message>x</Message></SMS>"),
    "Code split by an element": literal("<SMS><Code>2<b/>00</Code><Message>x</Message></SMS>"),
    "two SMS answers": literal(f"<SMS><Code>14</Code></SMS>{SENT}"),
    "literal SMS beside escaped SMS": (
        f'<string xmlns="{TEMPURI}">{escape(SENT)}<SMS><Code>5</Code></SMS></string>'.encode()
    ),
}


@pytest.mark.parametrize("body", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
async def test_an_ambiguous_fibo_answer_is_never_a_refusal(server: Answers, body: bytes) -> None:
    """Finding: an ASMX answer that holds two readings (two ``<Code>`` elements, a ``<Code>``
    whose text is split by a child element, two ``<SMS>`` answers, a literal ``<SMS>`` beside
    the escaped one) is read as its first fragment: ``2<b/>00`` is code 2 (ProviderUnavailable),
    ``3`` then ``200`` is AuthenticationError, and so on. Each of those is in
    ``failover.NOTHING_SENT``, so ``Failover`` hands the message to the backup provider although
    the same answer says 200 ("Sending..."): a possible double send. Root cause:
    ``smsvn/providers/fibo.py`` ``_child`` / ``_child_text`` (first match, ``.text`` only, child
    elements ignored) and ``_sms_element`` (first ``<SMS>``, literal preferred over the escaped
    text). Broken promise: an answer that cannot be understood is ``MalformedResponse`` and a
    send that may have been processed is never reported as not sent (README, Errors)."""
    server.bodies[SEND_PATH] = body
    server.bodies[BACKUP_SEND_PATH] = escaped(SENT)
    outcome: SendResult | errors.SmsError
    async with Failover(fibo(server), fibo(server, send_path=BACKUP_SEND_PATH)) as both:
        try:
            outcome = await both.send(NUMBER, "hi")
        except errors.SmsError as exc:
            outcome = exc
    assert server.hits[SEND_PATH] == 1
    passed_over = [type(a.error).__name__ for a in getattr(outcome, "failovers", ())]
    assert server.hits[BACKUP_SEND_PATH] == 0, (
        f"Failover sent the message again through the backup after Fibo's {passed_over}"
    )
    assert isinstance(outcome, errors.MalformedResponse), repr(outcome)


# -- Finding: a balance that is not a number is taken as one --------------------------------------


@pytest.mark.parametrize(
    "balance",
    ["NaN", "Infinity", "-Infinity", "1e999", "\uff11\uff12\uff13", "\u0661\u0662\u0663"],
    ids=["nan", "inf", "-inf", "overflow", "full-width", "arabic-indic"],
)
async def test_speedsms_balance_that_is_not_a_finite_ascii_number_is_malformed(
    server: Answers, balance: str
) -> None:
    """Finding: SpeedSMS's ``balance`` may come as a string (PROVIDERS.md), and
    ``SpeedSMS._parse_balance`` (``smsvn/providers/speedsms.py``) turns it into the amount with a
    bare ``float()``, which also reads ``"NaN"``, ``"Infinity"``, ``"1e999"`` (inf) and full-width
    or Arabic-Indic digits. The call then returns ``Balance(amount=nan)`` (or inf, or 123.0 read
    from digits no SpeedSMS answer uses) as a success, and every "is the balance enough?"
    comparison with NaN is False. Fibo's balance (an ASCII regex) and the webhook parser
    (``_webhook.amount``: ASCII, finite) refuse the same strings. Broken promise: an unexpected
    answer is ``MalformedResponse`` (README, Errors)."""
    server.bodies[SPEEDSMS_BALANCE_PATH] = msgspec.json.encode(
        {"status": "success", "code": "00", "data": {"email": "a@b.vn", "balance": balance}}
    )
    async with SpeedSMS(
        SENTINEL_TOKEN, base_url=server.base + "/index.php", rate_limit=None, retry=FAST_RETRY
    ) as client:
        try:
            result = await client.balance()
        except errors.MalformedResponse:
            return
    pytest.fail(f"balance {balance!r} was taken as the amount {result.amount!r}")


# -- Finding: a numeric ClientPass echoed in the SOAP totals reaches ``raw`` ----------------------


async def test_fibo_daily_totals_never_carry_an_echoed_client_pass(server: Answers) -> None:
    """Finding: ``_parse_totals`` (``smsvn/providers/fibo.py``) keeps ``GetTotalMtResult`` as
    ``raw`` without passing it through the client's redactor, unlike every other Fibo field
    (``_field``). A password of digits (which ``Fibo`` accepts; the redactor does recognise it)
    echoed as ``"<password>|0|0"`` is returned in ``DailyTotals.raw`` and as ``success``.
    ``balance()`` refuses the same echo in ``AccountBalance`` (redacted, then "not a number").
    Broken promise: passwords never appear in a result's ``raw`` (README, Errors)."""
    password = "73915824"
    server.bodies[TOTALS_PATH] = soap_totals(f"{password}|0|0")
    outcome: DailyTotals | errors.MalformedResponse
    async with fibo(server, password=password) as client:
        try:
            outcome = await client.daily_totals()
        except errors.MalformedResponse as exc:  # refusing the echo is as good as hiding it
            outcome = exc
    shown = f"{outcome} {outcome!r}"
    if isinstance(outcome, DailyTotals):
        shown += msgspec.json.encode(outcome.raw).decode()
    assert password not in shown, shown


# -- Guard: the XML parser opens no file and fetches no URL, in any encoding ----------------------


class FifoWatch:
    """A FIFO that reports whether anything opened it for reading. A thread tries a
    non-blocking open for writing every few ms: it succeeds only while a reader has the FIFO
    open (or is blocked opening it), and closing it at once releases that reader with EOF, so
    a parser that does read it is caught, not hung."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader
                    raise
                continue
            self.opened += 1
            os.close(fd)

    def __enter__(self) -> FifoWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[FifoWatch]:
    with FifoWatch(tmp_path / "secret.dtd") as watch:
        yield watch


def hostile_documents(target: str) -> dict[str, str]:
    """Fibo answers that ask an XML processor to read ``target`` (a file or a URL)."""
    ok = "<Code>200</Code>"
    return {
        "external DTD": f'<!DOCTYPE SMS SYSTEM "{target}"><SMS>{ok}</SMS>',
        "external entity": (
            f'<!DOCTYPE SMS [<!ENTITY x SYSTEM "{target}">]><SMS>{ok}<Message>&x;</Message></SMS>'
        ),
        "parameter entity": f'<!DOCTYPE SMS [<!ENTITY % p SYSTEM "{target}"> %p;]><SMS>{ok}</SMS>',
        "XInclude": (
            f'<SMS xmlns:xi="http://www.w3.org/2001/XInclude">{ok}<Message>'
            f'<xi:include href="{target}" parse="text"/></Message></SMS>'
        ),
        "schema location": (
            '<SMS xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:noNamespaceSchemaLocation="{target}">{ok}</SMS>'
        ),
        "stylesheet": f'<?xml-stylesheet type="text/xsl" href="{target}"?><SMS>{ok}</SMS>',
    }


ENTITY_BOMBS = {
    "billion laughs": '<!DOCTYPE SMS [<!ENTITY a "l&#111;l">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    + "]><SMS><Code>200</Code><Message>&i;</Message></SMS>",
    "quadratic blowup": f'<!DOCTYPE SMS [<!ENTITY a "{"l&#111;l" * 1000}">]>'
    f"<SMS><Code>200</Code><Message>{'&a;' * 2500}</Message></SMS>",
}
EXPANDED = "lollol"
"""Text only an expanded bomb holds: its definitions write the "o" as a character reference."""


def encoded(document: str, form: str) -> bytes:
    """``document`` as a body: UTF-16 and UTF-32 hide ``<!DOCTYPE`` from a byte search."""
    if form == "escaped":
        return escaped(document)
    return (f'<?xml version="1.0" encoding="{form}"?>' + document).encode(form)


@pytest.mark.parametrize("form", ["utf-8", "utf-16", "utf-32", "escaped"])
async def test_hostile_xml_reads_no_file_and_fetches_nothing(
    server: Answers, fifo: FifoWatch, form: str
) -> None:
    """Guard: external DTDs, external general and parameter entities, XInclude, a schema
    location and a stylesheet PI, pointing at a local FIFO and at this server, and entity
    bombs, in each encoding and in the escaped inner document. Checked by effect: the FIFO is
    never opened, the server's ``/evil`` is never asked for, each send is one request ending
    sent or ``MalformedResponse`` (never a refusal), and each answer is read in well under a
    second. ``daily_totals`` (the SOAP parser) is given the same bodies."""
    documents = {
        f"{name} -> {kind}": body
        for kind, target in (("file", fifo.path.as_uri()), ("http", server.base + EVIL_PATH))
        for name, body in hostile_documents(target).items()
    }
    documents.update(ENTITY_BOMBS)
    async with fibo(server) as client:
        for name, document in documents.items():
            body = encoded(document, form)
            server.bodies[SEND_PATH] = server.bodies[TOTALS_PATH] = body
            sends = server.hits[SEND_PATH]
            started = time.perf_counter()
            outcome: SendResult | errors.SmsError
            try:
                outcome = await client.send(NUMBER, "hi")
            except errors.SmsError as exc:
                outcome = exc
            assert isinstance(outcome, SendResult | errors.MalformedResponse), (name, outcome)
            shown = f"{outcome} {outcome!r}"
            with pytest.raises(errors.SmsError) as totals:
                await client.daily_totals()
            assert time.perf_counter() - started < 1.0, name
            assert server.hits[SEND_PATH] == sends + 1, name
            for text in (shown, str(totals.value)):
                assert EVIL_TEXT not in text and EXPANDED not in text, (name, text)
    assert fifo.opened == 0, "the XML parser opened a local file"
    assert server.hits[EVIL_PATH] == 0, "the XML parser fetched a URL"


# -- Guard: odd encodings and markup end sent or unknown, after one request ------------------------

ODD = {
    "UTF-8 BOM": (b"\xef\xbb\xbf" + escaped(SENT), True),
    "UTF-16 with BOM": (
        f'<?xml version="1.0" encoding="utf-16"?><string xmlns="{TEMPURI}">{escape(SENT)}'
        "</string>".encode("utf-16"),
        True,
    ),
    "UTF-32": (f'<?xml version="1.0" encoding="utf-32"?>{SENT}'.encode("utf-32"), True),
    "Latin-1 declared, UTF-8 bytes": (
        '<?xml version="1.0" encoding="iso-8859-1"?><SMS><Code>200</Code>'
        "<Message>Đang gửi</Message></SMS>".encode(),
        True,
    ),
    "CDATA wrapper": (f'<string xmlns="{TEMPURI}"><![CDATA[{SENT}]]></string>'.encode(), True),
    "comment and PI inside Code": (b"<SMS><Code>2<!-- x -->0<?pi x?>0</Code></SMS>", True),
    "inner declaration says UTF-16": (
        escaped(f'<?xml version="1.0" encoding="utf-16"?>{SENT}'),
        True,
    ),
    "UTF-16 declared, UTF-8 bytes": (
        f'<?xml version="1.0" encoding="utf-16"?>{SENT}'.encode(),
        False,
    ),
    "invalid UTF-8": (b"<SMS><Code>200</Code><Message>\xff\xfe\xc3</Message></SMS>", False),
    "unknown encoding": (f'<?xml version="1.0" encoding="x-bogus"?>{SENT}'.encode(), False),
    "undeclared entity": (b"<SMS><Code>200</Code><Message>&nbsp;</Message></SMS>", False),
    "inner nested too deeply": (escaped("<a>" * 400 + SENT + "</a>" * 400), False),
    "SOAP envelope on the send path": (soap_totals("1|2|3"), False),
    "XML 1.1 control character": (
        b'<?xml version="1.1"?><SMS><Code>200</Code><Message>&#1;</Message></SMS>',
        False,
    ),
}


@pytest.mark.parametrize(("body", "sent"), list(ODD.values()), ids=list(ODD))
async def test_odd_encodings_and_markup_end_sent_or_unknown(
    server: Answers, body: bytes, sent: bool
) -> None:
    """Guard: an answer that says 200 in an encoding or markup XML allows (BOMs, UTF-16/32, a
    declaration that lies about Latin-1, CDATA, comments and PIs) is read as sent; one that no
    XML parser can read is ``MalformedResponse`` (an ``OutcomeUnknown``), never a refusal and
    never resent; neither shows the password."""
    server.bodies[SEND_PATH] = body
    async with fibo(server) as client:
        if sent:
            result = await client.send(NUMBER, "hi")
            assert result.recipients == (NUMBER,)
        else:
            with pytest.raises(errors.MalformedResponse) as info:
                await client.send(NUMBER, "hi")
            assert "SENTINEL" not in f"{info.value} {info.value!r}"
            assert info.value.endpoint == "SendMaskedSMS"
    assert server.hits[SEND_PATH] == 1
