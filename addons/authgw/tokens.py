"""The Token value type, fingerprints, JWT peeking, and the token error tree.

Nothing here verifies a signature: ``peek`` only reads what a token says about
itself, for logs, status and cache expiry. ``verify.py`` does verification.

Exceptions::

    TokenUnavailable          a token could not be had; carries ``error_class``
    ├── MissingSecret         the secret (env var or file) is not there
    ├── ExpiredToken          a static token's own ``exp`` has passed
    └── InsecureUpstream      the token would travel over plain http off-host

The ``error_class`` of each is what the client sees in ``X-Authgw-Error`` and what
metrics and the flow log record: an AWS error code or one of ``transport``,
``timeout``, ``expired``, ``missing_secret``, ``insecure_upstream``,
``invalid_token``, ``internal``. Messages name routes, sources and fingerprints,
never a secret or a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from authgw.errors import AuthgwError


def fingerprint(secret: bytes | str) -> str:
    """``sha256:`` + the first 12 hex digits of SHA-256 over the secret bytes."""
    data = secret.encode() if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


def split_prefix(value: str, prefix: str) -> tuple[str, str]:
    """(the prefix as sent, the token) of a credential header; the prefix matches in any
    case and with any spacing (``bearer  x``), and may be absent."""
    word = prefix.strip()
    head = value.lstrip()
    if word and head[: len(word)].lower() == word.lower():
        token = head[len(word) :]
        return head[: len(head) - len(token.lstrip())], token.strip()
    return "", value.strip()


@dataclass(frozen=True)
class Token:
    """An immutable token snapshot. ``value`` is never part of ``repr``.

    ``expires_at`` is wall-clock epoch seconds (the same clock as a JWT ``exp``),
    or None for a token without expiry.
    """

    value: str = field(repr=False)
    source: str
    kid: str | None = None
    expires_at: float | None = None
    issued_at: float | None = None
    claim_names: tuple[str, ...] = ()
    # basic: the password inside ``value`` (base64 of user:password), which a placeholder
    # stands for and which scrubbing and the leak check look for as well
    password: str | None = field(default=None, repr=False)

    @property
    def credential(self) -> str:
        """What a placeholder stands for: the password of a basic token, else the token."""
        return self.password if self.password is not None else self.value

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.value)

    def seconds_left(self, now: float) -> float | None:
        return None if self.expires_at is None else self.expires_at - now


@dataclass(frozen=True)
class JwtPeek:
    """What an unverified JWT says about itself."""

    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def exp(self) -> float | None:
        return _number(self.claims.get("exp"))

    @property
    def iat(self) -> float | None:
        return _number(self.claims.get("iat"))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _b64json(segment: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def peek(token: str) -> JwtPeek | None:
    """Header and claims of a compact JWS, or None if ``token`` is not one.

    No signature check: use this for display and expiry bookkeeping only.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header = _b64json(parts[0])
    claims = _b64json(parts[1])
    if header is None or claims is None:
        return None
    return JwtPeek(header=header, claims=claims)


def token_from_jwt(value: str, source: str, *, expires_at: float | None = None) -> Token:
    """A Token for ``value``, with kid, expiry and claim names read from the JWT if it is one.

    An explicit ``expires_at`` (STS's ``Expiration``) wins over the token's ``exp``.
    """
    peeked = peek(value)
    if peeked is None:
        return Token(value=value, source=source, expires_at=expires_at)
    return Token(
        value=value,
        source=source,
        kid=peeked.kid,
        expires_at=expires_at if expires_at is not None else peeked.exp,
        issued_at=peeked.iat,
        claim_names=tuple(sorted(peeked.claims)),
    )


class TokenUnavailable(AuthgwError):
    """A token could not be had for a request; the request is answered 502."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def remade(kind: type[TokenUnavailable], error_class: str, message: str) -> TokenUnavailable:
    """A new error of ``kind`` with no traceback, cause or context: a remembered failure
    is raised as a fresh one each time (re-raising one object grows its traceback by
    each request's frames, and keeps them alive)."""
    error = kind.__new__(kind)
    TokenUnavailable.__init__(error, error_class, message)
    return error


class MissingSecret(TokenUnavailable):
    """The secret's env var is unset or empty, or its file is missing or empty. ``ref``:
    which of a route's secrets (a config error names its field)."""

    ref: object = None  # the SecretRef, where the reader knows it

    def __init__(self, message: str, ref: object = None) -> None:
        super().__init__("missing_secret", message)
        self.ref = ref


class ExpiredToken(TokenUnavailable):
    """A static token is a JWT whose ``exp`` has passed."""

    def __init__(self, message: str) -> None:
        super().__init__("expired", message)


class InsecureUpstream(TokenUnavailable):
    """The token would go over plain http to a non-loopback host without ``allow_http``."""

    def __init__(self, message: str) -> None:
        super().__init__("insecure_upstream", message)
