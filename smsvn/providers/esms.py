"""eSMS (esms.vn): brandname and fixed-number SMS, status lookups, and voice calls (OTP, template,
recording) over the REST JSON form of its WCF service.

Wire format: ``ApiKey`` and ``SecretKey`` travel in the query string, the path or the JSON body,
depending on the endpoint; request fields go as strings (``"IsUnicode": "1"``). Every answer
carries its result in ``CodeResult`` or ``CodeResponse`` (string or number; ``"100"`` = success),
except a bad request's ``{"error": "Invalid request"}``, which carries none. SMS and voice have
separate code tables in which the same number means different things.

Sends are made safe to resend by ``RequestId``: every send carries one, reused on each attempt, and
eSMS refuses a second request with the same id (code 124), so a resend after an unknown outcome
can never deliver a message twice.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final, Literal, NamedTuple, TypeVar, Unpack
from urllib.parse import quote

import msgspec

from smsvn import phone, text
from smsvn._checks import checked_int
from smsvn._redact import RUN, Redactor
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
    Brandname,
    BrandnameType,
    CallReport,
    CallResult,
    CallStatus,
    DeliveryReport,
    DeliveryState,
    InvalidNumber,
    MessageStatus,
    ReceiverStatus,
    SendResult,
    SendStatus,
    SentMessage,
)
from smsvn.providers import _webhook
from smsvn.providers._base import (
    BaseClient,
    ClientOptions,
    checked_content,
    checked_credential,
    checked_text,
    checked_url,
    not_plain,
    recipient_list,
    require_recipients,
    split_recipients,
)
from smsvn.providers._spec import Credential, Event, Provider, Webhook
from smsvn.providers._wire import DECODE_ERRORS, is_count, opt_str, why
from smsvn.transport import Response

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_VOICE_BASE_URL",
    "ESMS",
    "MAX_ADVERTISING_LENGTH",
    "MAX_REQUEST_ID_LENGTH",
    "MIN_ADVERTISING_RECIPIENTS",
    "SMS_TYPES",
    "VOICES",
]

DEFAULT_BASE_URL: Final = "https://rest.esms.vn/MainService.svc/json"
DEFAULT_VOICE_BASE_URL: Final = "https://voiceapi.esms.vn/MainService.svc/json"
DEFAULT_RATE_LIMIT: Final = RateLimit(requests=20, period=1.0, burst=5)
"""eSMS documents no rate limit: a conservative 20 requests a second per account, 5 at once."""
SMS_TYPES: Final = frozenset({1, 2, 8})
"""1 advertising brandname, 2 customer-care brandname, 8 fixed 10-digit number (template)."""
MAX_REQUEST_ID_LENGTH: Final = 50
"""The longest ``RequestId`` smsvn sends: eSMS's developer guide caps it at 50 characters, its
older API document at 120 (code 159 beyond that); the stricter limit holds on either. The ids
smsvn makes itself (uuid4 hex) are 32."""
MIN_ADVERTISING_RECIPIENTS: Final = 20
"""An advertising (type 1) send must carry at least this many numbers (code 119)."""
MAX_ADVERTISING_LENGTH: Final = 422
"""An advertising (type 1) content may be at most this many characters (code 131)."""
VOICES: Final = frozenset({"male", "female", "hatieumai", "ngoclam"})
"""Northern man, northern woman, southern woman, Huế woman."""
_SPEEDS: Final = range(-3, 4)
_SINGLE_NUMBER_TYPES: Final = frozenset({2, 8})
_NEEDS_BRANDNAME: Final = frozenset({1, 2})
_SEPARATOR: Final = "||"

_PROVIDER: Final = "esms"
_SUCCESS: Final = "100"
_DUPLICATE: Final = "124"
_VN_TZ: Final = timezone(timedelta(hours=7), "ICT")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_WCF_DATE: Final = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
_SEPARATORS: Final = re.compile(r"[\s.()-]+")
_JSON: Final = "application/json"

_EP_SEND_POST: Final = "SendMultipleMessage_V4_post_json"
_EP_SEND_GET: Final = "SendMultipleMessage_V4_get"
_EP_BALANCE: Final = "GetBalance"
_EP_STATUS: Final = "GetSendStatus"
_EP_RECEIVERS: Final = "GetSmsReceiverStatus_get"
_EP_SENT_DATA: Final = "GetSmsSentData"
_EP_BRANDNAMES: Final = "GetListBrandname"
_EP_VOICE_OTP: Final = "VoiceOTP"
_EP_CALL_TEMPLATE: Final = "MakeCallTemplate_V2"
_EP_CALL_RECORD: Final = "MakeCallRecord_V2"
_EP_CALL_STATUS: Final = "voice/GetSendStatus"


# -- wire structs -------------------------------------------------------------------------------


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    """What every eSMS answer may carry: a result code under one of two names, and a message."""

    code_result: str | int | None = msgspec.field(default=None, name="CodeResult")
    code_response: str | int | None = msgspec.field(default=None, name="CodeResponse")
    error_message: str | None = msgspec.field(default=None, name="ErrorMessage")


class _SendAnswer(_Answer, frozen=True, kw_only=True):
    """A send's or a call's answer: the new message's (or call's) opaque id."""

    sms_id: str | int | None = msgspec.field(default=None, name="SMSID")
    count_regenerate: int | str | None = msgspec.field(default=None, name="CountRegenerate")


class _BalanceAnswer(_Answer, frozen=True, kw_only=True):
    """``GetBalance``: the balance in VND."""

    balance: float | None = msgspec.field(default=None, name="Balance")
    user_id: int | str | None = msgspec.field(default=None, name="UserID")


class _StatusAnswer(_Answer, frozen=True, kw_only=True):
    """``GetSendStatus``: a message's status (1-6) and its receiver counts."""

    sms_id: str | int | None = msgspec.field(default=None, name="SMSID")
    send_status: int | None = msgspec.field(default=None, name="SendStatus")
    send_success: int | None = msgspec.field(default=None, name="SendSuccess")
    send_failed: int | None = msgspec.field(default=None, name="SendFailed")
    # The document's sample writes SendSuccess/SendFailed, its table SentSuccess/SentFailed.
    sent_success: int | None = msgspec.field(default=None, name="SentSuccess")
    sent_failed: int | None = msgspec.field(default=None, name="SentFailed")
    total_receiver: int | None = msgspec.field(default=None, name="TotalReceiver")
    total_sent: int | None = msgspec.field(default=None, name="TotalSent")


class _Receiver(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``ReceiverList``."""

    phone: str | int = msgspec.field(name="Phone")
    is_sent: bool = msgspec.field(default=False, name="IsSent")
    sent_result: bool | None = msgspec.field(default=None, name="SentResult")


class _ReceiversAnswer(_Answer, frozen=True, kw_only=True):
    """``GetSmsReceiverStatus_get``: each recipient of a message."""

    receivers: list[_Receiver] | None = msgspec.field(default=None, name="ReceiverList")


class _SentItem(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``SentData``; ``SentTime`` is a WCF date, decoded after the code check."""

    sms_id: str | int = msgspec.field(name="SmsId")
    phone: str | int = msgspec.field(name="Phone")
    content: str | None = msgspec.field(default=None, name="Content")
    sms_type: int | None = msgspec.field(default=None, name="SmsType")
    sent_time: str | None = msgspec.field(default=None, name="SentTime")
    sent_status: bool | int | str | None = msgspec.field(default=None, name="SentStatus")


class _SentDataAnswer(_Answer, frozen=True, kw_only=True):
    """``GetSmsSentData``: the messages sent in a range of days."""

    sent: list[_SentItem] | None = msgspec.field(default=None, name="SentData")


class _BrandnameItem(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``ListBrandName``: a name and its type (1 advertising, 2 customer care)."""

    name: str = msgspec.field(name="Brandname")
    type: int | None = msgspec.field(default=None, name="Type")


class _BrandnamesAnswer(_Answer, frozen=True, kw_only=True):
    """``GetListBrandname``: the account's brandnames."""

    brandnames: list[_BrandnameItem] | None = msgspec.field(default=None, name="ListBrandName")


class _CallStatusAnswer(_Answer, frozen=True, kw_only=True):
    """The voice ``GetSendStatus``: lower-case fields (the document's sample), or capitalised
    (its table); duration and key may come as strings."""

    call_duration: int | str | None = msgspec.field(default=None, name="callduration")
    call_status: str | None = msgspec.field(default=None, name="callstatus")
    ivr: str | int | None = None
    call_duration_table: int | str | None = msgspec.field(default=None, name="CallDuration")
    call_status_table: str | None = msgspec.field(default=None, name="CallStatus")
    ivr_table: str | int | None = msgspec.field(default=None, name="Ivr")


class _SendOptions(NamedTuple):
    """A send's checked options, with the request fields that do not change between sends."""

    sms_type: int
    brandname: str | None
    sandbox: str
    send_date: str | None
    callback_url: str | None
    method: str
    endpoint: str
    redactor: Redactor
    """The client's, or one that also withholds the callback URL (``_redactor_for``)."""


class _Content(NamedTuple):
    """A content ready to send: its text, ``IsUnicode`` ("1" or "0") and segments per number."""

    text: str
    is_unicode: str
    segments: int


A = TypeVar("A", bound=_Answer)
V = TypeVar("V")

# strict=False: eSMS writes numbers and booleans as strings in some answers ("CountRegenerate":"0").
_SEND: Final = msgspec.json.Decoder(_SendAnswer, strict=False)
_BALANCE: Final = msgspec.json.Decoder(_BalanceAnswer, strict=False)
_STATUS: Final = msgspec.json.Decoder(_StatusAnswer, strict=False)
_RECEIVERS: Final = msgspec.json.Decoder(_ReceiversAnswer, strict=False)
_SENT_DATA: Final = msgspec.json.Decoder(_SentDataAnswer, strict=False)
_BRANDNAMES: Final = msgspec.json.Decoder(_BrandnamesAnswer, strict=False)
_CALL_STATUS: Final = msgspec.json.Decoder(_CallStatusAnswer, strict=False)
_ENCODER: Final = msgspec.json.Encoder()

_Table = dict[str, tuple[type[SmsError], str]]

_SMS_ERRORS: Final[_Table] = {
    "99": (ProviderUnavailable, "unknown error, retry later"),
    "101": (AuthenticationError, "login failed: wrong ApiKey or SecretKey"),
    "102": (AuthenticationError, "account locked"),
    "103": (InsufficientBalance, "balance not enough"),
    "104": (SenderNotRegistered, "brandname wrong, does not exist or was cancelled"),
    "105": (InvalidRequest, "id not found"),
    "108": (InvalidRecipient, "phone number format invalid"),
    "118": (InvalidRequest, "invalid message type"),
    "119": (InvalidRequest, "an advertising brandname send needs at least 20 numbers"),
    "124": (InvalidRequest, "RequestId already received"),
    "131": (InvalidRequest, "advertising brandname content is at most 422 characters"),
    "132": (SenderNotRegistered, "no permission for the fixed number 8755"),
    "140": (AuthenticationError, "IP address not allowed"),
    "145": (InvalidRequest, "wrong social-network template"),
    "146": (InvalidRequest, "wrong customer-care template"),
    "159": (InvalidRequest, "RequestId over 120 characters"),
    "177": (SenderNotRegistered, "brandname not registered on a carrier"),
}
"""Every documented eSMS SMS result code -> (error class, meaning)."""

_SENT_DATA_ERRORS: Final[_Table] = {
    **_SMS_ERRORS,
    "140": (InvalidRequest, "invalid time range"),
}
"""GetSmsSentData uses 140 for a bad time range, not for a refused IP address."""

_VOICE_ERRORS: Final[_Table] = {
    "99": (ProviderUnavailable, "unknown error, retry later"),
    "101": (AuthenticationError, "wrong ApiKey or SecretKey"),
    "102": (InvalidRequest, "no price list for the account"),
    "103": (InsufficientBalance, "balance not enough"),
    "104": (InvalidRequest, "call template does not exist or its variables are invalid"),
    "105": (InvalidRequest, "template variables invalid"),
    "106": (InvalidRequest, "recording does not exist"),
    "107": (InvalidRecipient, "wrong phone number"),
}
"""Every documented eSMS voice result code -> (error class, meaning)."""

_CALL_STATUS_ERRORS: Final[_Table] = {**_VOICE_ERRORS, "105": (InvalidRequest, "call not found")}
"""The voice GetSendStatus uses 105 for a call it cannot find."""

_CALL_STATUSES: Final[dict[str, CallStatus]] = {
    "ANSWERED": CallStatus.ANSWERED,
    "NOANSWER": CallStatus.NO_ANSWER,
    "NOANSWERED": CallStatus.NO_ANSWER,
    "PENDING": CallStatus.PENDING,
}
"""A call's outcome, as the REST ``callstatus`` and the callback's ``CallStatus`` write it, keyed
by ``_call_status``'s folding (upper case, no spaces or underscores: ``no_answer`` is NOANSWER)."""


class ESMS(BaseClient):
    """Async client for eSMS: SMS on ``base_url``, voice calls on ``voice_base_url``, one pool.

    ``rate_limit`` defaults to a conservative 20 requests a second (eSMS documents none), shared
    by every client of the same ApiKey in the process; ``None`` turns the limiter off.
    ``sms_type`` and ``brandname`` are the sending defaults ``send`` uses when not given.
    """

    provider = _PROVIDER
    default_rate_limit = DEFAULT_RATE_LIMIT
    price = 350.0
    unit = "VND"
    credentials = (
        Credential(name="api_key", env="SMSVN_ESMS_API_KEY", help="eSMS ApiKey"),
        Credential(name="secret_key", env="SMSVN_ESMS_SECRET_KEY", help="eSMS SecretKey"),
    )
    sender_option = "brandname"
    env_options = (("base_url", str), ("voice_base_url", str), ("sms_type", int))

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        voice_base_url: str = DEFAULT_VOICE_BASE_URL,
        sms_type: int = 2,
        brandname: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        checked_credential(api_key, "an eSMS ApiKey", _PROVIDER)
        checked_credential(secret_key, "an eSMS SecretKey", _PROVIDER)
        _check_type(sms_type)
        if brandname is not None:
            brandname = checked_text(brandname, "brandname", _PROVIDER)
        super().__init__(
            base_url=base_url,
            account=api_key,
            secrets=(api_key, secret_key),
            options=options,
        )
        self.voice_base_url = checked_url(voice_base_url, "voice_base_url", _PROVIDER)
        self.sms_type = sms_type
        self.brandname = brandname
        self._api_key = api_key
        self._secret_key = secret_key
        self._callback_redactors: dict[str, Redactor] = {}
        path_keys = f"{quote(api_key, safe='')}/{quote(secret_key, safe='')}"
        self._url_send_post = f"{self.base_url}/{_EP_SEND_POST}/"
        self._url_send_get = f"{self.base_url}/{_EP_SEND_GET}"
        self._url_balance = f"{self.base_url}/{_EP_BALANCE}/{path_keys}"
        self._url_status = f"{self.base_url}/{_EP_STATUS}"
        self._url_receivers = f"{self.base_url}/{_EP_RECEIVERS}"
        self._url_sent_data = f"{self.base_url}/{_EP_SENT_DATA}"
        self._url_brandnames = f"{self.base_url}/{_EP_BRANDNAMES}/{path_keys}"
        self._url_voice_otp = f"{self.voice_base_url}/{_EP_VOICE_OTP}"
        self._url_call_template = f"{self.voice_base_url}/{_EP_CALL_TEMPLATE}"
        self._url_call_record = f"{self.voice_base_url}/{_EP_CALL_RECORD}"
        self._url_call_status = f"{self.voice_base_url}/GetSendStatus"

    def __repr__(self) -> str:
        return f"ESMS(base_url={self.base_url!r}, voice_base_url={self.voice_base_url!r})"

    # -- SMS -------------------------------------------------------------------------------

    async def send(
        self,
        to: str | Sequence[str],
        content: str,
        *,
        sms_type: int | None = None,
        brandname: str | None = None,
        unicode: bool | None = None,
        strip_diacritics: bool = False,
        sandbox: bool = False,
        request_id: str | None = None,
        send_date: datetime | None = None,
        callback_url: str | None = None,
        method: Literal["POST", "GET"] = "POST",
    ) -> SendResult:
        """Send ``content`` (``SendMultipleMessage_V4``), resending safely under one RequestId.

        Types 2 and 8 take one number (use ``send_bulk`` for more); type 1 (advertising) takes
        at least 20. ``unicode=None`` chooses from the content; ``strip_diacritics`` sends the
        content without Vietnamese marks; content that plain text cannot carry is refused when
        it must go plain. ``send_date`` (Vietnam time when naive) schedules it. ``request_id``
        (1-50 characters, ``MAX_REQUEST_ID_LENGTH``) is eSMS's ``RequestId``; a fresh one (32
        hex characters) is made when none is given.
        """
        options = self._options(sms_type, brandname, sandbox, send_date, callback_url, method)
        endpoint = options.endpoint
        prepared = _prepare(content, unicode, strip_diacritics, endpoint)
        request_id = _check_request_id(request_id, endpoint)
        numbers = recipient_list(to, _PROVIDER, endpoint)
        if options.sms_type in _SINGLE_NUMBER_TYPES and len(numbers) > 1:
            raise ValidationError(
                f"sms_type {options.sms_type} sends to one number a request; "
                f"use send_bulk for {len(numbers)} numbers",
                provider=_PROVIDER,
                endpoint=endpoint,
            )
        recipients = split_recipients(numbers)
        require_recipients(recipients, _PROVIDER, endpoint)
        if options.sms_type == 1:
            _check_advertising(len(recipients.valid), prepared.text, endpoint)
        return await self._submit(
            tuple(recipients.valid), tuple(recipients.invalid), prepared, options, request_id
        )

    def _options(
        self,
        sms_type: int | None,
        brandname: str | None,
        sandbox: bool,
        send_date: datetime | None,
        callback_url: str | None,
        method: str,
    ) -> _SendOptions:
        """A send's options, defaults filled in and checked, before any request."""
        if method not in ("POST", "GET"):
            raise ValidationError(
                f"method must be 'POST' or 'GET', not {method!r}", provider=_PROVIDER
            )
        endpoint = _EP_SEND_GET if method == "GET" else _EP_SEND_POST
        sms_type = self.sms_type if sms_type is None else sms_type
        if brandname is None:
            brandname = self.brandname
        else:
            brandname = checked_text(brandname, "brandname", _PROVIDER, endpoint)
        _check_type(sms_type)
        callback_url = _check_callback(callback_url, endpoint)
        if sms_type in _NEEDS_BRANDNAME and not brandname:
            raise ValidationError(
                f"sms_type {sms_type} needs a brandname", provider=_PROVIDER, endpoint=endpoint
            )
        return _SendOptions(
            sms_type=sms_type,
            brandname=brandname if sms_type in _NEEDS_BRANDNAME else None,
            sandbox="1" if sandbox else "0",
            send_date=None if send_date is None else _send_date(send_date, endpoint),
            callback_url=callback_url,
            method=method,
            endpoint=endpoint,
            redactor=self._redactor_for(callback_url),
        )

    def _redactor_for(self, callback_url: str | None) -> Redactor:
        """The redactor of a request that carries ``callback_url``: the URL names a webhook
        receiver, often with its secret in the path or query (``smsvn.workers`` keeps it out
        of task messages), so an answer that echoes it is withheld like one that echoes the
        keys. The client's own without one; made once per URL (a campaign sends one)."""
        if not callback_url:
            return self._transport.redactor
        redactor = self._callback_redactors.get(callback_url)
        if redactor is None:
            if len(self._callback_redactors) >= _CALLBACK_REDACTORS:
                self._callback_redactors.clear()
            redactor = Redactor((self._api_key, self._secret_key, *_url_secrets(callback_url)))
            self._callback_redactors[callback_url] = redactor
        return redactor

    def sender_for(self, options: Mapping[str, Any]) -> str | None:
        """Types 1 and 2 go out under the brandname; type 8 under a fixed number."""
        sms_type = options.get("sms_type")
        sms_type = self.sms_type if sms_type is None else sms_type
        if not isinstance(sms_type, int) or sms_type not in _NEEDS_BRANDNAME:
            return None  # a type of the wrong kind: send() refuses it
        return super().sender_for(options)

    def batch_sender(
        self,
        *,
        content: str | None,
        sms_type: int | None = None,
        brandname: str | None = None,
        unicode: bool | None = None,
        strip_diacritics: bool = False,
        sandbox: bool = False,
        send_date: datetime | None = None,
        callback_url: str | None = None,
        method: Literal["POST", "GET"] = "POST",
    ) -> BatchSender:
        """Check a campaign's options (and shared content) once; return the sender of one batch:
        one canonical number, under the message's own RequestId or a fresh one."""
        options = self._options(sms_type, brandname, sandbox, send_date, callback_url, method)
        endpoint = options.endpoint
        if options.sms_type == 1:
            raise ValidationError(
                f"an advertising (sms_type 1) request needs at least {MIN_ADVERTISING_RECIPIENTS} "
                "numbers and send_bulk sends one a request: use send() with the numbers",
                provider=_PROVIDER,
                endpoint=endpoint,
            )
        common = None if content is None else _prepare(content, unicode, strip_diacritics, endpoint)

        def send_batch(
            numbers: list[str], content: str, request_id: str | None
        ) -> Awaitable[SendResult]:
            prepared = (
                common
                if common is not None
                else _prepare(content, unicode, strip_diacritics, endpoint)
            )
            checked = _check_request_id(request_id, endpoint)
            return self._submit((numbers[0],), (), prepared, options, checked)

        return send_batch

    async def _submit(
        self,
        numbers: tuple[str, ...],
        invalid: tuple[InvalidNumber, ...],
        prepared: _Content,
        options: _SendOptions,
        request_id: str,
    ) -> SendResult:
        """Send one checked message; resent only under its RequestId, which eSMS deduplicates."""
        endpoint = options.endpoint
        fields = {
            "ApiKey": self._api_key,
            "SecretKey": self._secret_key,
            "Phone": ",".join(numbers),
            "Content": prepared.text,
            "IsUnicode": prepared.is_unicode,
            "SmsType": str(options.sms_type),
            "Sandbox": options.sandbox,
            "RequestId": request_id,
        }
        if options.brandname:
            fields["Brandname"] = options.brandname
        if options.send_date is not None:
            fields["SendDate"] = options.send_date
        if options.callback_url is not None:
            fields["CallbackUrl"] = options.callback_url
        segments = prepared.segments * len(numbers)

        def parse(response: Response) -> SendResult:
            answer, code = self._answer(response, _SEND, endpoint, options.redactor)
            if code == _DUPLICATE and response.resent:
                # A resend after an attempt that may have been processed: that attempt, with
                # this RequestId, got in. (After a 429 or a refused connection nothing of this
                # call got in, so the id belongs to an earlier message: nothing was sent now.)
                code = _SUCCESS
            elif code == _DUPLICATE:
                raise self._refusal(
                    response,
                    endpoint,
                    code,
                    InvalidRequest,
                    f"a request with RequestId {request_id!r} was already accepted earlier; "
                    "nothing was sent now (use a new request_id for a new message)",
                )
            if code != _SUCCESS:
                raise self._failure(response, endpoint, code, answer, _SMS_ERRORS)
            return SendResult(
                provider=_PROVIDER,
                message_id=opt_str(answer.sms_id),
                recipients=numbers,
                invalid=invalid,
                segments=segments,
                cost=None,
                request_id=request_id,
                raw=answer,
            )

        if options.method == "GET":
            return await self._transport.call(
                "GET",
                self._url_send_get,
                endpoint=endpoint,
                parse=parse,
                params=fields,
                idempotent=False,
                deduplicated=True,
            )
        if options.callback_url is not None:
            # A JSON body's members are matched with their case: the document's send table
            # writes ``CallBackUrl``, its voice endpoints and the newer guide ``CallbackUrl``;
            # eSMS ignores the member it does not know.
            fields["CallBackUrl"] = options.callback_url
        return await self._transport.call(
            "POST",
            self._url_send_post,
            endpoint=endpoint,
            parse=parse,
            data=_ENCODER.encode(fields),
            content_type=_JSON,
            idempotent=False,
            deduplicated=True,
        )

    async def balance(self) -> Balance:
        """The account balance in VND (``GetBalance/{ApiKey}/{SecretKey}``)."""

        def parse(response: Response) -> Balance:
            answer = self._parse(response, _BALANCE, _EP_BALANCE, _SMS_ERRORS)
            if answer.balance is None:
                raise self._transport.malformed(_EP_BALANCE, response, "success without Balance")
            return Balance(provider=_PROVIDER, amount=answer.balance, currency="VND", raw=answer)

        return await self._transport.call(
            "GET", self._url_balance, endpoint=_EP_BALANCE, parse=parse, idempotent=True
        )

    async def status(self, sms_id: str) -> MessageStatus:
        """Where a sent message stands and how many receivers it reached (``GetSendStatus``)."""
        _check_id(sms_id, "sms_id", _EP_STATUS)

        def parse(response: Response) -> MessageStatus:
            answer = self._parse(response, _STATUS, _EP_STATUS, _SMS_ERRORS)
            return MessageStatus(
                provider=_PROVIDER,
                message_id=opt_str(answer.sms_id) or sms_id,
                status=_send_status(answer.send_status),
                total_receivers=answer.total_receiver or 0,
                total_sent=answer.total_sent or 0,
                succeeded=_either(answer.send_success, answer.sent_success) or 0,
                failed=_either(answer.send_failed, answer.sent_failed) or 0,
                raw=answer,
            )

        return await self._transport.call(
            "GET",
            self._url_status,
            endpoint=_EP_STATUS,
            parse=parse,
            params=self._keys(RefId=sms_id),
            idempotent=True,
        )

    async def receivers(self, sms_id: str) -> list[ReceiverStatus]:
        """Each recipient of a sent message and whether it succeeded (``GetSmsReceiverStatus``)."""
        _check_id(sms_id, "sms_id", _EP_RECEIVERS)

        def parse(response: Response) -> list[ReceiverStatus]:
            answer = self._parse(response, _RECEIVERS, _EP_RECEIVERS, _SMS_ERRORS)
            return [
                ReceiverStatus(phone=_national(r.phone), is_sent=r.is_sent, succeeded=r.sent_result)
                for r in answer.receivers or ()
            ]

        return await self._transport.call(
            "GET",
            self._url_receivers,
            endpoint=_EP_RECEIVERS,
            parse=parse,
            params=self._keys(RefId=sms_id),
            idempotent=True,
        )

    async def sent_messages(
        self, start: date | datetime, end: date | datetime
    ) -> list[SentMessage]:
        """The messages sent between two days, inclusive (``GetSmsSentData``, days in VN time)."""
        first, last = _day(start, "start"), _day(end, "end")
        if last < first:
            raise ValidationError(
                f"end ({last}) is before start ({first})",
                provider=_PROVIDER,
                endpoint=_EP_SENT_DATA,
            )
        body = _ENCODER.encode(
            {
                "ApiKey": self._api_key,
                "SecretKey": self._secret_key,
                "From": first.strftime("%m/%d/%Y"),
                "To": last.strftime("%m/%d/%Y"),
            }
        )

        def parse(response: Response) -> list[SentMessage]:
            answer = self._parse(response, _SENT_DATA, _EP_SENT_DATA, _SENT_DATA_ERRORS)
            try:
                return [
                    SentMessage(
                        message_id=str(item.sms_id),
                        phone=_national(item.phone),
                        content=item.content or "",
                        sms_type=item.sms_type,
                        sent_at=_wcf_date(item.sent_time) if item.sent_time else None,
                        status=_sent_status(item.sent_status),
                    )
                    for item in answer.sent or ()
                ]
            except (ValueError, OverflowError) as exc:
                raise self._transport.malformed(_EP_SENT_DATA, response, str(exc)) from None

        return await self._transport.call(
            "POST",
            self._url_sent_data,
            endpoint=_EP_SENT_DATA,
            parse=parse,
            data=body,
            content_type=_JSON,
            idempotent=True,
        )

    async def brandnames(self) -> list[Brandname]:
        """The brandnames registered on the account (``GetListBrandname``)."""

        def parse(response: Response) -> list[Brandname]:
            answer = self._parse(response, _BRANDNAMES, _EP_BRANDNAMES, _SMS_ERRORS)
            return [
                Brandname(name=b.name, type=_brandname_type(b.type))
                for b in answer.brandnames or ()
            ]

        return await self._transport.call(
            "GET", self._url_brandnames, endpoint=_EP_BRANDNAMES, parse=parse, idempotent=True
        )

    # -- voice -----------------------------------------------------------------------------

    async def voice_otp(
        self,
        to: str,
        code: str,
        *,
        voice: str | None = None,
        speed: int | None = None,
        sender: str | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Call ``to`` and read out ``code`` (digits 0-9, checked locally) (``VoiceOTP``)."""
        endpoint = _EP_VOICE_OTP
        if not isinstance(code, str) or not code or not code.isascii() or not code.isdigit():
            raise ValidationError(
                "a voice OTP code must be a str of digits 0-9 only",
                provider=_PROVIDER,
                endpoint=endpoint,
            )
        _check_voice(voice, speed, endpoint)
        if sender is not None:
            checked_text(sender, "sender", _PROVIDER, endpoint)
        callback_url = _check_callback(callback_url, endpoint)
        number = _one_number(to, endpoint)
        params = self._keys(Phone=number, Code=code)
        _put(params, "Voice", voice)
        _put(params, "Speed", speed)
        _put(params, "Sender", sender)
        _put(params, "CallbackUrl", callback_url)
        return await self._call(self._url_voice_otp, endpoint, params, number, callback_url)

    async def call_template(
        self,
        to: str,
        template_id: str | int,
        variables: Sequence[str] = (),
        *,
        send_date: datetime | None = None,
        voice: str | None = None,
        speed: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Call ``to`` with a registered call template and its variables (``MakeCallTemplate_V2``).

        The variables travel joined by ``||``, so one containing ``||`` (or starting or ending
        with ``|``, which would merge into the separator) is refused locally.
        """
        endpoint = _EP_CALL_TEMPLATE
        template = _check_id(str(template_id), "template_id", endpoint)
        values: Sequence[str] = (variables,) if isinstance(variables, str) else variables
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise ValidationError(
                "variables must be a str or a list or tuple of str",
                provider=_PROVIDER,
                endpoint=endpoint,
            )
        for value in values:
            if _SEPARATOR in value or value.startswith("|") or value.endswith("|"):
                raise ValidationError(
                    f"template variable {value!r} contains '||' (or starts or ends with '|'), "
                    "the separator of VariableListStr",
                    provider=_PROVIDER,
                    endpoint=endpoint,
                )
            if not text.is_encodable(value):
                raise ValidationError(
                    "a template variable has control characters or lone surrogates",
                    provider=_PROVIDER,
                    endpoint=endpoint,
                )
        _check_voice(voice, speed, endpoint)
        callback_url = _check_callback(callback_url, endpoint)
        when = None if send_date is None else _send_date(send_date, endpoint)
        number = _one_number(to, endpoint)
        params = self._keys(TemplateId=template, Phone=number)
        if values:
            params["VariableListStr"] = _SEPARATOR.join(values)
        _put(params, "SendDate", when)
        _put(params, "Voice", voice)
        _put(params, "Speed", speed)
        _put(params, "CallbackUrl", callback_url)
        return await self._call(self._url_call_template, endpoint, params, number, callback_url)

    async def call_record(
        self,
        to: str,
        record_id: str | int,
        *,
        send_date: datetime | None = None,
        forward_number: str | None = None,
        max_repeat: int | None = None,
        max_retry: int | None = None,
        ivr: int | str | None = None,
        wait_for_ivr: int | None = None,
        retry_wait: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Call ``to`` and play a recording; pressing ``ivr`` forwards the call to
        ``forward_number`` (``MakeCallRecord_V2``). Waits are in seconds."""
        endpoint = _EP_CALL_RECORD
        record = _check_id(str(record_id), "record_id", endpoint)
        key = None if ivr is None else str(ivr)
        if key is not None and (len(key) != 1 or key not in "0123456789"):
            raise ValidationError(
                f"ivr must be a single key 0-9, not {key!r}", provider=_PROVIDER, endpoint=endpoint
            )
        for name, value in (
            ("max_repeat", max_repeat),
            ("max_retry", max_retry),
            ("wait_for_ivr", wait_for_ivr),
            ("retry_wait", retry_wait),
        ):
            if value is not None:
                checked_int(value, name, low=0, provider=_PROVIDER, endpoint=endpoint)
        forward = None if forward_number is None else _forward_number(forward_number, endpoint)
        callback_url = _check_callback(callback_url, endpoint)
        when = None if send_date is None else _send_date(send_date, endpoint)
        number = _one_number(to, endpoint)
        params = self._keys(TemplateId=record, Phone=number)
        _put(params, "SendDate", when)
        _put(params, "NumberForward", forward)
        _put(params, "MaxRepeat", max_repeat)
        _put(params, "MaxRetry", max_retry)
        _put(params, "Ivr", key)
        _put(params, "TimeWaitToIvr", wait_for_ivr)
        _put(params, "WaitRetry", retry_wait)
        _put(params, "CallbackUrl", callback_url)
        return await self._call(self._url_call_record, endpoint, params, number, callback_url)

    async def call_status(self, reference_id: str) -> CallResult:
        """How a call ended: outcome, seconds and the key pressed (voice ``GetSendStatus``)."""
        endpoint = _EP_CALL_STATUS
        _check_id(reference_id, "reference_id", endpoint)

        def parse(response: Response) -> CallResult:
            answer = self._parse(response, _CALL_STATUS, endpoint, _CALL_STATUS_ERRORS)
            seconds = answer.call_duration
            duration = opt_str(answer.call_duration_table if seconds is None else seconds)
            if duration is not None and not is_count(duration):
                raise self._transport.malformed(endpoint, response, "callduration not a number")
            return CallResult(
                provider=_PROVIDER,
                reference_id=reference_id,
                status=_call_status(_either(answer.call_status, answer.call_status_table)),
                duration=None if duration is None else int(duration),
                ivr=opt_str(answer.ivr_table if answer.ivr is None else answer.ivr),
                raw=answer,
            )

        return await self._transport.call(
            "GET",
            self._url_call_status,
            endpoint=endpoint,
            parse=parse,
            params=self._keys(ReferenceId=reference_id),
            idempotent=True,
        )

    # -- requests and answers --------------------------------------------------------------

    def _keys(self, **fields: str) -> dict[str, str]:
        """Query parameters: the credentials followed by ``fields``."""
        return {"ApiKey": self._api_key, "SecretKey": self._secret_key, **fields}

    async def _call(
        self,
        url: str,
        endpoint: str,
        params: dict[str, str],
        number: str,
        callback_url: str | None,
    ) -> SendResult:
        """Create one voice call: a GET that is never resent once it may have left."""
        redactor = self._redactor_for(callback_url)

        def parse(response: Response) -> SendResult:
            answer = self._parse(response, _SEND, endpoint, _VOICE_ERRORS, redactor)
            return SendResult(
                provider=_PROVIDER,
                message_id=opt_str(answer.sms_id),
                recipients=(number,),
                segments=None,
                cost=None,
                raw=answer,
            )

        return await self._transport.call(
            "GET", url, endpoint=endpoint, parse=parse, params=params, idempotent=False
        )

    def _parse(
        self,
        response: Response,
        decoder: msgspec.json.Decoder[A],
        endpoint: str,
        table: _Table,
        redactor: Redactor | None = None,
    ) -> A:
        """The decoded answer when its code is 100; the right typed error otherwise."""
        answer, code = self._answer(response, decoder, endpoint, redactor)
        if code != _SUCCESS:
            raise self._failure(response, endpoint, code, answer, table)
        return answer

    def _answer(
        self,
        response: Response,
        decoder: msgspec.json.Decoder[A],
        endpoint: str,
        redactor: Redactor | None = None,
    ) -> tuple[A, str]:
        """Decode an answer once and read its code, whichever key holds it. ``redactor``: the
        request's, when it carried more secrets than the client's (``_redactor_for``)."""
        redactor = redactor or self._transport.redactor
        try:
            answer = decoder.decode(response.body)
        except DECODE_ERRORS as exc:
            raise self._transport.malformed(endpoint, response, why(exc), redactor) from None
        # A result keeps its answer as ``raw``: never let an echoed credential into it. After
        # decoding, since JSON may write a credential's characters as \uXXXX escapes.
        answer = redactor.value(answer, response.body)
        raw = answer.code_result if answer.code_result is not None else answer.code_response
        code = opt_str(raw)
        if code is None:
            raise self._transport.malformed(
                endpoint, response, f"HTTP {response.status}, no CodeResult or CodeResponse"
            )
        return answer, code

    def _failure(
        self, response: Response, endpoint: str, code: str, answer: _Answer, table: _Table
    ) -> SmsError:
        """The error a non-100 code stands for, with eSMS's own words when it gave some."""
        cls, meaning = table.get(code, (SmsError, "undocumented result code"))
        detail = (answer.error_message or "").strip()
        message = f"{meaning}: {detail}" if detail and detail != meaning else meaning
        return self._refusal(response, endpoint, code, cls, message)

    def _refusal(
        self, response: Response, endpoint: str, code: str, cls: type[SmsError], message: str
    ) -> SmsError:
        """An error of class ``cls`` for a refusal eSMS answered with ``code``."""
        return cls(
            message,
            provider=_PROVIDER,
            code=code,
            http_status=response.status,
            endpoint=endpoint,
            attempts=response.attempt,
        )


# -- local checks and conversions ----------------------------------------------------------------


_CALLBACK_REDACTORS: Final = 16
"""Callback URLs whose redactor a client keeps (a service uses one or two)."""


def _url_secrets(url: str) -> list[str]:
    """What of a callback URL an answer must not echo: the URL, and each of its path segments
    and query values long enough to be a secret (a shorter one, ``esms``, is a common word)."""
    parts = urllib.parse.urlsplit(url)
    pieces = [p for p in parts.path.split("/") if p]
    pieces += [value for _, value in urllib.parse.parse_qsl(parts.query)]
    return [url, *(p for p in pieces if len(p) >= RUN)]


def _check_type(sms_type: object) -> None:
    """Refuse a message type this client does not know how to send: anything but one of the
    ``SMS_TYPES`` ints (``True`` is not type 1, and a list is not a type)."""
    if isinstance(sms_type, bool) or not isinstance(sms_type, int) or sms_type not in SMS_TYPES:
        raise ValidationError(
            f"sms_type {sms_type!r} is not one of {sorted(SMS_TYPES)}", provider=_PROVIDER
        )


def _check_callback(callback_url: object, endpoint: str) -> str | None:
    """The ``callback_url`` as it goes in the request; refused when it is not text a request
    can carry, or no URL parser reads it (its pieces are taken apart for the answer's
    redactor, ``_url_secrets``)."""
    if callback_url is None:
        return None
    url = checked_text(callback_url, "callback_url", _PROVIDER, endpoint)
    try:
        urllib.parse.urlsplit(url)
    except ValueError:
        raise ValidationError(
            "callback_url is not a URL (a malformed host)", provider=_PROVIDER, endpoint=endpoint
        ) from None
    return url


def _check_request_id(request_id: str | None, endpoint: str) -> str:
    """The caller's RequestId if eSMS would take it, else a fresh one (32 hex characters).
    Only a plain ``str`` is one: bytes would go base64-encoded (another id than the caller's)."""
    if request_id is None:
        return uuid.uuid4().hex
    request_id = checked_text(request_id, "request_id", _PROVIDER, endpoint)
    if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise ValidationError(
            f"request_id must be 1-{MAX_REQUEST_ID_LENGTH} characters, not {len(request_id)}",
            provider=_PROVIDER,
            endpoint=endpoint,
        )
    return request_id


def _prepare(content: str, unicode: bool | None, strip: bool, endpoint: str) -> _Content:
    """The content as it will be sent, or ValidationError for what cannot go as asked."""
    content = checked_content(
        content, strip=strip, unicode=unicode, provider=_PROVIDER, endpoint=endpoint
    )
    parts = text.segments(content)
    if strip or unicode is False:
        if parts.unicode:
            raise not_plain(
                content,
                "strip_diacritics=True" if strip else "unicode=False",
                "use unicode=True or leave it to the client (unicode=None)",
                _PROVIDER,
                endpoint,
            )
        return _Content(content, "0", parts.segments)
    if unicode and not parts.unicode:  # GSM-7 content forced to UCS-2
        return _Content(content, "1", text.segments(content, unicode=True).segments)
    return _Content(content, "1" if parts.unicode else "0", parts.segments)


def _check_advertising(count: int, content: str, endpoint: str) -> None:
    """Refuse an advertising send eSMS would refuse (codes 119 and 131), before any request."""
    if count < MIN_ADVERTISING_RECIPIENTS:
        raise ValidationError(
            f"an advertising (sms_type 1) send needs at least {MIN_ADVERTISING_RECIPIENTS} "
            f"valid numbers, not {count}",
            provider=_PROVIDER,
            endpoint=endpoint,
        )
    if len(content) > MAX_ADVERTISING_LENGTH:
        raise ValidationError(
            f"an advertising (sms_type 1) content is at most {MAX_ADVERTISING_LENGTH} "
            f"characters, not {len(content)}",
            provider=_PROVIDER,
            endpoint=endpoint,
        )


def _check_voice(voice: str | None, speed: int | None, endpoint: str) -> None:
    """Refuse a voice or reading speed eSMS does not offer (or of the wrong type)."""
    if voice is not None and (not isinstance(voice, str) or voice not in VOICES):
        raise ValidationError(
            f"voice {voice!r} is not one of {sorted(VOICES)}", provider=_PROVIDER, endpoint=endpoint
        )
    if speed is not None and (
        isinstance(speed, bool) or not isinstance(speed, int) or speed not in _SPEEDS
    ):
        raise ValidationError(
            f"speed {speed} is not between -3 and 3", provider=_PROVIDER, endpoint=endpoint
        )


def _check_id(value: str, name: str, endpoint: str) -> str:
    """Refuse an empty id before asking eSMS about it."""
    if not value:
        raise ValidationError(f"{name} is empty", provider=_PROVIDER, endpoint=endpoint)
    return value


def _one_number(to: str, endpoint: str) -> str:
    """A call's single recipient in national form, or a ValidationError saying why not."""
    recipients = split_recipients(to)
    require_recipients(recipients, _PROVIDER, endpoint)
    return recipients.valid[0]


def _forward_number(number: str, endpoint: str) -> str:
    """A mobile number in national form, or any other number (a hotline) as its bare digits."""
    if not isinstance(number, str):
        raise ValidationError(
            f"forward_number must be a phone number (a str), not {type(number).__name__}",
            provider=_PROVIDER,
            endpoint=endpoint,
        )
    try:
        return phone.normalize(number)
    except ValidationError:
        pass
    digits = _SEPARATORS.sub("", number)
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValidationError(
            "forward_number must be a phone number (digits only)",
            provider=_PROVIDER,
            endpoint=endpoint,
        )
    return digits


def _put(params: dict[str, str], name: str, value: str | int | None) -> None:
    """Add an optional parameter, as a string, only when it was given."""
    if value is not None:
        params[name] = str(value)


def _send_date(when: datetime, endpoint: str | None = None) -> str:
    """``yyyy/MM/dd HH:mm:ss`` in Vietnam time (a naive datetime is taken as Vietnam time).
    Anything but a datetime (a str from a task's JSON, a date) is a ``ValidationError``."""
    if not isinstance(when, datetime):
        raise ValidationError(
            f"send_date must be a datetime, not {type(when).__name__}",
            provider=_PROVIDER,
            endpoint=endpoint,
        )
    return _in_vietnam(when, "send_date", endpoint).strftime("%Y/%m/%d %H:%M:%S")


def _day(when: date | datetime, name: str) -> date:
    """The calendar day of ``when`` in Vietnam time (a naive datetime is taken as Vietnam time);
    anything but a date or a datetime is a ``ValidationError`` naming ``name``."""
    if isinstance(when, datetime):
        return _in_vietnam(when, name, _EP_SENT_DATA).date()
    if not isinstance(when, date):
        raise ValidationError(
            f"{name} must be a date or a datetime, not {type(when).__name__}",
            provider=_PROVIDER,
            endpoint=_EP_SENT_DATA,
        )
    return when


def _in_vietnam(when: datetime, name: str, endpoint: str | None) -> datetime:
    """An aware ``when`` as Vietnam time (a naive one as it is). Near ``datetime.max`` or
    ``datetime.min`` the shift falls outside the years a datetime holds: a ``ValidationError``,
    not ``OverflowError``."""
    if when.tzinfo is None:
        return when
    try:
        return when.astimezone(_VN_TZ)
    except OverflowError:
        raise ValidationError(
            f"{name} is out of range in Vietnam time", provider=_PROVIDER, endpoint=endpoint
        ) from None


def _wcf_date(value: str) -> datetime:
    """``/Date(1705484048995+0700)/`` -> an aware datetime in that offset (UTC when none).

    The number is milliseconds since the Unix epoch in UTC (negative before 1970); the offset
    only says where the time was written. Raises ValueError or OverflowError when malformed.
    """
    match = _WCF_DATE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"SentTime {value[:40]!r} is not a /Date(ms±hhmm)/ value")
    moment = _EPOCH + timedelta(milliseconds=int(match.group(1)))
    offset = match.group(2)
    if offset is None:
        return moment
    sign = -1 if offset[0] == "-" else 1
    delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return moment.astimezone(timezone(sign * delta))


def _send_status(value: int | None) -> SendStatus | None:
    """eSMS ``SendStatus`` 1-6 as the enum; anything undocumented as None (``raw`` keeps it)."""
    if value is None:
        return None
    try:
        return SendStatus(value)
    except ValueError:
        return None


def _brandname_type(value: int | None) -> BrandnameType | None:
    """``Type`` 1 (advertising) or 2 (customer care); anything else as None."""
    if value is None:
        return None
    try:
        return BrandnameType(value)
    except ValueError:
        return None


def _either(sample: V | None, table: V | None) -> V | None:
    """A field the document's sample and table spell differently: the sample's, else the
    table's."""
    return sample if sample is not None else table


def _call_status(value: str | None) -> CallStatus:
    """``callstatus`` (REST) or ``CallStatus`` (callback) as the enum, in any case and spacing
    (``NO ANSWER``, ``NOANSWERED``, ``no_answer``): no value yet is PENDING, an undocumented
    one UNKNOWN (``raw`` keeps it)."""
    if value is None:
        return CallStatus.PENDING
    key = "".join(value.upper().replace("_", " ").split())
    if not key:
        return CallStatus.PENDING
    return _CALL_STATUSES.get(key, CallStatus.UNKNOWN)


def _sent_status(value: bool | int | str | None) -> str | None:
    """``SentStatus`` as text: booleans as ``"true"``/``"false"``, as JSON writes them."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _national(number: str | int) -> str:
    """A number eSMS reports back, in canonical national form when it is a VN mobile number."""
    raw = str(number)
    try:
        return phone.normalize(raw)
    except ValidationError:
        return raw


# -- webhooks ----------------------------------------------------------------------------------
# eSMS calls a send's ``CallbackUrl`` with an HTTP GET, signed by nothing, and retries up to 5
# times until it gets HTTP 200. An SMS callback's query carries ``SMSID, SendFailed, SendStatus,
# SendSuccess, TotalPrice, TypeId, telcoid, phonenumber``: per-number counts and the message's
# ``SendStatus`` (1 waiting approval, 2 waiting to send, 3 sending, 4 rejected, 5 sent,
# 6 deleted), mapped to a DeliveryState by the first rule that holds:
#   1. ``SendSuccess`` >= 1 -> DELIVERED
#   2. ``SendFailed`` >= 1, or ``SendStatus`` 4 or 6 -> FAILED
#   3. ``SendStatus`` 1, 2, 3 or 5 (handed to the carrier, no handset result yet) -> PENDING
# A call callback carries ``ReferenceId, CallDuration, CallStatus, Ivr, Price, SentResult, CID``
# (keys seen in either case). Each field lists the spellings of its key.

_CB_SMS_ID: Final = ("SMSID",)
_CB_SEND_STATUS: Final = ("SendStatus",)
_CB_SEND_SUCCESS: Final = ("SendSuccess",)
_CB_SEND_FAILED: Final = ("SendFailed",)
_CB_TOTAL_PRICE: Final = ("TotalPrice",)
_CB_PHONE: Final = ("phonenumber", "PhoneNumber", "Phone")
_CB_REFERENCE_ID: Final = ("ReferenceId", "referenceid")
_CB_CALL_DURATION: Final = ("CallDuration", "callduration")
_CB_CALL_STATUS: Final = ("CallStatus", "callstatus")
_CB_IVR: Final = ("Ivr", "ivr")
_CB_PRICE: Final = ("Price", "price")
_CB_SENT_RESULT: Final = ("SentResult", "sentresult")
_CB_CID: Final = ("CID", "cid")
_CB_BOOLS: Final[dict[str, bool]] = {"0": False, "1": True, "false": False, "true": True}


def parse_esms(query: Mapping[str, str]) -> DeliveryReport | CallReport:
    """Decode an eSMS CallbackUrl query (SMS delivery result or voice-call result).

    An SMS callback carries ``SMSID`` (and ``SendStatus``); a call callback carries
    ``ReferenceId``. Accepts any ``Mapping[str, str]``, aiohttp's ``request.query`` included.
    Empty optional fields mean absent; ``CallDuration`` is whole seconds (a fraction is
    dropped); ``CallStatus`` maps as in ``ESMS.call_status()`` (absent or empty: PENDING;
    other than ANSWERED / NO ANSWER / PENDING: UNKNOWN, the raw query kept). Anything malformed
    raises :class:`ValidationError`.
    """
    sms_id = _webhook.get(_PROVIDER, query, _CB_SMS_ID)
    reference_id = _webhook.get(_PROVIDER, query, _CB_REFERENCE_ID)
    if sms_id is not None and (
        reference_id is None or _webhook.get(_PROVIDER, query, _CB_SEND_STATUS) is not None
    ):
        return _callback_delivery(query, sms_id)
    if reference_id is not None:
        return _callback_call(query, reference_id)
    raise _webhook.invalid(_PROVIDER, "neither SMSID nor ReferenceId in the callback")


def _callback_delivery(query: Mapping[str, str], sms_id: str) -> DeliveryReport:
    """The DeliveryReport of one number from an SMS callback."""
    message_id = _webhook.identifier(_PROVIDER, "SMSID", sms_id)
    number = _webhook.get(_PROVIDER, query, _CB_PHONE)
    if number is None:
        raise _webhook.invalid(_PROVIDER, "phonenumber missing")
    raw_status = _webhook.get(_PROVIDER, query, _CB_SEND_STATUS)
    if raw_status is None:
        raise _webhook.invalid(_PROVIDER, "SendStatus missing")
    raw_status = raw_status.strip()
    status = _webhook.count(_PROVIDER, raw_status, "SendStatus")
    success = _callback_count(query, _CB_SEND_SUCCESS, "SendSuccess")
    failed = _callback_count(query, _CB_SEND_FAILED, "SendFailed")
    if success >= 1:
        state = DeliveryState.DELIVERED
    elif failed >= 1 or status in (4, 6):
        state = DeliveryState.FAILED
    elif status in (1, 2, 3, 5):
        state = DeliveryState.PENDING
    else:
        raise _webhook.invalid(_PROVIDER, f"unknown SendStatus {status}")
    return DeliveryReport(
        provider=_PROVIDER,
        message_id=message_id,
        phone=_webhook.phone(_PROVIDER, number),
        state=state,
        raw_status=raw_status,
        cost=_webhook.amount(
            _PROVIDER, _webhook.get(_PROVIDER, query, _CB_TOTAL_PRICE), "TotalPrice"
        ),
        raw=dict(query),
    )


def _callback_count(query: Mapping[str, str], names: tuple[str, ...], field: str) -> int:
    """An optional per-number count of an SMS callback; absent or empty means 0."""
    return _webhook.count(_PROVIDER, _webhook.get(_PROVIDER, query, names) or "0", field)


def _callback_call(query: Mapping[str, str], reference_id: str) -> CallReport:
    """The CallReport of a voice-call callback."""
    duration = _webhook.amount(
        _PROVIDER, _webhook.get(_PROVIDER, query, _CB_CALL_DURATION), "CallDuration"
    )
    sent = opt_str(_webhook.get(_PROVIDER, query, _CB_SENT_RESULT))
    sent_flag: bool | None = None
    if sent is not None:
        sent_flag = _CB_BOOLS.get(sent.lower())
        if sent_flag is None:
            raise _webhook.invalid(_PROVIDER, "SentResult is not 0 or 1")
    return CallReport(
        provider=_PROVIDER,
        reference_id=_webhook.identifier(_PROVIDER, "ReferenceId", reference_id),
        status=_call_status(_webhook.get(_PROVIDER, query, _CB_CALL_STATUS)),
        duration=None if duration is None else int(duration),
        ivr=opt_str(_webhook.get(_PROVIDER, query, _CB_IVR)),
        price=_webhook.amount(_PROVIDER, _webhook.get(_PROVIDER, query, _CB_PRICE), "Price"),
        sent=sent_flag,
        caller_id=opt_str(_webhook.get(_PROVIDER, query, _CB_CID)),
        raw=dict(query),
    )


def _parse_callback(body: bytes, query: Mapping[str, str]) -> Event:
    """The registry's webhook parser: eSMS puts everything in the GET's query string."""
    return parse_esms(query)


PROVIDER: Final = Provider(
    name=_PROVIDER,
    title="eSMS",
    client=ESMS,
    credentials=ESMS.credentials,
    price=ESMS.price,
    unit=ESMS.unit,
    simulator="smsvn.sandbox.esms:ESMSSimulator",
    sender_option=ESMS.sender_option,
    webhook=Webhook(methods=("GET",), parse=_parse_callback),
    resend_window=24 * 3600.0,  # "within a day" (PROVIDERS.md); the journal keeps a margin
    resent_code=_DUPLICATE,
)
"""eSMS in the provider registry."""
