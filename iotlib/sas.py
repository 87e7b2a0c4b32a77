"""Shared access signatures: the token format Event Hubs uses, written once.

``SharedAccessSignature sr=<url-encoded audience>&sig=<signature>&se=<expiry>&skn=<key name>``:
``sig`` is the base64 HMAC-SHA256, under the named policy's key, of ``<url-encoded audience>\\n<expiry>``;
``se`` is the expiry in seconds since the epoch. The device registry (:mod:`iotlib.devices`)
issues such tokens and the local emulator (:mod:`iotlib.local.emulator.auth`) checks them; both
read and write the format here, as the Azure SDKs do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus, unquote_plus

PREFIX = "SharedAccessSignature "
FIELDS = ("sr", "sig", "se", "skn")


def sign(audience: str, key: str, expiry: int) -> str:
    """The signature over ``audience`` and ``expiry`` under ``key`` (base64 text)."""
    digest = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def make_token(audience: str, key_name: str, key: str, expiry: int) -> str:
    """A token for ``audience`` signed with the policy ``key_name``/``key``, valid until ``expiry``."""
    return (
        f"{PREFIX}sr={quote_plus(audience)}&sig={quote_plus(sign(audience, key, expiry))}"
        f"&se={expiry}&skn={quote_plus(key_name)}"
    )


def token_fields(token: str) -> dict[str, str]:
    """A token's fields as sent (``sr``, ``sig``, ``se``, ``skn``: still URL-encoded); ``{}`` for no token."""
    text = token.strip()
    if not text.startswith(PREFIX):
        return {}
    fields: dict[str, str] = {}
    for part in text[len(PREFIX) :].split("&"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value
    return fields


def audience_of(token: str) -> str | None:
    """The audience (``sr``) a token was signed for, decoded."""
    raw = token_fields(token).get("sr")
    return unquote_plus(raw) if raw is not None else None


def expiry_of(token: str) -> int | None:
    """A token's expiry (``se``), seconds since the epoch."""
    raw = token_fields(token).get("se")
    return int(raw) if raw is not None and raw.isdigit() else None
