"""Shared access signatures, checked for real — publisher tokens and revocations included.

A token (the format is in :mod:`iotlib.sas`) is valid when its signature matches the named
key and its expiry is in the future. The audience scopes it: a token for ``sb://host/telemetry``
covers the hub and everything under it, one for ``…/telemetry/consumergroups/warm`` only that
consumer group. Host names are not compared (the emulator answers to any).

A **publisher token** (audience ``sb://host/<hub>/publishers/<name>``, signed with a policy that
may send) is Event Hubs' per-device credential: it lets its holder send to ``<hub>`` only with
partition key ``<name>`` — never to a partition of its choosing, never to read — and is refused
once ``<name>`` is on the revoked-publisher list (:mod:`iotlib.devices.revocations`).

One place decides whether tokens allow something: :meth:`Grant.covers` (audience, rights,
expiry, against a ``now`` the caller passes from the emulator's clock) and, for what a
connection's tokens allow together, :class:`Grants` (:meth:`~Grants.until` for links,
:meth:`~Grants.send_refusal` for each send, :meth:`~Grants.refusal` for the words).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote, unquote_plus, urlsplit

from iotlib.devices.revocations import RevokedPublishers
from iotlib.errors import EmulatorError
from iotlib.local.emulator.config import KeyConfig
from iotlib.sas import make_token, sign, token_fields

__all__ = ["Grant", "Grants", "TokenError", "entity_path", "is_within", "make_token", "sign", "verify"]

TOKEN_TYPE_SAS = "servicebus.windows.net:sastoken"
PUBLISHERS = "publishers"


class TokenError(EmulatorError):
    """A token that does not grant access; the message says why, ``code`` names the kind as Azure does."""

    def __init__(self, message: str, *, code: str = "InvalidSignature") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: an entity scope, until a time, with rights.

    ``publisher`` is set for a publisher token; its scope is then ``<hub>/publishers/<name>``.
    """

    scope: str  # normalised entity path, e.g. "telemetry/consumergroups/warm" ("" = namespace)
    expires: float
    rights: frozenset[str]
    key_name: str
    publisher: str | None = None

    @property
    def hub(self) -> str:
        """The hub a publisher token sends to."""
        return self.scope.split("/", 1)[0]

    def admits_audience(self, wanted: str) -> bool:
        """May this token be put for ``wanted`` (the SDK puts a publisher's for its hub)?"""
        return is_within(wanted, self.scope) or (self.publisher is not None and wanted == self.hub)

    def covers(self, entity_path: str, right: str | None, now: float) -> bool:
        """Does this grant allow ``right`` (``None``: any right) on ``entity_path`` at ``now``?

        A publisher token allows sending to its hub (the partition key is checked per send,
        :meth:`Grants.send_refusal`) and reading the hub's properties, as any valid token of the
        hub does here; nothing else.
        """
        if now >= self.expires:
            return False
        if self.publisher is not None:
            return right in ("Send", None) and entity_path in (self.hub, self.scope)
        if right is not None and right not in self.rights and "Manage" not in self.rights:
            return False
        return is_within(entity_path, self.scope)


class Grants:
    """What the tokens one connection put on ``$cbs`` allow (a renewed token replaces its scope's).

    ``revoked`` is the revoked-publisher list; a revoked or disabled publisher's token covers nothing.
    """

    def __init__(self, revoked: RevokedPublishers | None = None) -> None:
        self._by_scope: dict[str, Grant] = {}
        self.revoked = revoked or RevokedPublishers(None)
        #: Whether any publisher token was put: only then does a send need its partition keys checked.
        self.has_publishers = False

    def put(self, grant: Grant) -> None:
        self._by_scope[grant.scope] = grant
        self.has_publishers = self.has_publishers or grant.publisher is not None

    def _live(self, entity_path: str, right: str | None, now: float) -> list[Grant]:
        return [
            g
            for g in self._by_scope.values()
            if g.covers(entity_path, right, now) and (g.publisher is None or not self.revoked.refused(g.publisher))
        ]

    def until(self, entity_path: str, right: str | None, now: float) -> float | None:
        """Until when some token allows ``right`` on ``entity_path`` (``None``: none does at ``now``)."""
        expiries = [g.expires for g in self._live(entity_path, right, now)]
        return max(expiries) if expiries else None

    def refusal(self, entity_path: str, right: str, now: float) -> str:
        """In words, why no token allows ``right`` on ``entity_path`` (for an attach refusal)."""
        for grant in self._by_scope.values():
            if grant.publisher is None:
                continue
            refused = self.revoked.refused(grant.publisher)
            if refused is not None:
                return refused.describe(grant.publisher)
            if now < grant.expires and entity_path != grant.hub:
                return (
                    f"a publisher token (for '{grant.publisher}') may only send to event hub '{grant.hub}' "
                    f"with partition key '{grant.publisher}', not use '{entity_path}'"
                )
        return (
            f"Unauthorized access. '{right}' claim(s) are required to perform this operation on "
            f"'{entity_path}'; put a valid token on $cbs first"
        )

    def send_refusal(self, entity_path: str, partition_keys: Iterable[str | None], now: float) -> str | None:
        """Why a send to ``entity_path`` with events of these partition keys is refused, or None.

        A token for the hub (or the namespace) allows any key; publisher tokens allow their own
        publisher's name as key only, and nothing once the publisher is revoked or disabled.
        """
        live = self._live(entity_path, "Send", now)
        if any(g.publisher is None for g in live):
            return None
        allowed = {g.publisher for g in live}
        strays = [key for key in dict.fromkeys(partition_keys) if key not in allowed]
        if not strays:
            return None
        for grant in self._by_scope.values():
            if grant.publisher is not None and grant.covers(entity_path, "Send", now):
                refused = self.revoked.refused(grant.publisher)
                if refused is not None:
                    return f"{refused.describe(grant.publisher)}: its token is no longer accepted"
        if not allowed:
            return f"no token for '{entity_path}' is valid any more (expired)"
        own = ", ".join(f"'{p}'" for p in sorted(p for p in allowed if p))
        key = strays[0]
        shown = "no partition key" if key is None else f"partition key '{key}'"
        return f"a publisher token sends only with its publisher's name as partition key ({own}); this send has {shown}"


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


def verify(token: str, keys: tuple[KeyConfig, ...], *, now: float) -> Grant:
    """Check a token's signature, key and expiry at ``now``; return what it grants."""
    if not token.strip().startswith("SharedAccessSignature "):
        raise TokenError("the token is not a SharedAccessSignature")
    fields = token_fields(token)
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
        raise TokenError(f"the token expired at {expiry} (now {int(now)})", code="ExpiredToken")
    scope = entity_path(audience)
    publisher = _publisher(audience)
    if publisher is None:
        return Grant(scope, float(expiry), key.rights, key_name)
    if not {"Send", "Manage"} & key.rights:
        raise TokenError(f"a publisher token must be signed with a policy that may send; {key_name!r} may not")
    return Grant(scope, float(expiry), frozenset({"Send"}), key_name, publisher)


def _publisher(audience: str) -> str | None:
    """The publisher's name in an audience ``…/<hub>/publishers/<name>`` (as written), else None."""
    text = urlsplit(audience).path if "://" in audience else audience
    parts = [unquote(p) for p in text.split("/") if p]
    if len(parts) == 3 and parts[1].lower() == PUBLISHERS and parts[2]:
        return parts[2]
    return None
