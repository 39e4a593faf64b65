"""``Client.from_env``: every client configured from the ``SMSVN_*`` variables the CLI reads.

The environment is always a dict passed as ``environ=`` (or ``monkeypatch``), never the
process's own; clients go to the simulator on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import smsvn
from smsvn import providers
from smsvn.errors import ValidationError
from smsvn.providers._base import BaseClient
from smsvn.sandbox import Sandbox
from tests.conftest import SENTINEL_KEY, SENTINEL_SECRET, SENTINEL_TOKEN

BUILT_IN = {"speedsms": smsvn.SpeedSMS, "esms": smsvn.ESMS, "fibo": smsvn.Fibo}


def environment(sb: Sandbox, name: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The sandbox's client options for ``name`` split into ``SMSVN_*`` variables (whatever
    ``from_env`` can read) and the keyword options left over (the rate limit). Every option a
    client needs to reach the sandbox must land in the environment, or the client built from
    it would talk to the real provider's host."""
    client = providers.get(name).client
    prefix = f"SMSVN_{name.upper()}_"
    by_credential = {c.name: c.env for c in client.credentials}
    readable = dict(client.env_options)
    if client.sender_option is not None:
        readable[client.sender_option] = str
    environ: dict[str, str] = {}
    rest: dict[str, Any] = {}
    for key, value in sb.client_options(name).items():
        if key in by_credential:
            environ[by_credential[key]] = value
        elif key in readable:
            environ[prefix + key.upper()] = str(value)
        else:
            rest[key] = value
    assert not any(isinstance(v, str) and v.startswith(sb.url) for v in rest.values()), rest
    return environ, rest


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        yield sandbox


async def test_every_provider_sends_with_what_the_environment_says(
    sb: Sandbox, provider: str
) -> None:
    environ, rest = environment(sb, provider)
    async with providers.get(provider).client.from_env(environ=environ, **rest) as client:
        assert type(client) is BUILT_IN[provider]
        await client.balance()
        result = await client.send("0912345678", "Ma OTP cua ban la 4821")
    assert result.recipients
    [record] = sb.outbox
    sender = providers.get(provider).sender_option
    assert sender is not None
    assert record.sender == sb.client_options(provider)[sender]  # the sender came from env


async def test_speedsms_type_and_sender_come_from_the_environment(sb: Sandbox) -> None:
    environ, rest = environment(sb, "speedsms")
    assert environ["SMSVN_SPEEDSMS_SMS_TYPE"] == "3"
    async with smsvn.SpeedSMS.from_env(environ=environ, **rest) as sms:
        assert (sms.sms_type, sms.sender) == (3, sb.speedsms_sender)
    environ["SMSVN_SPEEDSMS_SMS_TYPE"] = "4"
    del environ["SMSVN_SPEEDSMS_SENDER"]
    async with smsvn.SpeedSMS.from_env(environ=environ, **rest) as sms:
        assert (sms.sms_type, sms.sender) == (4, None)


async def test_esms_voice_calls_go_to_the_voice_url_from_the_environment(sb: Sandbox) -> None:
    environ, rest = environment(sb, "esms")
    assert "SMSVN_ESMS_VOICE_BASE_URL" in environ
    async with smsvn.ESMS.from_env(environ=environ, **rest) as esms:
        await esms.voice_otp("0912345678", "4821")
    assert [r.kind for r in sb.outbox] == ["voice"]


async def test_values_are_stripped_of_surrounding_whitespace(sb: Sandbox) -> None:
    environ, rest = environment(sb, "speedsms")
    environ = {key: f"  {value}\n" for key, value in environ.items()}  # from secret files
    async with smsvn.SpeedSMS.from_env(environ=environ, **rest) as sms:
        await sms.balance()
        assert sms.base_url == sb.speedsms_url


@pytest.mark.parametrize(
    ("cls", "environ", "named"),
    [
        (smsvn.SpeedSMS, {}, ["SMSVN_SPEEDSMS_TOKEN"]),
        (smsvn.SpeedSMS, {"SMSVN_SPEEDSMS_TOKEN": "  \n"}, ["SMSVN_SPEEDSMS_TOKEN"]),
        (smsvn.ESMS, {"SMSVN_ESMS_API_KEY": SENTINEL_KEY}, ["SMSVN_ESMS_SECRET_KEY"]),
        (smsvn.ESMS, {"SMSVN_ESMS_API_KEY": ""}, ["SMSVN_ESMS_API_KEY", "SMSVN_ESMS_SECRET_KEY"]),
        (smsvn.Fibo, {"SMSVN_FIBO_CLIENT_PASS": SENTINEL_SECRET}, ["SMSVN_FIBO_CLIENT_NO"]),
        # Another provider's variables are not this one's.
        (
            smsvn.Fibo,
            {"SMSVN_SPEEDSMS_TOKEN": SENTINEL_TOKEN},
            ["SMSVN_FIBO_CLIENT_NO", "SMSVN_FIBO_CLIENT_PASS"],
        ),
    ],
)
def test_a_missing_credential_names_its_variable_and_no_value(
    cls: type[BaseClient], environ: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        cls.from_env(environ=environ)
    error = caught.value
    shown = f"{error}\n{error!r}"
    for variable in named:
        assert variable in shown
    for variable in {c.env for c in cls.credentials} - set(named):
        assert variable not in shown  # only the missing ones
    assert "SENTINEL" not in shown
    assert error.provider == cls.provider


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMSVN_SPEEDSMS_BASE_URL", f"ftp://user:{SENTINEL_SECRET}@example.invalid"),
        ("SMSVN_SPEEDSMS_BASE_URL", f"api.speedsms.vn/{SENTINEL_SECRET}"),
        ("SMSVN_SPEEDSMS_SMS_TYPE", f"three-{SENTINEL_SECRET}"),
    ],
)
def test_an_unreadable_value_names_its_variable_and_not_the_value(
    variable: str, value: str
) -> None:
    environ = {"SMSVN_SPEEDSMS_TOKEN": SENTINEL_TOKEN, variable: value}
    with pytest.raises(ValidationError) as caught:
        smsvn.SpeedSMS.from_env(environ=environ)
    shown = f"{caught.value}\n{caught.value!r}"
    assert variable in shown
    assert "SENTINEL" not in shown


def test_the_constructor_still_checks_what_the_environment_gave() -> None:
    environ = {"SMSVN_SPEEDSMS_TOKEN": SENTINEL_TOKEN, "SMSVN_SPEEDSMS_SMS_TYPE": "9"}
    with pytest.raises(ValidationError, match="sms_type 9"):
        smsvn.SpeedSMS.from_env(environ=environ)
    environ["SMSVN_SPEEDSMS_SMS_TYPE"] = "3"  # a brandname type without a brandname
    with pytest.raises(ValidationError, match="needs a sender"):
        smsvn.SpeedSMS.from_env(environ=environ)


async def test_keyword_options_win_over_the_environment(sb: Sandbox, closed_port: int) -> None:
    environ, rest = environment(sb, "speedsms")
    environ["SMSVN_SPEEDSMS_BASE_URL"] = f"http://127.0.0.1:{closed_port}/speedsms/index.php"
    environ["SMSVN_SPEEDSMS_TOKEN"] = "not-the-sandbox-token"
    async with smsvn.SpeedSMS.from_env(
        environ=environ, base_url=sb.speedsms_url, token=sb.speedsms_token, sms_type=2, **rest
    ) as sms:
        await sms.balance()  # the sandbox answered: base_url and token were the keywords
        assert sms.sms_type == 2


async def test_options_reach_the_client(sb: Sandbox) -> None:
    environ, rest = environment(sb, "fibo")
    async with smsvn.Fibo.from_env(environ=environ, max_wait=0.5, deadline=2.0, **rest) as fibo:
        assert fibo._transport.max_wait == 0.5
        assert fibo._transport.deadline == 2.0
    with pytest.raises(ValidationError, match="deadline"):
        smsvn.Fibo.from_env(environ=environ, deadline=-1)


async def test_without_environ_the_process_environment_is_read(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ, rest = environment(sb, "esms")
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    async with smsvn.ESMS.from_env(**rest) as esms:
        await esms.balance()
    monkeypatch.delenv("SMSVN_ESMS_SECRET_KEY")
    with pytest.raises(ValidationError, match="SMSVN_ESMS_SECRET_KEY"):
        smsvn.ESMS.from_env(**rest)


async def test_a_subclass_builds_itself(sb: Sandbox) -> None:
    class Mine(smsvn.SpeedSMS):
        pass

    environ, rest = environment(sb, "speedsms")
    async with Mine.from_env(environ=environ, **rest) as sms:
        assert type(sms) is Mine
        await sms.balance()


def test_the_registry_and_the_clients_declare_the_same_variables() -> None:
    for name, cls in BUILT_IN.items():
        entry = providers.get(name)
        assert entry.client is cls
        assert entry.credentials == cls.credentials
        assert entry.sender_option == cls.sender_option
        for credential in cls.credentials:
            assert credential.env.startswith(f"SMSVN_{name.upper()}_")
    # The variables the README and DESIGN name for each provider.
    assert [c.env for c in smsvn.ESMS.credentials] == [
        "SMSVN_ESMS_API_KEY",
        "SMSVN_ESMS_SECRET_KEY",
    ]
