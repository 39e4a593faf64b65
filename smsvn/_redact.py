"""Redaction: every written form of every secret, out of messages, excerpts and decoded answers.

A provider, a proxy or a gateway may echo a request back in an answer (an error message, a
debugging page) in any of the forms it travelled in, or half-decoded, or escaped once more for
the answer's own format. ``Redactor`` knows those forms and replaces each with ``***``. The
transport owns one per client; nothing else builds error text from a provider's words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from html import escape
from typing import Final, TypeVar, cast
from urllib.parse import quote, quote_plus

import msgspec
from yarl import URL

__all__ = ["EXCERPT", "Redactor"]

EXCERPT: Final = 200
"""Characters of a provider's answer quoted in an error message."""

T = TypeVar("T")


class Redactor:
    """Replaces every form of the given secrets with ``***`` in text and decoded values."""

    __slots__ = ("_forms", "_longest", "_maybe_secret")

    def __init__(self, secrets: Iterable[str]) -> None:
        self._forms = _secret_forms(secrets)
        # Any form of any secret, or a JSON escape that could hide one, in an undecoded body.
        self._maybe_secret = re.compile(
            b"|".join([b"\\\\", *(re.escape(form.encode()) for form in self._forms)])
        )
        self._longest = len(self._forms[0]) if self._forms else 0

    def __repr__(self) -> str:
        return f"Redactor({len(self._forms)} forms)"

    def text(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``***``."""
        for secret in self._forms:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def value(self, value: T, body: bytes | None = None) -> T:
        """A decoded answer (structs, lists, dicts, strings) with every form of every secret in
        its strings replaced by ``***``; the same object when there was none.

        Redacting after decoding is what makes ``raw`` safe: JSON may write any character as a
        ``\\uXXXX`` escape, so no search of the undecoded bytes finds every echo of a secret.
        Given the ``body`` it was decoded from, the walk is skipped when the body has no escape
        and no form of a secret, since nothing decoded from it can then hold one (the hot path).
        """
        if not self._forms:
            return value
        if body is not None and self._maybe_secret.search(body) is None:
            return value
        return cast(T, _redact_value(value, self.text))

    def excerpt(self, body: bytes) -> str:
        """A short, redacted, printable excerpt of a body for an error message."""
        # Past the excerpt by the longest secret form, so that no secret is cut in two.
        text = body[: EXCERPT * 4 + self._longest].decode("utf-8", "replace")
        text = self.text(text)
        if len(text) > EXCERPT:
            text = text[:EXCERPT] + "..."
        return repr(text)


def _redact_value(value: object, redact: Callable[[str], str]) -> object:
    """``value`` with ``redact`` applied to every string in it (see ``Redactor.value``)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, msgspec.Struct):
        changes: dict[str, object] = {}
        for name in value.__struct_fields__:
            old = getattr(value, name)
            new = _redact_value(old, redact)
            if new is not old:
                changes[name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(value, list | tuple):
        items = [_redact_value(item, redact) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        pairs = [(_redact_value(k, redact), _redact_value(v, redact)) for k, v in value.items()]
        if all(k is ok and v is ov for (k, v), (ok, ov) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)
    return value


def _secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every way a secret may be written in a URL, a JSON body or XML, longest first."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            xml_text = secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            json_form = msgspec.json.encode(secret).decode()[1:-1]
            ascii_json = json.dumps(secret)[1:-1]  # non-ASCII as \uXXXX, as most servers
            forms.update(
                (
                    secret,
                    quote(secret, safe=""),
                    quote_plus(secret, safe=""),
                    # As yarl writes it in a query string (it leaves / ? : @ ~ as they are).
                    URL("http://h/").extend_query({"s": secret}).raw_query_string[2:],
                    # A query string percent-decoded but not plus-decoded (a logged URL).
                    secret.replace(" ", "+"),
                    escape(secret),  # HTML, quotes too
                    xml_text,  # XML text, as lxml writes it (quotes as they are)
                    xml_text.replace("&", "&amp;"),  # and escaped again (ASMX's <string>)
                    json_form,
                    json_form.replace("/", "\\/"),  # as WCF (eSMS) writes JSON
                    ascii_json,
                    ascii_json.replace("/", "\\/"),
                )
            )
    return tuple(sorted(forms, key=len, reverse=True))
