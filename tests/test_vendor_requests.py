"""The simulator against the requests the vendors' own samples and real clients send (issue
#17), replayed byte for byte with a bare aiohttp session: the headers the sample's HTTP stack
sends (aiohttp adds only Host and Content-Length), the body encoded as the sample encodes it,
the query string escaped as the sample escapes it. Each test names the sample it replays and
checks the answer and the outbox."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

import aiohttp
import pytest
from lxml import etree
from multidict import CIMultiDictProxy
from yarl import URL

from smsvn.sandbox import Sandbox

TOKEN: Final = Sandbox.speedsms_token
BASIC: Final = "Basic " + base64.b64encode(f"{TOKEN}:x".encode()).decode()
API_KEY: Final = Sandbox.esms_api_key
SECRET_KEY: Final = Sandbox.esms_secret_key
CLIENT_NO: Final = Sandbox.fibo_client_no
CLIENT_PASS: Final = Sandbox.fibo_client_pass

_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
"""Headers aiohttp would add on its own: left out, so that only the sample's headers go."""

CURL: Final = {"User-Agent": "curl/8.5.0", "Accept": "*/*"}
"""What command-line curl and PHP's curl extension send unasked (PHP's sends no User-Agent)."""
PHP_CURL: Final = {"Accept": "*/*"}
JAVA: Final = {
    "User-Agent": "Java/1.8.0_392",
    "Accept": "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
    "Connection": "keep-alive",
}
"""What java.net.HttpURLConnection sends unasked."""
DOTNET: Final = {"Connection": "Keep-Alive"}
"""What .NET Framework's WebClient sends unasked on a GET."""
DOTNET_POST: Final = {"Expect": "100-continue", "Connection": "Keep-Alive"}
"""... and on a POST (the body follows at once or after ``100 Continue``: both are HTTP)."""
PYTHON_REQUESTS: Final = {
    "User-Agent": "python-requests/2.31.0",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "Connection": "keep-alive",
}
GO: Final = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
GUZZLE: Final = {"User-Agent": "GuzzleHttp/7"}
NODE_FETCH: Final = {
    "Accept": "*/*",
    "Accept-Language": "*",
    "Sec-Fetch-Mode": "cors",
    "User-Agent": "node",
    "Accept-Encoding": "gzip, deflate",
}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _quiet_server(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No request of a vendor's client may make the server log an error or a warning."""
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    noisy = [
        r
        for r in records
        if r.name.startswith(("aiohttp", "asyncio")) and r.levelno >= logging.WARNING
    ]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox(speedsms_rate_limit=None, delivery_delay=0.05) as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def replay(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """Send one request exactly as written: ``url`` already escaped (its query string as the
    sample escapes it), ``headers`` the sample's own, ``body`` its bytes. Returns the status,
    the headers and the body of the answer."""
    async with http.request(
        method,
        URL(url, encoded=True),
        headers=dict(headers),
        data=body,
        skip_auto_headers=_AUTO_HEADERS,
    ) as resp:
        return resp.status, resp.headers, await resp.read()


def decoded(body: bytes) -> Any:
    return json.loads(body)


# -- SpeedSMS -----------------------------------------------------------------------------------


async def test_speedsms_java_sample_type_and_brandname(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """SpeedSMS's Java sample (SpeedSMSAPI.sendSMS): JSON built by string concatenation with
    ``type``/``brandname``, non-ASCII content escaped as ``\\uXXXX`` by its
    EncodeNonAsciiCharacters, written with DataOutputStream.writeBytes."""
    headers = {**JAVA, "Authorization": BASIC, "Content-Type": "application/json"}
    url = f"{sb.speedsms_url}/sms/send"
    body = (
        b'{"to": ["84912345678"], "content": "M\\u00e3 OTP c\\u1ee7a b\\u1ea1n l\\u00e0 1234", '
        b'"type":2, "brandname":""}'
    )
    status, answer_headers, raw = await replay(http, "POST", url, headers, body)
    assert status == 200 and answer_headers["Content-Type"].startswith("application/json")
    answer = decoded(raw)
    assert answer == {
        "status": "success",
        "code": "00",
        "data": {
            "tranId": answer["data"]["tranId"],
            "totalSMS": 1,
            "totalPrice": 250,
            "invalidPhone": [],
        },
    }
    (record,) = sb.outbox
    assert (record.phone, record.content, record.sender) == (
        "0912345678",
        "Mã OTP của bạn là 1234",
        None,
    )
    assert record.message_id == str(answer["data"]["tranId"])
    (batch,) = sb.outbox.batches()
    assert batch.sms_type == 2

    # type 3 takes its brandname from "brandname", so a brandname that is not registered is
    # refused, and the registered one is the record's sender.
    for brandname, code in ((b"NOBODY", "101"), (b"SMSVN", "00")):
        body = b'{"to": ["0987654321"], "content": "Xin chao", "type":3, "brandname":"%s"}' % (
            brandname,
        )
        _, _, raw = await replay(http, "POST", url, headers, body)
        assert decoded(raw)["code"] == code
    assert [(r.phone, r.sender) for r in sb.outbox] == [
        ("0912345678", None),
        ("0987654321", "SMSVN"),
    ]


async def test_speedsms_csharp_sample_after_the_basic_challenge(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """SpeedSMS's C# sample: WebClient with NetworkCredential(token, ":x") sends the POST
    without credentials (Expect: 100-continue), gets 401 with a Basic challenge, and sends it
    again with ``Authorization: Basic base64(token + "::x")``; the body is
    ``{"to":["..."], "content": "...", "type":2, "brandname": ""}``."""
    url = f"{sb.speedsms_url}/sms/send"
    body = (
        b'{"to":["0912345678"], "content": "Ma xac thuc cua ban la 5678", "type":2, '
        b'"brandname": ""}'
    )
    headers = {**DOTNET_POST, "Content-Type": "application/json"}
    # The server answers "100 Continue" and then, without waiting for the body, the 401 (as a
    # server may). aiohttp's client would then leave the body unsent and still reuse the
    # connection, so the challenge goes on a connection of its own.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=5),
    ) as once:
        status, challenge, raw = await replay(once, "POST", url, headers, body)
    assert status == 401 and challenge["WWW-Authenticate"] == 'Basic realm="api"'
    assert decoded(raw)["name"] == "Unauthorized"
    assert len(sb.outbox) == 0
    credentials = base64.b64encode(f"{TOKEN}::x".encode()).decode()
    authorized = {**headers, "Authorization": f"Basic {credentials}"}
    status, _, raw = await replay(http, "POST", url, authorized, body)
    assert status == 200
    answer = decoded(raw)
    assert answer["code"] == "00" and answer["data"]["totalSMS"] == 1
    assert [(r.phone, r.content, r.sender) for r in sb.outbox] == [
        ("0912345678", "Ma xac thuc cua ban la 5678", None)
    ]


async def test_speedsms_csharp_type_5_with_sender(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    """A C# client built on the same sample: ``"type":5`` with the Android device id under
    ``sender``; the documented ``sender`` name and the samples' ``type`` mix."""
    body = (
        b'{"to":["0912345678"], "content": "Your Otp is: 1234", "type":5, '
        b'"sender": "083c019d6f27c92b"}'
    )
    headers = {**DOTNET_POST, "Content-Type": "application/json", "Authorization": BASIC}
    status, _, raw = await replay(http, "POST", f"{sb.speedsms_url}/sms/send", headers, body)
    assert status == 200 and decoded(raw)["code"] == "00"
    assert [(r.phone, r.sender) for r in sb.outbox] == [("0912345678", "083c019d6f27c92b")]
    # type 5 without any device id is still refused, whatever the field is called
    body = b'{"to":["0912345678"], "content": "x", "type":5, "brandname": ""}'
    _, _, raw = await replay(http, "POST", f"{sb.speedsms_url}/sms/send", headers, body)
    assert decoded(raw)["code"] == "101"
    assert len(sb.outbox) == 1


async def test_speedsms_old_php_sample_sends_only_to_and_content(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """An older official PHP sample: ``json_encode(array('to' => $to, 'content' => ...))``
    (``/`` written ``\\/``, non-ASCII ``\\uXXXX``), curl with CURLAUTH_BASIC and ``token:x``.
    No type: the send is type 2, as the official PHP library's own default."""
    headers = {**PHP_CURL, "Authorization": BASIC, "Content-type": "application/json"}
    body = b'{"to":["84912345678","0987654321"],"content":"Ng\\u00e0y 01\\/02: test sms"}'
    status, _, raw = await replay(http, "POST", f"{sb.speedsms_url}/sms/send", headers, body)
    assert status == 200
    answer = decoded(raw)
    assert answer["code"] == "00"
    assert answer["data"]["totalSMS"] == 2 and answer["data"]["totalPrice"] == 500
    assert [(r.phone, r.content, r.sender) for r in sb.outbox] == [
        ("0912345678", "Ngày 01/02: test sms", None),
        ("0987654321", "Ngày 01/02: test sms", None),
    ]
    assert [b.sms_type for b in sb.outbox.batches()] == [2]
    assert sb.balance("speedsms") == 1e9 - 500


async def test_speedsms_documented_names_win_over_the_samples(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A body with both spellings: ``sms_type``/``sender`` are the documented fields."""
    headers = {**PHP_CURL, "Authorization": BASIC, "Content-type": "application/json"}
    body = json.dumps(
        {
            "to": ["0912345678"],
            "content": "hi",
            "sms_type": 3,
            "sender": "SMSVN",
            "type": 7,
            "brandname": "NOBODY",
        }
    ).encode()
    _, _, raw = await replay(http, "POST", f"{sb.speedsms_url}/sms/send", headers, body)
    assert decoded(raw)["code"] == "00"
    assert sb.outbox[0].sender == "SMSVN"


async def test_speedsms_voice_otp_as_the_documents_send_it(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """The voice document's curl (``-H "Content-Type: application/json" -X POST -d '{"to":
    "0912345678", "content": "1234"}'``), its GET form (``/voice/otp?to=0912345678&
    content=1234``) and the SMS document's PHP ``sendVoice("8491...", ...)`` (curl,
    ``json_encode``): national and international numbers alike."""
    url = f"{sb.speedsms_url}/voice/otp"
    headers = {**CURL, "Authorization": BASIC, "Content-Type": "application/json"}
    body = b'{"to": "0912345678", "content": "1234"}'
    status, _, raw = await replay(http, "POST", url, headers, body)
    assert status == 200 and decoded(raw)["code"] == "00"
    status, _, raw = await replay(
        http, "GET", f"{url}?to=0912345679&content=1234", {**CURL, "Authorization": BASIC}
    )
    assert status == 200 and decoded(raw)["code"] == "00"
    php = {**PHP_CURL, "Authorization": BASIC, "Content-type": "application/json"}
    status, _, raw = await replay(http, "POST", url, php, b'{"to":"84912345670","content":"99"}')
    answer = decoded(raw)
    assert answer["code"] == "00" and set(answer["data"]) == {"tranId", "totalPrice"}
    assert [(r.phone, r.kind, r.content) for r in sb.outbox] == [
        ("0912345678", "voice", "1234"),
        ("0912345679", "voice", "1234"),
        ("0912345670", "voice", "99"),
    ]


async def test_speedsms_access_token_in_the_query(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    """Clients in the wild authenticate with ``?access-token=`` (Yii2's query authenticator),
    without any Authorization header: a Python script's ``requests.get(".../user/info?
    access-token=" + token)`` and a NestJS service's axios POST to ``/sms/send?access-token=``
    with a JSON body."""
    status, _, raw = await replay(
        http, "GET", f"{sb.speedsms_url}/user/info?access-token={TOKEN}", PYTHON_REQUESTS
    )
    assert status == 200 and decoded(raw)["data"]["currency"] == "VND"
    axios = {
        "Accept": "application/json, text/plain, */*",
        "Content-Type": "application/json",
        "User-Agent": "axios/1.6.8",
        "Accept-Encoding": "gzip, compress, deflate, br",
    }
    body = b'{"content":"Ma OTP 4321","to":["0912345678"],"type":5,"sender":"device-1"}'
    url = f"{sb.speedsms_url}/sms/send?access-token={TOKEN}"
    status, _, raw = await replay(http, "POST", url, axios, body)
    assert status == 200 and decoded(raw)["code"] == "00"
    assert [(r.phone, r.sender) for r in sb.outbox] == [("0912345678", "device-1")]


@pytest.mark.parametrize(
    ("query", "authorization"),
    [
        ("?access-token=wrong", None),
        ("?access-token=", None),
        ("?access-token=wrong", BASIC),  # a wrong credential fails even beside a right one
        (f"?access-token={TOKEN}", "Basic " + base64.b64encode(b"wrong:x").decode()),
        ("?token=" + TOKEN, None),  # only Yii's own parameter name authenticates
    ],
)
async def test_speedsms_wrong_query_token_is_401(
    sb: Sandbox, http: aiohttp.ClientSession, query: str, authorization: str | None
) -> None:
    headers = dict(PYTHON_REQUESTS)
    if authorization is not None:
        headers["Authorization"] = authorization
    status, answer_headers, raw = await replay(
        http, "GET", f"{sb.speedsms_url}/user/info{query}", headers
    )
    assert status == 401 and answer_headers["WWW-Authenticate"] == 'Basic realm="api"'
    assert decoded(raw)["message"] == "Your request was made with invalid credentials."


async def test_speedsms_get_send_from_the_query_string(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """``GET /sms/send`` as clients in the wild send it: a Node script's
    ``fetch(".../sms/send?" + new URLSearchParams({"access-token", to, content, type}))``
    (spaces as ``+``), and a script joining several numbers with commas, with ``sender``."""
    url = (
        f"{sb.speedsms_url}/sms/send?access-token={TOKEN}&to=84912345678"
        "&content=%5BMANB+SHOP%5D+Ma+xac+thuc+cua+ban+la+123456.&type=2"
    )
    status, _, raw = await replay(http, "GET", url, NODE_FETCH)
    assert status == 200
    answer = decoded(raw)
    assert answer["status"] == "success" and answer["data"]["totalSMS"] == 1
    url = (
        f"{sb.speedsms_url}/sms/send?access-token={TOKEN}&to=0912340000,84987654321,12345"
        "&content=Tien%20ND%20test&type=3&sender=SMSVN"
    )
    status, _, raw = await replay(http, "GET", url, CURL)
    answer = decoded(raw)
    assert answer["code"] == "00" and answer["data"]["invalidPhone"] == ["12345"]
    assert [(r.phone, r.content, r.sender) for r in sb.outbox] == [
        ("0912345678", "[MANB SHOP] Ma xac thuc cua ban la 123456.", None),
        ("0912340000", "Tien ND test", "SMSVN"),
        ("0987654321", "Tien ND test", "SMSVN"),
    ]
    # the same checks as the POST: an unregistered brandname, no content, no number
    for query, code in (
        ("to=0912345678&content=x&type=3&sender=NOBODY", "101"),
        ("to=0912345678&type=2", "101"),
        ("content=x&type=2", "101"),
        ("to=0212345678&content=x", "105"),
    ):
        _, _, raw = await replay(
            http, "GET", f"{sb.speedsms_url}/sms/send?{query}", {"Authorization": BASIC}
        )
        assert decoded(raw)["code"] == code, query
    assert len(sb.outbox) == 3
    assert sb.requests[("speedsms", "send")] == 6


async def test_speedsms_status_and_wrong_case_are_not_served(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """``GET /sms/status/{tranId}`` (a Node client in the wild) has no documented answer: the
    simulator answers Yii's JSON 404, as for any unknown path. Yii routes are case-sensitive."""
    headers = {"Authorization": BASIC, "Content-Type": "application/json"}
    body = b'{"to":["0912345678"],"content":"hi"}'
    _, _, raw = await replay(http, "POST", f"{sb.speedsms_url}/sms/send", headers, body)
    tran_id = decoded(raw)["data"]["tranId"]
    for path in (f"/sms/status/{tran_id}", f"/sms/status{tran_id}", "/SMS/send", "/User/info"):
        status, _, raw = await replay(http, "GET", sb.speedsms_url + path, headers)
        assert status == 404, path
        assert decoded(raw) == {
            "name": "Not Found",
            "message": "Page not found.",
            "code": 0,
            "status": 404,
        }


# -- eSMS ---------------------------------------------------------------------------------------


async def test_esms_official_python_sample_posts_a_form(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """eSMS's official Python sample, ``send_sms_with_brandname_post``:
    ``requests.post(ESMS_BASE_API + 'SendMultipleMessage_V4_post/', data=param)`` with the
    field names in capitals, form-encoded (``+`` for spaces)."""
    url = f"{sb.esms_url}/SendMultipleMessage_V4_post/"
    headers = {**PYTHON_REQUESTS, "Content-Type": "application/x-www-form-urlencoded"}
    body = (
        f"APIKEY={API_KEY}&SECRETKEY={SECRET_KEY}&CONTENT=this+is+send+post+from+puthon"
        "&SMSTYPE=2&BRANDNAME=SMSVN&PHONE=0912345678"
    ).encode()
    status, answer_headers, raw = await replay(http, "POST", url, headers, body)
    assert status == 200
    assert answer_headers["Content-Type"] == "application/json; charset=utf-8"
    answer = decoded(raw)
    assert answer == {"CodeResult": "100", "CountRegenerate": 0, "SMSID": answer["SMSID"]}
    (record,) = sb.outbox
    assert (record.provider, record.phone, record.content, record.sender, record.message_id) == (
        "esms",
        "0912345678",
        "this is send post from puthon",
        "SMSVN",
        answer["SMSID"],
    )
    assert sb.balance("esms") == 1e9 - 350
    assert sb.requests[("esms", "send")] == 1

    # the same sample's GET, with the same capitals in the query string, answers alike
    query = (
        f"APIKEY={API_KEY}&SECRETKEY={SECRET_KEY}&CONTENT=this+is+send+get+from+puthon"
        "&SMSTYPE=2&BRANDNAME=SMSVN&PHONE=0987654321"
    )
    status, _, raw = await replay(
        http, "GET", f"{sb.esms_url}/SendMultipleMessage_V4_get?{query}", PYTHON_REQUESTS
    )
    assert status == 200 and decoded(raw)["CodeResult"] == "100"
    assert [r.phone for r in sb.outbox] == ["0912345678", "0987654321"]


async def test_esms_developer_guide_curl_x_form(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    """The developer guide's "POST X-Form": ``curl --header 'Content-Type:
    application/x-www-form-urlencoded' --data-urlencode 'Phone=...' ... 'Apikey=...'`` (spaces
    as ``%20``, UTF-8 percent-escapes), at the path without the trailing slash too."""
    headers = {**CURL, "Content-Type": "application/x-www-form-urlencoded"}
    body = (
        "Phone=0912345678&Content=M%C3%A3%20OTP%20c%E1%BB%A7a%20b%E1%BA%A1n%20l%C3%A0%201234"
        f"&Apikey={API_KEY}&SecretKey={SECRET_KEY}&SmsType=2&Brandname=SMSVN"
    ).encode()
    for path in ("/SendMultipleMessage_V4_post/", "/SendMultipleMessage_V4_post"):
        status, _, raw = await replay(http, "POST", sb.esms_url + path, headers, body)
        assert status == 200 and decoded(raw)["CodeResult"] == "100"
    assert [(r.phone, r.content) for r in sb.outbox] == [
        ("0912345678", "Mã OTP của bạn là 1234")
    ] * 2


async def test_esms_php_form_client_request_id_and_codes(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A PHP client in the wild: ``file_get_contents`` with ``http_build_query($data)`` and
    ``Content-type: application/x-www-form-urlencoded``; the form send has the JSON send's
    semantics: RequestId recognised (124), keys (101), brandname (104)."""
    url = f"{sb.esms_url}/SendMultipleMessage_V4_post/"
    headers = {"Content-type": "application/x-www-form-urlencoded"}

    def form(**fields: str) -> bytes:
        base = {
            "Phone": "0912345678",
            "Content": "Ma+OTP+cua+ban+la%3A+123456",
            "ApiKey": API_KEY,
            "SecretKey": SECRET_KEY,
            "IsUnicode": "0",
            "Brandname": "SMSVN",
            "SmsType": "2",
        }
        return "&".join(f"{k}={v}" for k, v in {**base, **fields}.items()).encode()

    _, _, raw = await replay(http, "POST", url, headers, form(RequestId="order-17"))
    first = decoded(raw)
    assert first["CodeResult"] == "100"
    _, _, raw = await replay(http, "POST", url, headers, form(RequestId="order-17"))
    assert decoded(raw) == {"CodeResult": "124", "ErrorMessage": "Request exist"}
    _, _, raw = await replay(http, "POST", url, headers, form(SecretKey="wrong"))
    assert decoded(raw) == {
        "CodeResult": "101",
        "CountRegenerate": 0,
        "ErrorMessage": "Authorize Failed",
    }
    _, _, raw = await replay(http, "POST", url, headers, form(Brandname="Verify"))
    assert decoded(raw)["CodeResult"] == "104"
    assert [(r.request_id, r.content) for r in sb.outbox] == [
        ("order-17", "Ma OTP cua ban la: 123456")
    ]
    assert sb.stats.duplicates == 1


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"ApiKey": API_KEY, "SecretKey": SECRET_KEY}).encode()),
        ("application/x-www-form-urlencoded", b"ApiKey=%FF%FE&Phone=0912345678"),
        ("application/x-www-form-urlencoded; charset=nope", b"ApiKey=x"),
        ("application/x-www-form-urlencoded", "Content=Mã".encode("utf-16")),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
    ],
)
async def test_esms_form_send_refuses_what_is_not_a_form(
    sb: Sandbox, http: aiohttp.ClientSession, content_type: str, body: bytes
) -> None:
    status, _, raw = await replay(
        http,
        "POST",
        f"{sb.esms_url}/SendMultipleMessage_V4_post/",
        {"Content-Type": content_type},
        body,
    )
    assert status == 400 and decoded(raw) == {"error": "Invalid request"}
    assert len(sb.outbox) == 0


async def test_esms_form_in_a_declared_charset(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1"}
    body = (
        f"ApiKey={API_KEY}&SecretKey={SECRET_KEY}&SmsType=2&Brandname=SMSVN"
        "&Phone=0912345678&Content=Caf%E9&IsUnicode=1"
    ).encode()
    url = f"{sb.esms_url}/SendMultipleMessage_V4_post/"
    _, _, raw = await replay(http, "POST", url, headers, body)
    assert decoded(raw)["CodeResult"] == "100"
    assert sb.outbox[0].content == "Café"


async def test_esms_paths_ignore_case(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    """eSMS is WCF on IIS: the operation paths match in any case, on both hosts; the keys in
    the path keep their case; an unknown or wrong-method path still gets WCF's pages."""
    sms = sb.esms_url.replace("/MainService.svc/json", "/mainservice.svc/JSON")
    voice = sb.esms_voice_url.replace("/MainService.svc/json", "/MAINSERVICE.SVC/Json")
    headers = {**PYTHON_REQUESTS, "Content-Type": "application/x-www-form-urlencoded"}
    body = (
        f"ApiKey={API_KEY}&SecretKey={SECRET_KEY}&SmsType=2&Brandname=SMSVN"
        "&Phone=0912345678&Content=hi"
    ).encode()
    _, _, raw = await replay(http, "POST", f"{sms}/sendmultiplemessage_v4_post/", headers, body)
    assert decoded(raw)["CodeResult"] == "100"
    status, _, raw = await replay(http, "GET", f"{sms}/GETBALANCE/{API_KEY}/{SECRET_KEY}", CURL)
    assert status == 200 and decoded(raw)["CodeResponse"] == "100"
    _, _, raw = await replay(http, "GET", f"{sms}/getbalance/{API_KEY.lower()}/{SECRET_KEY}", CURL)
    assert decoded(raw)["CodeResponse"] == "101"
    query = f"ApiKey={API_KEY}&SecretKey={SECRET_KEY}&Phone=0912345679&Code=1234"
    status, _, raw = await replay(http, "GET", f"{voice}/voiceotp?{query}", CURL)
    assert status == 200 and decoded(raw)["CodeResult"] == "100"
    assert [(r.phone, r.kind) for r in sb.outbox] == [
        ("0912345678", "sms"),
        ("0912345679", "voice"),
    ]
    status, answer_headers, raw = await replay(http, "GET", f"{sms}/nothing", CURL)
    assert status == 404 and b"Endpoint not found." in raw
    assert answer_headers["Content-Type"].startswith("text/html")
    status, _, raw = await replay(http, "GET", f"{sms}/getsmssentdata", CURL)
    assert status == 405 and b"Method not allowed." in raw
    status, _, raw = await replay(http, "PUT", f"{sms}/SENDMULTIPLEMESSAGE_V4_POST", CURL)
    assert status == 405
    assert sb.requests[("esms", "send")] == 1 and sb.requests[("esms", "balance")] == 2


# -- Fibo ---------------------------------------------------------------------------------------

SENDING: Final = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">'
    b"&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;Message&gt;Sending...&lt;/Message&gt;"
    b"&lt;Time&gt;&lt;/Time&gt;&lt;/SMS&gt;</string>"
)
"""The document's success answer, ``<string><SMS><Code>200</Code><Message>Sending...</Message>
<Time></Time></SMS></string>``, as ASMX writes a string."""


def laravel_status(body: bytes) -> str:
    """What a real Laravel client makes of an answer: the text of ``<string>`` (PHP's
    ``xml_parse_into_struct``), every non-digit stripped; it counts "200" (or "1") as sent."""
    root = etree.fromstring(body)
    return re.sub(r"[^0-9]", "", root.text or "")


def inner(body: bytes) -> etree._Element:
    root = etree.fromstring(body)
    return etree.fromstring((root.text or "").encode())


async def test_fibo_older_php_sample_with_smsguid_0(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A PHP client of the older host: ``'http://center.fibosms.com/service.asmx/
    SendMaskedSMS?' . http_build_query(array(..., 'smsGUID' => 0, 'serviceType' => 0))`` with
    curl. Sent twice with the same ``smsGUID=0``: two messages, since 0 is the document's
    default, no message id."""
    query = (
        f"clientNo={CLIENT_NO}&clientPass={CLIENT_PASS}&senderName=SMSVN"
        "&phoneNumber=0912345678&smsMessage=Ma+xac+thuc+cua+ban+la+1234&smsGUID=0&serviceType=0"
    )
    url = f"{sb.fibo_url}/service.asmx/SendMaskedSMS?{query}"
    for _ in range(2):
        status, headers, raw = await replay(http, "GET", url, PHP_CURL)
        assert status == 200 and headers["Content-Type"] == "text/xml; charset=utf-8"
        assert raw == SENDING
    assert [(r.phone, r.content, r.request_id, r.sender) for r in sb.outbox] == [
        ("0912345678", "Ma xac thuc cua ban la 1234", "0", "SMSVN")
    ] * 2
    assert len({r.message_id for r in sb.outbox}) == 2
    assert sb.balance("fibo") == 10_000_000 - 2


async def test_fibo_laravel_client_reads_200(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    """A real Laravel client: Guzzle GET of ``service.asmx/SendMaskedSMS?`` with the query
    joined by hand (``smsGUID=0``), then the digits of the ``<string>`` text compared with
    "200". ``<Time>`` is empty, as in the document, so an accepted message reads as sent, and a
    refusal as its code."""
    query = (
        f"clientNo={CLIENT_NO}&clientPass={CLIENT_PASS}&senderName=SMSVN"
        "&phoneNumber=0912345678&smsMessage=Xin%20chao%20quy%20khach&smsGUID=0&serviceType=0"
    )
    _, _, raw = await replay(
        http, "GET", f"{sb.fibo_url}/service.asmx/SendMaskedSMS?{query}", GUZZLE
    )
    assert laravel_status(raw) == "200"
    wrong = query.replace(f"clientPass={CLIENT_PASS}", "clientPass=nope")
    _, _, raw = await replay(
        http, "GET", f"{sb.fibo_url}/service.asmx/SendMaskedSMS?{wrong}", GUZZLE
    )
    assert laravel_status(raw) == "3"
    sms = inner(raw)
    assert (sms.findtext("Code"), sms.findtext("Time")) == ("3", "")
    assert [r.content for r in sb.outbox] == ["Xin chao quy khach"]


async def test_fibo_go_client_on_the_documented_host(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """A Go client of ``ha-api.fibosms.com``: ``http.Get`` of ``/SendMT/service.asmx/
    SendMaskedSMS`` with ``url.QueryEscape``d content and ``smsGUID=0``."""
    query = (
        f"clientNo={CLIENT_NO}&clientPass={CLIENT_PASS}&senderName=SMSVN"
        "&phoneNumber=0912345678&smsMessage=Ma+OTP%3A+778899&smsGUID=0&serviceType=0"
    )
    status, _, raw = await replay(
        http, "GET", f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS?{query}", GO
    )
    assert status == 200 and raw == SENDING
    assert [(r.content, r.request_id) for r in sb.outbox] == [("Ma OTP: 778899", "0")]


@pytest.mark.parametrize(
    "path",
    [
        "/SendMT/service.asmx/GetClientBalance",
        "/SendMT/service.aspx/GetClientBalance",
        "/Service.asmx/GetClientBalance",
        "/service.asmx/getclientbalance",
    ],
)
async def test_fibo_balance_on_every_layout(
    sb: Sandbox, http: aiohttp.ClientSession, path: str
) -> None:
    """The balance where real clients ask it: the document's ``service.aspx``, the
    ``service.asmx`` every client uses, and the older host's ``/Service.asmx`` (a C# Refit
    client); the answer is the document's, with an empty ``<Time>``."""
    sb.set_balance("fibo", 1641060)
    query = f"clientNo={CLIENT_NO}&clientPass={CLIENT_PASS}&serviceType=1"
    status, _, raw = await replay(http, "GET", f"{sb.fibo_url}{path}?{query}", DOTNET)
    assert status == 200
    assert raw == (
        b'<?xml version="1.0" encoding="utf-8"?>\n<string xmlns="http://tempuri.org/">'
        b"&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;AccountBalance&gt;1641060"
        b"&lt;/AccountBalance&gt;&lt;Time&gt;&lt;/Time&gt;&lt;/SMS&gt;</string>"
    )
    assert sb.requests[("fibo", "balance")] == 1


async def test_fibo_paths_and_parameter_names_ignore_case(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """IIS and ASP.NET: the C# Refit client's ``[Get("/Service.asmx/SendMaskedSMS")]``, any
    other case of any Fibo path, and parameter names in any case are the same method; a
    missing parameter is still named as the method declares it."""
    query = (
        f"CLIENTNO={CLIENT_NO}&clientpass={CLIENT_PASS}&SenderName=SMSVN"
        "&phonenumber=0912345678&SMSMESSAGE=hi&smsguid=1&ServiceType=0"
    )
    for path in (
        "/Service.asmx/SendMaskedSMS",
        "/SENDMT/SERVICE.ASMX/sendmaskedsms",
        "/sendmt/Service.aspx/SendMaskedSms",
    ):
        status, _, raw = await replay(http, "GET", f"{sb.fibo_url}{path}?{query}", DOTNET)
        assert status == 200 and raw == SENDING, path
    assert [r.request_id for r in sb.outbox] == ["1", "1", "1"]
    assert sb.requests[("fibo", "send")] == 3
    missing = query.replace("&smsguid=1", "")
    status, _, raw = await replay(
        http, "GET", f"{sb.fibo_url}/service.asmx/SendMaskedSMS?{missing}", DOTNET
    )
    assert status == 500 and b"Missing parameter: smsGUID." in raw
    # the SOAP service's path too
    soap = (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<GetTotalMt xmlns="http://tempuri.org/"><Username>{CLIENT_NO}</Username>'
        f"<Password>{CLIENT_PASS}</Password></GetTotalMt></soap:Body></soap:Envelope>"
    ).encode()
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '"http://tempuri.org/GetTotalMt"',
    }
    status, _, raw = await replay(
        http, "POST", f"{sb.fibo_url}/webserivcefibo/partnermttotal.ASMX", headers, soap
    )
    assert status == 200
    totals = etree.fromstring(raw).findtext(".//{http://tempuri.org/}GetTotalMtResult") or ""
    assert sum(int(count) for count in totals.split("|")) == 3
    # an unknown path is still not found
    status, _, _ = await replay(http, "GET", f"{sb.fibo_url}/service.asmx/Nothing", DOTNET)
    assert status == 404


async def test_fibo_repeated_parameter_is_joined_as_aspnet_does(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """ASP.NET joins the values of a repeated query name with commas: a content given twice
    is sent as both parts joined."""
    query = (
        f"clientNo={CLIENT_NO}&clientPass={CLIENT_PASS}&senderName=SMSVN&phoneNumber=0912345678"
        "&smsMessage=a&smsMessage=b&smsGUID=0&serviceType=0"
    )
    _, _, raw = await replay(
        http, "GET", f"{sb.fibo_url}/SendMT/service.asmx/SendMaskedSMS?{query}", GO
    )
    assert raw == SENDING
    assert [r.content for r in sb.outbox] == ["a,b"]
