"""SpeedSMS (speedsms.vn): balance, SMS to up to 100 numbers a request, and voice OTP calls.

Wire format: HTTP Basic auth with the access token as user name; JSON bodies; every answer is an
envelope ``{"status": "success"|"error", "code": "00"|"<code>", "data"|"message": ...}`` except
the rate limiter's 429 and the framework's 401, which share a different shape.

Error classes: SpeedSMS documents one code, 101 "Invalid or missing parameters", for every bad
parameter, the sender included; it has no code of its own for a sender (brandname or device id)
it does not know, as eSMS (104, 177) and Fibo (5) have. A 101 whose message names the sender or
brandname is therefore ``SenderNotRegistered`` (as those providers' codes are, so ``Failover``
moves on); any other 101, a bare "Invalid or missing parameters" included, stays
``InvalidRequest``, since nothing in it says the sender was the problem.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar, Unpack

import msgspec

from smsvn import phone, text
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
from smsvn.models import (
    Balance,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    InvalidNumber,
    SendResult,
)
from smsvn.providers import _webhook
from smsvn.providers._base import (
    BaseClient,
    ClientOptions,
    checked_content,
    checked_credential,
    checked_text,
    not_plain,
    recipient_list,
    require_recipients,
    split_recipients,
)
from smsvn.providers._spec import Credential, Event, Provider, Webhook
from smsvn.providers._wire import DECODE_ERRORS, MAX_DIGITS, finite_number, is_count, why
from smsvn.transport import Response

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMIT",
    "MAX_RECIPIENTS",
    "MAX_SEGMENTS",
    "SMS_TYPES",
    "SpeedSMS",
]

DEFAULT_BASE_URL: Final = "https://api.speedsms.vn/index.php"
DEFAULT_RATE_LIMIT: Final = RateLimit(requests=60, period=60.0)
"""The documented limit: 60 requests in 60 seconds per account."""
MAX_RECIPIENTS: Final = 100
"""Numbers one ``/sms/send`` request may carry."""
MAX_SEGMENTS: Final = 5
"""Longest content smsvn lets through to SpeedSMS (longer is refused with code 113): 5 segments,
765 GSM-7 or 335 UCS-2 characters, the concatenation limit Vietnamese carriers apply."""
SMS_TYPES: Final = frozenset({2, 3, 4, 5})
"""2 random long number, 3 registered brandname, 4 default brandname, 5 customer's Android app."""
_NEEDS_SENDER: Final = frozenset({3, 5})
"""The types that use ``sender``; every other type sends ``""`` (as the vendor's own Java and C#
samples send ``"brandname": ""``), never the client's default sender."""
_NO_SENDER: Final = SMS_TYPES - _NEEDS_SENDER
"""The types that need no sender: valid whatever ``sender`` is, and they send ``""``."""
_SENDER_WORDS: Final = ("sender", "brandname", "brand name")
"""Words that make an error 101 about the sender (see the module docstring)."""

_PROVIDER: Final = "speedsms"

D = TypeVar("D")


# -- wire structs -------------------------------------------------------------------------------


class _UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    email: str | None = None
    balance: float | str
    currency: str | None = None


class _SendData(msgspec.Struct, frozen=True, kw_only=True, rename={"tran_id": "tranId"}):
    tran_id: int | str
    total_sms: int | None = msgspec.field(default=None, name="totalSMS")
    total_price: float | None = msgspec.field(default=None, name="totalPrice")
    invalid_phone: list[str | int] = msgspec.field(default_factory=list, name="invalidPhone")


class _Envelope(msgspec.Struct, Generic[D], frozen=True, kw_only=True):
    status: str | int = ""
    code: str | int | None = None
    message: str | None = None
    data: D | None = None
    invalid_phone: list[str | int] | None = msgspec.field(default=None, name="invalidPhone")


class _SendRequest(msgspec.Struct, frozen=True):
    to: msgspec.Raw | list[str]
    """The international numbers, ``["84912345678", ...]``: one as a list, more as the JSON
    array ``_to_array`` writes."""
    content: str
    sms_type: int
    sender: str


class _VoiceRequest(msgspec.Struct, frozen=True):
    to: str
    """The national form, ``0912345678``: the voice document's "09x" form and example."""
    content: str


_USER_INFO = msgspec.json.Decoder(_Envelope[_UserInfo])
_SEND = msgspec.json.Decoder(_Envelope[_SendData])
_ENCODER = msgspec.json.Encoder()

_ERRORS: Final[dict[str, tuple[type[SmsError], str]]] = {
    "007": (AuthenticationError, "IP locked"),
    "008": (AuthenticationError, "account blocked"),
    "009": (AuthenticationError, "account not allowed to call the API"),
    "101": (InvalidRequest, "invalid or missing parameters"),
    "105": (InvalidRecipient, "phone number invalid"),
    "110": (InvalidRequest, "content encoding not supported"),
    "113": (InvalidRequest, "content too long"),
    "300": (InsufficientBalance, "balance not enough"),
    "500": (ProviderUnavailable, "internal error, try again"),
    "601": (InvalidRequest, "OTP code not valid"),
}
"""Every documented SpeedSMS error code -> (error class, meaning); a 101 about the sender is
``SenderNotRegistered`` instead (``_about_sender``)."""


def _code(raw: str | int | None) -> str | None:
    """SpeedSMS codes are 3-digit strings ("007"); accept them as numbers too."""
    if raw is None:
        return None
    text = str(raw).strip()
    return text.zfill(3) if text.isdigit() else text


def _international(canonical: str) -> str:
    """0912345678 -> 84912345678, the form the vendor's sample sends."""
    return "84" + canonical[1:]


def _to_array(numbers: list[str]) -> msgspec.Raw:
    """Canonical numbers as the JSON array of their ``_international`` forms.

    The hot path of every send: joining the canonical numbers once and rewriting each
    element's leading ``0`` as ``84`` in the joined text costs a third of building 100 new
    strings first (benchmarks/README.md). Exact for canonical numbers: each is ``0`` + 9 ASCII
    digits (nothing JSON escapes), so ``","0`` occurs only where an element starts.
    """
    if not numbers:
        return msgspec.Raw(b"[]")
    return msgspec.Raw(('["84' + '","'.join(numbers)[1:].replace('","0', '","84') + '"]').encode())


class SpeedSMS(BaseClient):
    """Async client for SpeedSMS.

    ``rate_limit`` defaults to the documented 60 requests / 60 s for the account (shared by every
    client of the same token in the process); ``None`` turns the limiter off. ``sms_type`` and
    ``sender`` are the sending defaults that ``send`` and ``send_bulk`` use when not given.
    """

    provider = _PROVIDER
    batch_size = MAX_RECIPIENTS
    default_rate_limit = DEFAULT_RATE_LIMIT
    price = 250.0
    unit = "VND"
    credentials = (
        Credential(name="token", env="SMSVN_SPEEDSMS_TOKEN", help="SpeedSMS access token"),
    )
    sender_option = "sender"
    env_options = (("base_url", str), ("sms_type", int))

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        sms_type: int = 2,
        sender: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        checked_credential(token, "a SpeedSMS access token", _PROVIDER)
        if sender is not None:
            sender = _check_sender(sender)
        _check_type(sms_type, sender)
        auth = base64.b64encode(f"{token}:x".encode()).decode()
        super().__init__(
            base_url=base_url,
            account=token,
            secrets=(token, auth),
            options=options,
            headers={"Authorization": f"Basic {auth}"},
        )
        self.sms_type = sms_type
        self.sender = sender
        self._url_user_info = f"{self.base_url}/user/info"
        self._url_send = f"{self.base_url}/sms/send"
        self._url_voice = f"{self.base_url}/voice/otp"

    async def balance(self) -> Balance:
        """The account balance in VND (``GET /user/info``)."""
        return await self._transport.call(
            "GET",
            self._url_user_info,
            endpoint="user/info",
            parse=self._parse_balance,
            idempotent=True,
        )

    async def send(
        self,
        to: str | Sequence[str],
        content: str,
        *,
        sms_type: int | None = None,
        sender: str | None = None,
        strip_diacritics: bool = False,
    ) -> SendResult:
        """Send ``content`` to 1-100 numbers in one request (``POST /sms/send``).

        SpeedSMS picks the encoding from the content itself; ``strip_diacritics=True`` sends the
        plain (GSM-7, cheaper) form instead. Content SpeedSMS would refuse (codes 110/113) is
        refused locally with ``ValidationError``.

        Numbers that cannot be Vietnamese mobile numbers are reported in ``invalid`` and the rest
        go out; more than 100 numbers, or none valid, is a ``ValidationError`` before any request.
        """
        sender = self.sender if sender is None else _check_sender(sender)
        if sms_type is None:
            sms_type = self.sms_type  # checked when the client was made
        elif sms_type.__class__ is not int:
            _check_type(sms_type, sender)  # a bool, a list: refused before the lookup below
        if sms_type in _NO_SENDER:
            wire_sender = ""  # a valid type that needs no sender, so sends none
        else:
            _check_type(sms_type, sender)
            wire_sender = _wire_sender(sms_type, sender)
        content = _prepare(content, strip_diacritics)
        if isinstance(to, str):
            # One number (an OTP): what split_recipients and require_recipients make of it,
            # without building their Recipients; an invalid number takes their path below.
            try:
                number = phone.normalize(to)
            except ValidationError:
                recipients = split_recipients(to)
            else:
                given = None if number is to else {number: to}
                return await self._send([number], content, sms_type, wire_sender, (), given)
        else:
            numbers = recipient_list(to, _PROVIDER, "sms/send")
            if len(numbers) > MAX_RECIPIENTS:
                raise ValidationError(
                    f"{len(numbers)} recipients; SpeedSMS takes at most {MAX_RECIPIENTS} a request",
                    provider=_PROVIDER,
                    endpoint="sms/send",
                )
            recipients = split_recipients(numbers)
        require_recipients(recipients, _PROVIDER, "sms/send")
        return await self._send(
            recipients.valid,
            content,
            sms_type,
            wire_sender,
            recipients.invalid,
            recipients.given,
        )

    def batch_sender(
        self,
        *,
        content: str | None,
        sms_type: int | None = None,
        sender: str | None = None,
        strip_diacritics: bool = False,
    ) -> BatchSender:
        """Check a campaign's options once; return the sender of one batch of canonical numbers."""
        sms_type = self.sms_type if sms_type is None else sms_type
        sender = self.sender if sender is None else _check_sender(sender)
        _check_type(sms_type, sender)
        wire_sender = _wire_sender(sms_type, sender)
        common = None if content is None else _prepare(content, strip_diacritics)

        def send_batch(
            numbers: list[str], text: str, request_id: str | None
        ) -> Awaitable[SendResult]:
            body = common if common is not None else _prepare(text, strip_diacritics)
            return self._send(numbers, body, sms_type, wire_sender, (), None)

        return send_batch

    def _send(
        self,
        numbers: list[str],
        content: str,
        sms_type: int,
        sender: str,
        invalid: Sequence[InvalidNumber],
        given: Mapping[str, str] | None,
    ) -> Awaitable[SendResult]:
        """POST one batch of canonical numbers; ``given`` maps them back to their written form.

        A plain function returning the transport's call (one coroutine fewer to create and to
        pass every resumption through); nothing is sent until it is awaited."""
        body = _ENCODER.encode(
            _SendRequest(
                # One number (an OTP): a list of its one string, no join or replace.
                to=["84" + numbers[0][1:]] if len(numbers) == 1 else _to_array(numbers),
                content=content,
                sms_type=sms_type,
                sender=sender,
            )
        )

        def parse(response: Response) -> SendResult:
            data = self._parse(response, _SEND, "sms/send")
            if not data.invalid_phone:
                accepted = tuple(numbers)
                refused = tuple(invalid) if invalid else ()
            else:
                bad = {_national(p) for p in data.invalid_phone}
                accepted = tuple(n for n in numbers if n not in bad)
                refused = (
                    *invalid,
                    *(
                        InvalidNumber(given.get(n, n) if given else n, "refused by SpeedSMS")
                        for n in numbers
                        if n in bad
                    ),
                )
            return SendResult(
                provider=_PROVIDER,
                message_id=str(data.tran_id),
                recipients=accepted,
                invalid=refused,
                segments=data.total_sms,
                cost=data.total_price,
                raw=data,
            )

        return self._transport.call(
            "POST",
            self._url_send,
            endpoint="sms/send",
            parse=parse,
            data=body,
            content_type=_JSON,
            idempotent=False,
        )

    async def voice_otp(self, to: str, code: str) -> SendResult:
        """Call ``to`` and read out ``code`` (digits 0-9 only, checked locally) (``/voice/otp``).

        The number goes in the national form (``0912345678``), the form the voice document
        asks for, whatever form it was given in."""
        if not isinstance(code, str) or not code or not code.isascii() or not code.isdigit():
            raise ValidationError(
                "a voice OTP code must be a str of digits 0-9 only",
                provider=_PROVIDER,
                endpoint="voice/otp",
            )
        recipients = split_recipients(to)
        require_recipients(recipients, _PROVIDER, "voice/otp")
        number = recipients.valid[0]
        body = _ENCODER.encode(_VoiceRequest(to=number, content=code))

        def parse(response: Response) -> SendResult:
            data = self._parse(response, _SEND, "voice/otp")
            return SendResult(
                provider=_PROVIDER,
                message_id=str(data.tran_id),
                recipients=(number,),
                segments=None,
                cost=data.total_price,
                raw=data,
            )

        return await self._transport.call(
            "POST",
            self._url_voice,
            endpoint="voice/otp",
            parse=parse,
            data=body,
            content_type=_JSON,
            idempotent=False,
        )

    def sender_for(self, options: Mapping[str, Any]) -> str | None:
        """Types 3 and 5 go out under the sender; types 2 and 4 under none of the caller's."""
        sms_type = options.get("sms_type")
        sms_type = self.sms_type if sms_type is None else sms_type
        if not isinstance(sms_type, int) or sms_type not in _NEEDS_SENDER:
            return None  # a type of the wrong kind: send() refuses it
        return super().sender_for(options)

    def _retry_after(self, response: Response) -> float | None:
        """SpeedSMS's wait hint on a 429: ``X-Rate-Limit-Reset``."""
        return _reset_seconds(response)

    # -- answers ---------------------------------------------------------------------------

    def _parse_balance(self, response: Response) -> Balance:
        info = self._parse(response, _USER_INFO, "user/info")
        amount = finite_number(str(info.balance))
        if amount is None:
            raise self._transport.malformed("user/info", response, "balance is not a number")
        return Balance(provider=_PROVIDER, amount=amount, currency=info.currency or "VND", raw=info)

    def _parse(
        self, response: Response, decoder: msgspec.json.Decoder[_Envelope[D]], endpoint: str
    ) -> D:
        """The envelope's ``data`` on success; the right typed error otherwise."""
        status = response.status
        if status in (401, 403):
            raise AuthenticationError(
                "the access token was refused",
                provider=_PROVIDER,
                http_status=status,
                endpoint=endpoint,
                attempts=response.attempt,
            )
        try:
            envelope = decoder.decode(response.body)
        except DECODE_ERRORS as exc:
            raise self._transport.malformed(endpoint, response, why(exc)) from None
        if envelope.status == "success" and status == 200:
            data = envelope.data
            if data is None:
                raise self._transport.malformed(endpoint, response, "success without data")
            if (
                isinstance(data, _SendData)
                and data.tran_id.__class__ is not str
                and not data.invalid_phone
            ):
                # Only numbers (an int ``tranId``, no refused numbers): the redactor only ever
                # changes strings, so the usual send answer needs no walk.
                return data
            # The provider may echo what it was sent: ``raw`` must never hold the token.
            return self._transport.redactor.value(data, response.body)
        code = _code(envelope.code)
        if envelope.status != "error" or code is None:
            raise self._transport.malformed(endpoint, response, f"HTTP {status}, no error code")
        cls, meaning = _ERRORS.get(code, (SmsError, "undocumented error code"))
        if code == "101" and _about_sender(envelope.message):
            cls = SenderNotRegistered
        message = envelope.message or meaning
        if envelope.invalid_phone:
            message += f" (invalid: {', '.join(str(p) for p in envelope.invalid_phone)})"
        raise cls(
            message,
            provider=_PROVIDER,
            code=code,
            http_status=status,
            endpoint=endpoint,
            attempts=response.attempt,
        )


_JSON: Final = "application/json"


def _check_type(sms_type: object, sender: str | None) -> None:
    """Refuse a message type SpeedSMS does not have (anything but one of the ``SMS_TYPES`` ints:
    a bool or a list included) and a type 3 or 5 without a sender."""
    if isinstance(sms_type, bool) or not isinstance(sms_type, int) or sms_type not in SMS_TYPES:
        raise ValidationError(
            f"sms_type {sms_type!r} is not one of {sorted(SMS_TYPES)}", provider=_PROVIDER
        )
    if sms_type in _NEEDS_SENDER and not sender:
        raise ValidationError(
            f"sms_type {sms_type} needs a sender (brandname or device id)", provider=_PROVIDER
        )


def _check_sender(sender: object) -> str:
    """The sender as it goes in the JSON body (``checked_text``): not a ``str``, or with control
    characters or lone surrogates (which failed as ``UnicodeEncodeError`` in the encoder), it is
    refused."""
    return checked_text(sender, "sender", _PROVIDER, "sms/send")


def _wire_sender(sms_type: int, sender: str | None) -> str:
    """The ``sender`` field for ``sms_type``: the sender for types 3 and 5, else ``""`` (types 2
    and 4 pick their own sender; a default brandname must not go with them)."""
    return (sender or "") if sms_type in _NEEDS_SENDER else ""


def _about_sender(message: str | None) -> bool:
    """Whether an error 101's message names the sender or brandname (any case)."""
    if not message:
        return False
    lowered = message.lower()
    return any(word in lowered for word in _SENDER_WORDS)


_PLAIN_MAX: Final = 5 * 67
"""The longest printable-ASCII content that fits ``MAX_SEGMENTS`` whatever its encoding: as
UCS-2 (a character SpeedSMS's GSM-7 lacks, such as a backtick) 5 x 67 characters; as GSM-7,
every character at most 2 septets (an escape pair), so at most 670 of 5 x 153."""


def _prepare(content: str, strip: bool) -> str:
    """The content to send, or a ValidationError for what SpeedSMS would refuse (110, 113)."""
    if (
        content.__class__ is str
        and not strip
        and len(content) <= _PLAIN_MAX
        and content.isascii()
        and content.isprintable()
        and content
    ):
        # Printable ASCII (an OTP, most templates): non-empty, encodable, in the BMP and within
        # MAX_SEGMENTS, so every check below would pass it unchanged. (Asked to go plain, a
        # backtick, which GSM-7 lacks, is refused below.)
        return content
    prepared = _PREPARED.get((content, strip)) if content.__class__ is str else None
    if prepared is not None:
        return prepared
    prepared = _check_content(content, strip)
    if content.__class__ is str:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.clear()
        _PREPARED[content, strip] = prepared
    return prepared


_PREPARED: dict[tuple[str, bool], str] = {}
"""The last contents ``_check_content`` passed, as prepared: a campaign or a notification
template sends the same text again and again (only contents that passed are kept)."""
_PREPARED_MAX: Final = 64


def _check_content(content: str, strip: bool) -> str:
    """``_prepare``'s checks, each in full."""
    content = checked_content(
        content,
        strip=strip,
        unicode=None,
        provider=_PROVIDER,
        endpoint="sms/send",
        refused_as="; SpeedSMS would refuse it with 110",
    )
    if strip and text.needs_unicode(content):
        # Asked for the plain (cheaper) form: what stripping leaves (₫, smart quotes, a
        # no-break space) must not send UCS-2 behind the caller's back.
        raise not_plain(
            content,
            "strip_diacritics=True",
            "replace them, or send without strip_diacritics (as Unicode)",
            _PROVIDER,
            "sms/send",
        )
    if not _in_bmp(content):
        raise ValidationError(
            "content has characters SpeedSMS cannot carry (emoji and others outside the Basic "
            "Multilingual Plane); SpeedSMS would refuse it with 110",
            provider=_PROVIDER,
            endpoint="sms/send",
        )
    count = text.segments(content)
    if count.segments > MAX_SEGMENTS:
        raise ValidationError(
            f"content is {count.characters} {count.encoding.value} characters, "
            f"{count.segments} segments; SpeedSMS takes at most {MAX_SEGMENTS} "
            "(it would refuse it with 113)",
            provider=_PROVIDER,
            endpoint="sms/send",
        )
    return content


def _in_bmp(content: str) -> bool:
    """Whether every character is in the Basic Multilingual Plane (no emoji)."""
    return content.isascii() or max(content) <= "\uffff"


def _national(number: str | int) -> str:
    """A number as SpeedSMS reports it back (84..., 0..., or an int) -> canonical 0... form."""
    text = str(number).strip().lstrip("+")
    return "0" + text[2:] if text.startswith("84") else text


def _reset_seconds(response: Response) -> float | None:
    """``X-Rate-Limit-Reset``: a count of seconds to wait (not an epoch time)."""
    value = response.headers.get("X-Rate-Limit-Reset")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


# -- webhooks ----------------------------------------------------------------------------------
# SpeedSMS POSTs JSON to the one URL registered in its dashboard, signed by nothing: a delivery
# report {"type": "report", "tranId": 1234, "phone": "0912345678", "status": 0} or an inbound SMS
# {"type": "sms", "phone": "0912345678", "content": "text"}. ``tranId`` may be a number or a
# string; ``status`` maps 0 -> DELIVERED, 1..63 -> TEMPORARY_FAILURE, 64 and above -> FAILED.


class SpeedSmsReport(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="report"):
    """SpeedSMS delivery-report webhook body, as sent (the ``raw`` of its DeliveryReport)."""

    tran_id: int | str = msgspec.field(name="tranId")
    phone: str
    status: int | str


class SpeedSmsInbound(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="sms"):
    """SpeedSMS inbound-SMS webhook body, as sent (the ``raw`` of its InboundSms)."""

    phone: str
    content: str


_CALLBACK: Final = msgspec.json.Decoder(SpeedSmsReport | SpeedSmsInbound)


def parse_speedsms(body: bytes) -> DeliveryReport | InboundSms:
    """Decode one SpeedSMS webhook body (JSON, tagged by ``type``) into a typed event.

    ``tranId`` may be a number or a string and is carried as a string; ``status`` may be a
    number or a numeric string. Anything malformed raises :class:`ValidationError`.
    """
    try:
        wire = _CALLBACK.decode(body)
    except DECODE_ERRORS as exc:
        raise _webhook.invalid(_PROVIDER, f"malformed body: {why(exc)}") from None
    number = _webhook.phone(_PROVIDER, wire.phone)
    if isinstance(wire, SpeedSmsInbound):
        return InboundSms(provider=_PROVIDER, phone=number, content=wire.content, raw=wire)
    status = _report_status(wire.status)
    return DeliveryReport(
        provider=_PROVIDER,
        message_id=_webhook.identifier(_PROVIDER, "tranId", str(wire.tran_id)),
        phone=number,
        state=_report_state(status),
        raw_status=str(status),
        raw=wire,
    )


def _report_status(value: int | str) -> int:
    """A report's ``status``: a non-negative number, maybe written as a string."""
    if isinstance(value, str):
        text = value.strip()
        if not is_count(text):
            raise _webhook.invalid(_PROVIDER, "status is not a non-negative integer")
        return int(text)
    if value < 0:
        raise _webhook.invalid(_PROVIDER, "status is negative")
    if value >= _STATUS_BOUND:  # as the string form's bound (a 40-digit number is no status)
        raise _webhook.invalid(_PROVIDER, "status is not a non-negative integer")
    return value


_STATUS_BOUND: Final = 10**MAX_DIGITS


def _report_state(status: int) -> DeliveryState:
    """Map a report's status: 0 delivered, 1..63 temporary failure, 64 and above failed."""
    if status == 0:
        return DeliveryState.DELIVERED
    if status < 64:
        return DeliveryState.TEMPORARY_FAILURE
    return DeliveryState.FAILED


def _parse_callback(body: bytes, query: Mapping[str, str]) -> Event:
    """The registry's webhook parser: SpeedSMS puts everything in the POSTed body."""
    return parse_speedsms(body)


PROVIDER: Final = Provider(
    name=_PROVIDER,
    title="SpeedSMS",
    client=SpeedSMS,
    credentials=SpeedSMS.credentials,
    price=SpeedSMS.price,
    unit=SpeedSMS.unit,
    simulator="smsvn.sandbox.speedsms:SpeedSMSSimulator",
    sender_option=SpeedSMS.sender_option,
    webhook=Webhook(methods=("POST",), parse=_parse_callback),
)
"""SpeedSMS in the provider registry."""
