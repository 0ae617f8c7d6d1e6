"""What a check found, and the rules on a token's algorithm and claims that decide it.

A rule that fails raises ``Finding`` with the verdict's reason and detail; the
checks in ``authgw.verify.check`` turn it into a ``Verdict``. No detail holds a
secret or a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from authgw.jwtutil import HMAC_ALGORITHMS, JWKS_ALGORITHMS
from authgw.verify.text import human_duration, printable, utc_time

Reason = Literal[
    "valid",
    "missing",
    "unverifiable",
    "malformed",
    "unsupported_algorithm",
    "unknown_kid",
    "bad_signature",
    "invalid_claim",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
]


@dataclass(frozen=True)
class Verdict:
    """What a check found. ``detail`` is for people; ``reason`` is for code and tests.

    ``checked_with`` names the key: the secret's fingerprint, or ``kid X`` of a JWKS key.
    ``claims`` and ``header`` are the token's own (for display), ``{}`` if malformed.
    """

    valid: bool
    reason: Reason
    detail: str
    kid: str | None = None
    alg: str | None = None
    checked_with: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    header: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Finding(Exception):
    """A check failed; carries the verdict's reason and detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- rules -------------------------------------------------------------------------


def validate_algorithm(alg: str, allowed: tuple[str, ...], hmac: bool) -> None:
    """``alg`` must be one of ``allowed``, which holds one family only (``hmac`` or not)."""
    if not alg:
        raise Finding("unsupported_algorithm", "the token's header has no alg")
    if alg.lower() == "none":
        raise Finding("unsupported_algorithm", "alg none: an unsigned token is never accepted")
    if alg in allowed:
        return
    if alg in (JWKS_ALGORITHMS if hmac else HMAC_ALGORITHMS):
        family, other, instead = (
            ("a public-key", "a shared secret", "check it against a JWKS")
            if hmac
            else ("an HMAC", "a JWKS", "check it with its shared secret")
        )
        raise Finding(
            "unsupported_algorithm",
            f"the token is {alg}, {family} algorithm, which {other} never checks; {instead}",
        )
    raise Finding(
        "unsupported_algorithm", f"alg {printable(alg)} is not one of {', '.join(allowed)}"
    )


def validate_claims(
    claims: Mapping[str, Any],
    audience: str | Iterable[str] | None,
    issuer: str | None,
    now: float,
    leeway: float,
) -> None:
    _validate_expiry(claims, now, leeway)
    _validate_not_before(claims, now, leeway)
    _validate_issuer(claims, issuer)
    _validate_audience(claims, audience)


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Finding("invalid_claim", f"{name} is {printable(json.dumps(value))}, not a number")
    return float(value)


def _validate_expiry(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp = _time_claim(claims, "exp")
    if exp is not None and exp <= now - leeway:
        raise Finding("expired", f"expired {human_duration(now - exp)} ago (at {utc_time(exp)})")


def _validate_not_before(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    for name, what in (("nbf", "not valid before"), ("iat", "issued in the future, at")):
        when = _time_claim(claims, name)
        if when is not None and when > now + leeway:
            raise Finding(
                "not_yet_valid",
                f"{what} {utc_time(when)} (in {human_duration(when - now)}; "
                f"{name} claim; clocks out of step?)",
            )


def _validate_issuer(claims: Mapping[str, Any], issuer: str | None) -> None:
    if issuer is None:
        return
    if "iss" not in claims:
        raise Finding("wrong_issuer", f"the token has no iss claim, expected {printable(issuer)}")
    if claims["iss"] != issuer:
        raise Finding(
            "wrong_issuer",
            f"issuer is {printable(str(claims['iss']))}, expected {printable(issuer)}",
        )


def _validate_audience(claims: Mapping[str, Any], audience: str | Iterable[str] | None) -> None:
    if audience is None:
        return
    expected = [audience] if isinstance(audience, str) else list(audience)
    want = " or ".join(printable(a) for a in expected)
    if "aud" not in claims:
        raise Finding("wrong_audience", f"the token has no aud claim, expected {want}")
    aud = claims["aud"]
    have = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if have is None or not all(isinstance(a, str) for a in have):
        raise Finding("invalid_claim", f"aud is {printable(json.dumps(aud))}, not a string or list")
    if not set(have) & set(expected):
        shown = ", ".join(printable(a) for a in have) or "empty"
        raise Finding("wrong_audience", f"audience is {shown}, expected {want}")


# -- building a verdict ------------------------------------------------------------


def header_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    return alg if isinstance(alg, str) else ""


def malformed() -> Verdict:
    return Verdict(
        valid=False,
        reason="malformed",
        detail="not a JWT (expected three base64url segments, the first two JSON objects)",
    )


def make_verdict(
    reason: Reason,
    detail: str,
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    checked_with: str | None,
    notes: Iterable[str] = (),
) -> Verdict:
    kid = header.get("kid")
    return Verdict(
        valid=reason == "valid",
        reason=reason,
        detail=detail,
        kid=kid if isinstance(kid, str) else None,
        alg=header_alg(header) or None,
        checked_with=checked_with,
        claims=dict(claims),
        header=dict(header),
        notes=tuple(notes),
    )
