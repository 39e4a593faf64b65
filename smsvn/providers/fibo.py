"""Fibo (fibosms.com): one SMS a request by ASMX GET, the balance, and today's totals by SOAP.

Wire format: credentials (``clientNo``, ``clientPass``) travel in the query string of every GET
and in the SOAP body. The ASMX answers wrap Fibo's own XML in ``<string xmlns=
"http://tempuri.org/">``, usually entity-escaped (``&lt;SMS&gt;&lt;Code&gt;200...``), sometimes
as literal child elements; ``Code`` 200 (or 1 on older services) is success and every other
code maps through one table. ``GetTotalMt`` is SOAP 1.1 only. Every body is parsed with a
hardened lxml parser (size cap, no DTD, no entities, no network), so no answer can raise
anything but an ``SmsError``.

``smsGUID`` goes as ``0``, the document's "(default)" and what every sample sends, unless the
caller gives an id of their own (``send(..., sms_guid=...)``); Fibo returns no message id.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import Any, Final, NamedTuple, Unpack

import msgspec
from lxml import etree

from smsvn import text
from smsvn.bulk import BatchSender
from smsvn.errors import (
    AuthenticationError,
    InsufficientBalance,
    InvalidRecipient,
    InvalidRequest,
    ProviderUnavailable,
    SenderNotRegistered,
    SmsError,
    ValidationError,
)
from smsvn.limits import RateLimit
from smsvn.models import Balance, DailyTotals, SendResult
from smsvn.providers._base import (
    BaseClient,
    ClientOptions,
    checked_content,
    checked_credential,
    checked_text,
    recipient_list,
    require_recipients,
    split_recipients,
)
from smsvn.providers._spec import Credential, Provider
from smsvn.transport import Response, Transport

__all__ = [
    "DEFAULT_BALANCE_PATH",
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_SEND_PATH",
    "DEFAULT_TOTALS_PATH",
    "MAX_BODY",
    "MAX_SMS_GUID_LENGTH",
    "Fibo",
]

DEFAULT_BASE_URL: Final = "https://ha-api.fibosms.com"
DEFAULT_SEND_PATH: Final = "/SendMT/service.asmx/SendMaskedSMS"
DEFAULT_BALANCE_PATH: Final = "/SendMT/service.asmx/GetClientBalance"
"""``.asmx``, as every real client calls it and as the document's own send is; the document
writes ``service.aspx`` here, most likely a slip (pass ``balance_path`` to use it)."""
DEFAULT_TOTALS_PATH: Final = "/WebserivceFibo/PartnerMtTotal.asmx"
"""The vendor's own spelling ("Webserivce"): it is the real path."""
DEFAULT_RATE_LIMIT: Final = RateLimit(requests=20, period=1.0, burst=5)
"""Fibo documents no limit: 20 requests a second per account (5 at once) is a conservative guess."""
MAX_BODY: Final = 64 * 1024
"""Bytes an answer may have; Fibo's are ~150, so anything larger is refused unparsed."""
MAX_SMS_GUID_LENGTH: Final = 36
"""The longest ``sms_guid`` a caller may give (a UUID's text form); Fibo documents no limit."""

_PROVIDER: Final = "fibo"
_EP_SEND: Final = "SendMaskedSMS"
_EP_BALANCE: Final = "GetClientBalance"
_EP_TOTALS: Final = "GetTotalMt"
_DEFAULT_GUID: Final = "0"
"""``smsGUID`` when the caller gives none: the document's "0 (mặc định)" (0, the default)."""
_GUID: Final = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_SMS_GUID_LENGTH}}}")
"""A caller's ``sms_guid``: letters, digits, ``_ . -`` only, nothing a query must escape."""

_SOAP_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_TEMPURI: Final = "http://tempuri.org/"
_SOAP_XML: Final = "text/xml; charset=utf-8"
_SOAP_ACTION: Final = {"SOAPAction": '"http://tempuri.org/GetTotalMt"'}

_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="utf-8"?>\n'
_SUCCESS: Final = frozenset({200, 1})
_ERRORS: Final[dict[int, tuple[type[SmsError], str]]] = {
    2: (ProviderUnavailable, "system error"),
    3: (AuthenticationError, "wrong user or password"),
    4: (AuthenticationError, "IP address not allowed"),
    5: (SenderNotRegistered, "brandname / service not declared for the account"),
    6: (InvalidRequest, "duplicate content: refused, not sent"),
    7: (InvalidRecipient, "the subscriber refuses messages"),
    8: (AuthenticationError, "the account is not allowed to send"),
    9: (InvalidRequest, "template not declared"),
    10: (InvalidRecipient, "wrong subscriber number format"),
    11: (InvalidRequest, "invalid parameter"),
    12: (AuthenticationError, "wrong account"),
    13: (
        ProviderUnavailable,
        "connection error while sending: Fibo could not pass the message on, so it was not sent",
    ),
    14: (InsufficientBalance, "balance not enough"),
    15: (AuthenticationError, "account expired"),
    16: (AuthenticationError, "service expired"),
    17: (InsufficientBalance, "test quota used up"),
    18: (InvalidRequest, "sending cancelled (customer care)"),
    19: (InvalidRequest, "sending cancelled (sales)"),
    20: (InvalidRequest, "the gateway does not support Unicode"),
    21: (AuthenticationError, "account not set up: prepaid price not set"),
    22: (AuthenticationError, "account not set up: not activated"),
    23: (InvalidRequest, "wrong message syntax"),
    24: (ProviderUnavailable, "processing procedure failed"),
    25: (AuthenticationError, "account not set up: partner not declared for the user"),
    26: (AuthenticationError, "account not set up: GateOwner not declared for the user"),
    27: (ProviderUnavailable, "the gate returned an error"),
    28: (InvalidRequest, "sending cancelled"),
    29: (AuthenticationError, "account not set up: TopUpUserId not declared for the partner"),
    30: (InvalidRequest, "refund to user"),
    31: (InvalidRecipient, "11-digit number moved to 10 digits"),
}
"""Every documented Fibo error code -> (error class, meaning)."""

_CREDENTIAL_WORDS: Final = (
    "password",
    "username",
    "user name",
    "credential",
    "login",
    "log in",
    "authenticat",
    "unauthori",
    "mật khẩu",
    "đăng nhập",
    "xác thực",
)
"""Words that make a soap:Client fault about the credentials (English and Vietnamese)."""

# Hardened: no DTD loading, no entity expansion, no network, no huge trees; PIs and comments go.
_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_pis=True,
    remove_comments=True,
)
_DECLARATION: Final = re.compile(r"\A\s*<\?xml[^>]*\?>")
# Bounded: Python's int() refuses over 4,300 digits (a ValueError), and no real count is that long.
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,18}")
_COUNT: Final = re.compile(r"[0-9]{1,18}")
_NUMBER: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_FIELD_EXCERPT: Final = 200


# -- wire structs -------------------------------------------------------------------------------


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    """The ``<SMS>`` answer of an ASMX call (text fields redacted)."""

    code: int
    message: str | None = None
    account_balance: str | None = None
    time: str | None = None


class _TotalMt(msgspec.Struct, frozen=True, kw_only=True):
    """The ``GetTotalMtResult`` of a SOAP call: ``"success|failed|pending"``."""

    result: str


# -- the client ---------------------------------------------------------------------------------


class Fibo(BaseClient):
    """Async client for Fibo: ``send`` (one number a request), ``balance``, ``daily_totals``.

    ``rate_limit`` defaults to a conservative 20 requests a second per account, since Fibo
    documents none; ``None`` turns the limiter off. ``sender`` is the brandname ``send`` uses
    when none is given. The base URL and each path are settings: the vendor's documents name
    more than one form (``service.asmx`` and ``service.aspx``).
    """

    provider = _PROVIDER
    default_rate_limit = DEFAULT_RATE_LIMIT
    price = 1.0
    unit = "messages"
    credentials = (
        Credential(name="client_no", env="SMSVN_FIBO_CLIENT_NO", help="Fibo clientNo"),
        Credential(name="client_pass", env="SMSVN_FIBO_CLIENT_PASS", help="Fibo clientPass"),
    )
    sender_option = "sender"

    def __init__(
        self,
        client_no: str,
        client_pass: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        send_path: str = DEFAULT_SEND_PATH,
        balance_path: str = DEFAULT_BALANCE_PATH,
        totals_path: str = DEFAULT_TOTALS_PATH,
        sender: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        checked_credential(client_no, "a Fibo client number", _PROVIDER)
        checked_credential(client_pass, "a Fibo client password", _PROVIDER)
        if sender is not None:
            checked_text(sender, "sender", _PROVIDER)
        totals_body = _soap_request(client_no, client_pass)  # refuses what XML cannot carry
        super().__init__(
            base_url=base_url,
            account=client_no,
            secrets=(client_pass,),
            options=options,
        )
        self.client_no = client_no
        self.sender = sender
        self._credentials: dict[str, str] = {"clientNo": client_no, "clientPass": client_pass}
        self._url_send = self._url(send_path, "send_path")
        self._url_balance = self._url(balance_path, "balance_path")
        self._url_totals = self._url(totals_path, "totals_path")
        self._totals_body = totals_body

    @classmethod
    def count_segments(cls, content: str, *, strip_diacritics: bool = False) -> text.Segments:
        """How ``send`` sends ``content``: plain text only when it is GSM-7 and ASCII, so a
        content with à, è, é, ì, ò or ù (GSM-7 has them) still goes as Unicode."""
        if strip_diacritics:
            content = text.strip_diacritics(content)
        return text.segments(content, unicode=not _is_plain(content))

    def _url(self, path: str, name: str) -> str:
        """``path`` under the base URL, or as is when it is a whole URL; ``name`` is the option
        it came from (a path that is not text a request can carry is refused here)."""
        path = checked_text(path, name, _PROVIDER)
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def send(
        self,
        to: str | Sequence[str],
        content: str,
        *,
        sender: str | None = None,
        unicode: bool | None = None,
        strip_diacritics: bool = False,
        sms_guid: str | None = None,
    ) -> SendResult:
        """Send ``content`` to one number (``GET SendMaskedSMS``); sent at most once.

        ``unicode=None`` picks serviceType 1 (Unicode) when the content needs it and 0 (plain)
        otherwise; ``unicode=False`` refuses content plain text cannot carry, before any
        request; ``strip_diacritics=True`` sends the plain Latin form as serviceType 0.

        ``smsGUID`` is ``0``, the document's default, unless ``sms_guid`` gives the caller's own
        id (1-36 letters, digits, ``_``, ``.`` or ``-``; anything else is a ValidationError
        before any request). Fibo answers with no id of its own, so the result's ``message_id``
        is ``sms_guid`` when given and None otherwise. Fibo documents no deduplication by
        ``smsGUID``: the send is made at most once either way.
        """
        guid = _check_guid(sms_guid)
        sender = self._sender(sender)
        numbers = recipient_list(to, _PROVIDER, _EP_SEND)
        if len(numbers) > 1:
            raise ValidationError(
                f"{len(numbers)} recipients; Fibo takes one number a request: use send_bulk",
                provider=_PROVIDER,
                endpoint=_EP_SEND,
            )
        prepared = _prepare(content, unicode, strip_diacritics)
        recipients = split_recipients(numbers)
        require_recipients(recipients, _PROVIDER, _EP_SEND)
        return await self._send(recipients.valid[0], prepared, sender, guid)

    def batch_sender(
        self,
        *,
        content: str | None,
        sender: str | None = None,
        unicode: bool | None = None,
        strip_diacritics: bool = False,
    ) -> BatchSender:
        """Check a campaign's options (and its content, when shared) once, before any request;
        return the sender of one batch, which for Fibo is one canonical number.

        Each message goes with ``smsGUID`` 0 and a ``message_id`` of None: a batch's
        ``request_id`` (eSMS's ``RequestId``, which the bulk engine and the journal generate)
        is not sent to Fibo."""
        sender = self._sender(sender)
        common = None if content is None else _prepare(content, unicode, strip_diacritics)

        def send_batch(
            numbers: list[str], content: str, request_id: str | None
        ) -> Awaitable[SendResult]:
            prepared = (
                common if common is not None else _prepare(content, unicode, strip_diacritics)
            )
            return self._send(numbers[0], prepared, sender, None)

        return send_batch

    def _sender(self, sender: str | None) -> str:
        """The brandname to send with (per call, else the default), or ValidationError."""
        sender = self.sender if sender is None else sender
        if not sender:
            raise ValidationError(
                "Fibo needs a sender (brandname): give sender= here or to Fibo(...)",
                provider=_PROVIDER,
                endpoint=_EP_SEND,
            )
        return checked_text(sender, "sender", _PROVIDER, _EP_SEND)

    async def _send(
        self, number: str, prepared: _Content, sender: str, guid: str | None
    ) -> SendResult:
        """GET ``SendMaskedSMS`` for one canonical number, at most once (no resend of any kind
        after the request left, not even aiohttp's own on a dead keep-alive connection).

        ``guid`` is the caller's checked ``sms_guid`` (the result's ``message_id``) or None,
        which sends ``smsGUID=0`` and reports no ``message_id``."""
        params = {
            **self._credentials,
            "senderName": sender,
            "phoneNumber": number,
            "smsMessage": prepared.text,
            "smsGUID": _DEFAULT_GUID if guid is None else guid,
            "serviceType": prepared.service_type,
        }
        transport = self._transport

        def parse(response: Response) -> SendResult:
            answer = _parse_answer(response, _EP_SEND, transport)
            return SendResult(
                provider=_PROVIDER,
                message_id=guid,
                recipients=(number,),
                segments=prepared.segments,
                cost=None,
                raw=answer,
            )

        return await transport.call(
            "GET", self._url_send, endpoint=_EP_SEND, parse=parse, params=params, idempotent=False
        )

    async def balance(self) -> Balance:
        """The account balance (``GET GetClientBalance``), read-only and retried freely.

        ``amount`` is a count of messages, or VND on money-based packages: Fibo's answer does
        not say which, so ``currency`` is None.
        """
        return await self._transport.call(
            "GET",
            self._url_balance,
            endpoint=_EP_BALANCE,
            parse=self._parse_balance,
            params={**self._credentials, "serviceType": "1"},
            idempotent=True,
        )

    async def daily_totals(self) -> DailyTotals:
        """Today's successful, failed and pending message counts (SOAP ``GetTotalMt``)."""
        transport = self._transport

        def parse(response: Response) -> DailyTotals:
            return _parse_totals(response, _EP_TOTALS, transport)

        return await transport.call(
            "POST",
            self._url_totals,
            endpoint=_EP_TOTALS,
            parse=parse,
            data=self._totals_body,
            content_type=_SOAP_XML,
            headers=_SOAP_ACTION,
            idempotent=True,
        )

    def _parse_balance(self, response: Response) -> Balance:
        """``<AccountBalance>`` of a successful answer as a number."""
        answer = _parse_answer(response, _EP_BALANCE, self._transport)
        value = (answer.account_balance or "").strip()
        if _NUMBER.fullmatch(value) is None:
            why = "AccountBalance is missing" if not value else "AccountBalance is not a number"
            raise self._transport.malformed(_EP_BALANCE, response, why)
        return Balance(provider=_PROVIDER, amount=float(value), currency=None, raw=answer)


# -- content ------------------------------------------------------------------------------------


def _check_guid(sms_guid: str | None) -> str | None:
    """The caller's ``sms_guid`` if it is one (see ``_GUID``), None when not given, or
    ValidationError (which names no part of the value)."""
    if sms_guid is None:
        return None
    if not isinstance(sms_guid, str) or _GUID.fullmatch(sms_guid) is None:
        raise ValidationError(
            f"sms_guid must be 1-{MAX_SMS_GUID_LENGTH} letters, digits, '_', '.' or '-'",
            provider=_PROVIDER,
            endpoint=_EP_SEND,
        )
    return sms_guid


class _Content(NamedTuple):
    """A content ready to send: its text, serviceType ("1" Unicode, "0" plain) and segments."""

    text: str
    service_type: str
    segments: int


def _prepare(content: str, unicode: bool | None, strip: bool) -> _Content:
    """The content as it will be sent, or ValidationError for what cannot go as asked."""
    content = checked_content(
        content, strip=strip, unicode=unicode, provider=_PROVIDER, endpoint=_EP_SEND
    )
    if strip:
        _require_plain(content, "strip_diacritics=True sends plain text (serviceType 0)")
        service_type = "0"
    elif unicode is None:
        service_type = "0" if _is_plain(content) else "1"
    elif unicode:
        service_type = "1"
    else:
        _require_plain(content, "unicode=False sends plain text (serviceType 0)")
        service_type = "0"
    parts = text.segments(content, unicode=service_type == "1")
    return _Content(content, service_type, parts.segments)


def _is_plain(content: str) -> bool:
    """Whether Fibo's plain mode ("text không dấu": text without diacritics) carries ``content``:
    GSM-7 characters that are also ASCII, so no accented letter (à, é) and no €."""
    return content.isascii() and text.is_gsm7(content)


def _require_plain(content: str, mode: str) -> None:
    """Refuse, before any request, content that plain text cannot carry."""
    if _is_plain(content):
        return
    bad = list(dict.fromkeys(c for c in content if not _is_plain(c)))
    shown = ", ".join(repr(c) for c in bad[:10]) + (", ..." if len(bad) > 10 else "")
    raise ValidationError(
        f"{mode}, which cannot carry {shown}; use unicode=True or strip_diacritics=True",
        provider=_PROVIDER,
        endpoint=_EP_SEND,
    )


# -- requests -----------------------------------------------------------------------------------


def _soap_request(client_no: str, client_pass: str) -> bytes:
    """The SOAP 1.1 ``GetTotalMt`` envelope, built once with lxml (it never changes)."""
    envelope = etree.Element(f"{{{_SOAP_NS}}}Envelope", nsmap={"soap": _SOAP_NS})
    body = etree.SubElement(envelope, f"{{{_SOAP_NS}}}Body")
    # lxml takes None as the default namespace's prefix; lxml-stubs' nsmap type leaves it out.
    default_ns: dict[Any, str] = {None: _TEMPURI}
    call = etree.SubElement(body, f"{{{_TEMPURI}}}GetTotalMt", nsmap=default_ns)
    try:
        etree.SubElement(call, f"{{{_TEMPURI}}}Username").text = client_no
        etree.SubElement(call, f"{{{_TEMPURI}}}Password").text = client_pass
    except ValueError:
        # lxml's message would quote the value: say only what is wrong.
        raise ValidationError(
            "the client number or password has characters XML cannot carry", provider=_PROVIDER
        ) from None
    return _XML_DECLARATION + etree.tostring(envelope, encoding="utf-8")


# -- answers ------------------------------------------------------------------------------------


def _parse_answer(response: Response, endpoint: str, transport: Transport) -> _Answer:
    """An ASMX answer (``<string>``-wrapped ``<SMS>``, escaped or literal) on success; the
    code's typed error, or MalformedResponse naming ``endpoint``, otherwise (an answer that
    can be read two ways too: a refusal read from one of them would hand a sent message to a
    Failover's next provider)."""
    try:
        return _read_answer(response, endpoint, transport)
    except _Ambiguous as exc:
        raise transport.malformed(endpoint, response, str(exc)) from None


def _read_answer(response: Response, endpoint: str, transport: Transport) -> _Answer:
    """``_parse_answer``'s reading (``_Ambiguous`` from the element readers)."""
    root = _xml(response, endpoint, transport, response.body)
    sms = _sms_element(root, response, endpoint, transport)
    if sms is None:
        raise transport.malformed(endpoint, response, "no <SMS> answer")
    code_text = _child_text(sms, "Code")
    if code_text is None:
        raise transport.malformed(endpoint, response, "no Code")
    code_text = code_text.strip()
    if _INTEGER.fullmatch(code_text) is None:
        raise transport.malformed(endpoint, response, "Code is not an integer")
    code = int(code_text)
    message = _field(sms, "Message", transport)
    if code in _SUCCESS:
        return _Answer(
            code=code,
            message=message,
            account_balance=_field(sms, "AccountBalance", transport),
            time=_field(sms, "Time", transport),
        )
    cls, meaning = _ERRORS.get(code, (SmsError, "undocumented error code"))
    if message and message.strip() and message.strip() != meaning:
        meaning = f"{meaning} (Fibo: {message.strip()})"
    raise cls(
        meaning,
        provider=_PROVIDER,
        code=str(code),
        http_status=response.status,
        endpoint=endpoint,
        attempts=response.attempt,
    )


def _parse_totals(response: Response, endpoint: str, transport: Transport) -> DailyTotals:
    """A SOAP ``GetTotalMtResponse`` as DailyTotals; a Fault as a typed error naming
    ``endpoint``; anything else (an ambiguous answer too) as MalformedResponse."""
    try:
        return _read_totals(response, endpoint, transport)
    except _Ambiguous as exc:
        raise transport.malformed(endpoint, response, str(exc)) from None


def _read_totals(response: Response, endpoint: str, transport: Transport) -> DailyTotals:
    """``_parse_totals``'s reading (``_Ambiguous`` from the element readers)."""
    root = _xml(response, endpoint, transport, response.body)
    if _local(root.tag) != "Envelope":
        raise transport.malformed(endpoint, response, "not a SOAP envelope")
    body = _child(root, "Body")
    first = None if body is None else next((e for e in body if isinstance(e.tag, str)), None)
    if first is None:
        raise transport.malformed(endpoint, response, "empty SOAP body")
    name = _local(first.tag)
    if name == "Fault":
        raise _fault(first, response, endpoint, transport)
    if name != "GetTotalMtResponse":
        raise transport.malformed(endpoint, response, f"unexpected SOAP answer {name[:40]!r}")
    result = (_child_text(first, "GetTotalMtResult") or "").strip()
    parts = [p.strip() for p in result.split("|")]
    if len(parts) != 3 or not all(_COUNT.fullmatch(p) for p in parts):
        raise transport.malformed(
            endpoint, response, "GetTotalMtResult is not success|failed|pending"
        )
    if transport.redactor.text(result) != result:
        # Three counts that hold the account's password (all digits): an echo, not totals.
        raise transport.malformed(endpoint, response, "GetTotalMtResult echoes a credential")
    return DailyTotals(
        provider=_PROVIDER,
        success=int(parts[0]),
        failed=int(parts[1]),
        pending=int(parts[2]),
        raw=_TotalMt(result=result),
    )


def _xml(response: Response, endpoint: str, transport: Transport, data: bytes) -> etree._Element:
    """``data`` parsed safely: size-capped, no DOCTYPE (no entity bombs, no XXE), or
    MalformedResponse; lxml's own messages are never used (they may quote the body)."""
    if len(data) > MAX_BODY:
        raise transport.malformed(endpoint, response, f"body over {MAX_BODY} bytes")
    if not data.strip():
        raise transport.malformed(endpoint, response, "empty body")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise transport.malformed(endpoint, response, "DOCTYPE refused")
    try:
        root = etree.XML(data, _PARSER)
    except (etree.LxmlError, ValueError, UnicodeError):
        raise transport.malformed(endpoint, response, "not well-formed XML") from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise transport.malformed(endpoint, response, "DOCTYPE refused")
    return root


def _sms_element(
    root: etree._Element, response: Response, endpoint: str, transport: Transport
) -> etree._Element | None:
    """The ``<SMS>`` element: the root itself, a literal child of ``<string>``, or the
    ``<string>``'s escaped text parsed once more."""
    name = _local(root.tag)
    if name == "SMS":
        return root
    if name != "string":
        return None
    sms = _child(root, "SMS")
    inner = _DECLARATION.sub("", root.text or "", count=1).strip()
    if sms is not None:
        if inner:
            raise _Ambiguous("both a literal and an escaped <SMS> answer")
        return sms
    if not inner.startswith("<"):
        return None
    inner_root = _xml(response, endpoint, transport, inner.encode("utf-8"))
    return inner_root if _local(inner_root.tag) == "SMS" else None


def _fault(
    fault: etree._Element, response: Response, endpoint: str, transport: Transport
) -> SmsError:
    """A SOAP Fault as a typed error: Client -> InvalidRequest (AuthenticationError when about
    credentials), Server -> ProviderUnavailable; the faultstring redacted."""
    code = _child_text(fault, "faultcode")
    reason = _child_text(fault, "faultstring")
    if code is None:  # SOAP 1.2: Code/Value, Reason/Text
        code_el, reason_el = _child(fault, "Code"), _child(fault, "Reason")
        code = None if code_el is None else _child_text(code_el, "Value")
        reason = None if reason_el is None else _child_text(reason_el, "Text")
    code = (code or "").strip()
    reason = (reason or "").strip()
    kind = code.rpartition(":")[2].split(".", 1)[0].lower()
    cls: type[SmsError]
    if kind in ("client", "sender"):
        lowered = reason.lower()
        about_credentials = any(word in lowered for word in _CREDENTIAL_WORDS)
        cls = AuthenticationError if about_credentials else InvalidRequest
    elif kind in ("server", "receiver"):
        cls = ProviderUnavailable
    elif kind in ("versionmismatch", "mustunderstand"):
        cls = InvalidRequest
    else:
        cls = SmsError
    first_line = reason.splitlines()[0] if reason else "no faultstring"
    return cls(
        f"SOAP fault: {_clip(transport.redactor.text(first_line))}",
        provider=_PROVIDER,
        code=_clip(transport.redactor.text(code), 60) or None,
        http_status=response.status,
        endpoint=endpoint,
        attempts=response.attempt,
    )


def _local(tag: object) -> str:
    """An element's name without its namespace ("" for comments, PIs and entities)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


class _Ambiguous(Exception):
    """An answer that reads two ways: a field twice, or markup inside a field."""


def _child(element: etree._Element, name: str) -> etree._Element | None:
    """The child element named ``name`` in any namespace, or None; ``_Ambiguous`` when there
    are several."""
    found = None
    for child in element:
        if _local(child.tag) == name:
            if found is not None:
                raise _Ambiguous(f"{name} appears more than once")
            found = child
    return found


def _child_text(element: etree._Element, name: str) -> str | None:
    """The text of the child named ``name`` ("" when empty), or None when absent; comments and
    processing instructions are skipped, an element inside it is ``_Ambiguous``."""
    child = _child(element, name)
    if child is None:
        return None
    if any(isinstance(part.tag, str) for part in child):
        raise _Ambiguous(f"{name} holds markup")
    return "".join(str(part) for part in child.itertext())


def _field(element: etree._Element, name: str, transport: Transport) -> str | None:
    """A child's text for ``raw``: redacted and clipped, since the provider may echo a secret."""
    value = _child_text(element, name)
    return None if value is None else _clip(transport.redactor.text(value))


def _clip(value: str, limit: int = _FIELD_EXCERPT) -> str:
    """At most ``limit`` characters of a provider's text."""
    return value if len(value) <= limit else value[:limit] + "..."


PROVIDER: Final = Provider(
    name=_PROVIDER,
    title="Fibo",
    client=Fibo,
    credentials=Fibo.credentials,
    price=Fibo.price,
    unit=Fibo.unit,
    simulator="smsvn.sandbox.fibo:FiboSimulator",
    sender_option=Fibo.sender_option,
)
"""Fibo in the provider registry."""
