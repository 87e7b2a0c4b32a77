"""Shared access signatures, checked for real.

A token ``SharedAccessSignature sr=<url-encoded audience>&sig=<signature>&se=<expiry>&skn=<key name>``
is valid when ``sig`` is the base64 HMAC-SHA256, under the named key, of
``<url-encoded audience>\\n<expiry>`` and the expiry is in the future. The
audience scopes it: a token for ``sb://host/telemetry`` covers the hub and
everything under it, one for ``…/telemetry/consumergroups/warm`` only that
consumer group. Host names are not compared (the emulator answers to any).

One place decides whether a token allows something: :meth:`Grant.covers`
(audience, rights, expiry, against a ``now`` the caller passes from the
emulator's clock). A connection keeps what its tokens grant in :class:`Grants`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus, urlsplit

from iotlib.errors import EmulatorError
from iotlib.local.emulator.config import KeyConfig

TOKEN_TYPE_SAS = "servicebus.windows.net:sastoken"


class TokenError(EmulatorError):
    """A token that does not grant access; the message says why."""


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: an entity scope, until a time, with rights."""

    scope: str  # normalised entity path, e.g. "telemetry/consumergroups/warm" ("" = namespace)
    expires: float
    rights: frozenset[str]
    key_name: str

    def covers(self, entity_path: str, right: str | None, now: float) -> bool:
        """Does this grant allow ``right`` (``None``: any right) on ``entity_path`` at ``now``?"""
        if now >= self.expires:
            return False
        if right is not None and right not in self.rights and "Manage" not in self.rights:
            return False
        return is_within(entity_path, self.scope)


class Grants:
    """What the tokens one connection put on ``$cbs`` allow (a renewed token replaces its scope's)."""

    def __init__(self) -> None:
        self._by_scope: dict[str, Grant] = {}

    def put(self, grant: Grant) -> None:
        self._by_scope[grant.scope] = grant

    def until(self, entity_path: str, right: str | None, now: float) -> float | None:
        """Until when some token allows ``right`` on ``entity_path`` (``None``: none does at ``now``)."""
        expiries = [g.expires for g in self._by_scope.values() if g.covers(entity_path, right, now)]
        return max(expiries) if expiries else None


def entity_path(address: str) -> str:
    """The normalised entity path of an audience or link address (scheme and host dropped)."""
    text = address.strip()
    if "://" in text:
        text = urlsplit(text).path
    return "/".join(part for part in text.lower().split("/") if part)


def is_within(path: str, scope: str) -> bool:
    if not scope:
        return True
    return path == scope or path.startswith(scope + "/")


def sign(audience: str, key: str, expiry: int) -> str:
    """The signature over an audience that a client would send (used by tests and tools)."""
    digest = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def make_token(audience: str, key_name: str, key: str, expiry: int) -> str:
    """A SAS token as the Azure SDKs write it."""
    return (
        f"SharedAccessSignature sr={quote_plus(audience)}&sig={quote_plus(sign(audience, key, expiry))}"
        f"&se={expiry}&skn={quote_plus(key_name)}"
    )


def verify(token: str, keys: tuple[KeyConfig, ...], *, now: float) -> Grant:
    """Check a token's signature, key and expiry at ``now``; return what it grants."""
    text = token.strip()
    prefix = "SharedAccessSignature "
    if not text.startswith(prefix):
        raise TokenError("the token is not a SharedAccessSignature")
    fields: dict[str, str] = {}
    for part in text[len(prefix) :].split("&"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value
    missing = [f for f in ("sr", "sig", "se", "skn") if f not in fields]
    if missing:
        raise TokenError(f"the token lacks {', '.join(missing)}")
    key_name = unquote_plus(fields["skn"])
    key = next((k for k in keys if k.name == key_name), None)
    if key is None:
        raise TokenError(f"unknown shared access key name {key_name!r}")
    try:
        expiry = int(fields["se"])
    except ValueError as exc:
        raise TokenError("the token's expiry (se) is not a number") from exc
    signature = unquote_plus(fields["sig"])
    raw_sr = fields["sr"]
    audience = unquote_plus(raw_sr)
    candidates = {raw_sr, quote_plus(audience)}
    good = False
    for resource in candidates:
        expected = hmac.new(key.key.encode(), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
        if hmac.compare_digest(base64.b64encode(expected).decode(), signature):
            good = True
            break
    if not good:
        raise TokenError(f"the signature does not match key {key_name!r}")
    if expiry <= now:
        raise TokenError(f"the token expired at {expiry} (now {int(now)})")
    return Grant(entity_path(audience), float(expiry), key.rights, key_name)
