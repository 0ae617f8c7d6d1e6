"""Checking a token against a shared secret (``verify_hmac``) or a JWK Set (``verify_jwks``).

The algorithm is checked first, then the signature, then the claims: claims are
believed only once the signature matched. The answer is a ``Verdict``; an input
that cannot be used at all raises ``VerifyError``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt
from jwt.types import Options

from authgw.jwtutil import (
    HMAC_ALGORITHMS,
    JWKS_ALGORITHMS,
    MIN_HMAC_KEY_BYTES,
    check_hmac_signature,
)
from authgw.tokens import fingerprint, peek
from authgw.verify.errors import VerifyError
from authgw.verify.jwks import Jwks, JwksSource
from authgw.verify.text import printable
from authgw.verify.verdict import (
    Finding,
    Verdict,
    header_alg,
    make_verdict,
    malformed,
    validate_algorithm,
    validate_claims,
)

# PyJWT checks only the signature; the claims are checked here, on an injectable clock.
_SIGNATURE_ONLY: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


# -- HMAC --------------------------------------------------------------------------


def verify_hmac(
    token: str,
    secret: bytes,
    *,
    algorithms: Iterable[str] = HMAC_ALGORITHMS,
    audience: str | Iterable[str] | None = None,
    issuer: str | None = None,
    now: float | None = None,
    leeway: float = 0.0,
) -> Verdict:
    """Check ``token`` against the shared ``secret`` (HS256/384/512 only).

    A bad signature's detail names the token's ``kid`` beside the fingerprint of
    ``secret``: with authgw's default ``kid: fingerprint``, a drifted secret shows
    as two different fingerprints. Raises ``VerifyError`` for an unusable secret.
    """
    if not secret:
        raise VerifyError("the secret is empty")
    secret_fp = fingerprint(secret)
    peeked = peek(token)
    if peeked is None:
        return malformed()
    alg, kid = header_alg(peeked.header), peeked.kid
    notes: list[str] = []
    try:
        allowed = tuple(a for a in algorithms if a in HMAC_ALGORITHMS)
        validate_algorithm(alg, allowed, hmac=True)
        minimum = MIN_HMAC_KEY_BYTES.get(alg, 0)
        if len(secret) < minimum:
            notes.append(
                f"secret {secret_fp} is {len(secret)} bytes, below the {minimum} "
                f"RFC 7518 recommends for {alg}"
            )
        _validate_hmac_signature(token, secret, alg, kid, secret_fp)
        validate_claims(peeked.claims, audience, issuer, _now(now), leeway)
    except Finding as f:
        return make_verdict(f.reason, f.detail, peeked.header, peeked.claims, secret_fp, notes)
    return make_verdict("valid", "valid", peeked.header, peeked.claims, secret_fp, notes)


def _validate_hmac_signature(token: str, secret: bytes, alg: str, kid: str | None, fp: str) -> None:
    try:
        # A short secret is said once, as a note; check_hmac_signature never warns.
        check_hmac_signature(token, secret, alg)
    except jwt.InvalidSignatureError:
        raise Finding("bad_signature", _hmac_mismatch(kid, fp)) from None
    except jwt.InvalidKeyError as e:
        # PyJWT refuses a PEM or certificate as an HMAC secret (alg confusion).
        raise VerifyError(f"secret {fp} cannot be an HMAC secret: {e}") from None
    except jwt.InvalidTokenError as e:
        raise Finding("malformed", f"not a valid JWS: {e}") from None


def _hmac_mismatch(kid: str | None, secret_fp: str) -> str:
    if kid is None:
        return (
            f"signature does not match secret {secret_fp} "
            "(the token has no kid to say which secret signed it)"
        )
    if kid == secret_fp:
        return (
            f"signature does not match, though the token's kid names this secret "
            f"({secret_fp}): the token was altered after signing"
        )
    if kid.startswith("sha256:"):
        return (
            f"signed with kid {printable(kid)} but checked with secret {secret_fp}: "
            "the secrets differ (drift)"
        )
    return f"signed with kid {printable(kid)} but checked with secret {secret_fp}: no match"


# -- JWKS --------------------------------------------------------------------------


def verify_jwks(
    token: str,
    jwks: JwksSource | Jwks | Mapping[str, Any],
    *,
    algorithms: Iterable[str] = JWKS_ALGORITHMS,
    audience: str | Iterable[str] | None = None,
    issuer: str | None = None,
    now: float | None = None,
    leeway: float = 0.0,
) -> Verdict:
    """Check ``token`` against the public keys of a JWK Set.

    The key is the one whose ``kid`` the token names; a token without ``kid`` is
    tried against every key for its ``alg``. Raises ``JwksUnavailable`` if a
    ``JwksSource`` cannot be loaded.
    """
    keys = jwks.load() if isinstance(jwks, JwksSource) else jwks
    keys = keys if isinstance(keys, Jwks) else Jwks.parse(keys)
    peeked = peek(token)
    if peeked is None:
        return malformed()
    alg, kid = header_alg(peeked.header), peeked.kid
    used: str | None = None
    try:
        allowed = tuple(a for a in algorithms if a in JWKS_ALGORITHMS)
        validate_algorithm(alg, allowed, hmac=False)
        used = _validate_jwks_signature(token, keys, alg, kid)
        validate_claims(peeked.claims, audience, issuer, _now(now), leeway)
    except Finding as f:
        return make_verdict(f.reason, f.detail, peeked.header, peeked.claims, used)
    return make_verdict("valid", "valid", peeked.header, peeked.claims, used)


def _validate_jwks_signature(token: str, jwks: Jwks, alg: str, kid: str | None) -> str:
    """The matching key's label (``kid X``), or a finding saying why no key matched."""
    if kid is not None:
        candidates = [k for k in jwks.keys if k.get("kid") == kid]
        if not candidates:
            known = ", ".join(printable(k) for k in jwks.kids()) or "none"
            raise Finding(
                "unknown_kid", f"kid {printable(kid)} is not in {jwks.origin} (its kids: {known})"
            )
    else:
        candidates = [k for k in jwks.keys if k.get("alg", alg) == alg]
        if not candidates:
            raise Finding("unknown_kid", f"the token has no kid and {jwks.origin} has no {alg} key")
    mismatches = []
    for data in candidates:
        label = f"kid {printable(str(data.get('kid', '?')))}"
        try:
            key = jwt.PyJWK(dict(data), algorithm=str(data.get("alg") or alg))
            jwt.decode_complete(token, key, algorithms=[alg], options=_SIGNATURE_ONLY)
        except jwt.InvalidSignatureError:
            continue
        except (jwt.InvalidAlgorithmError, jwt.PyJWKError, jwt.InvalidKeyError):
            key_alg = f" for {printable(str(data['alg']))}" if "alg" in data else ""
            mismatches.append(f"{label} is an {data.get('kty')} key{key_alg}")
            continue
        except jwt.InvalidTokenError as e:
            raise Finding("malformed", f"not a valid JWS: {e}") from None
        return label
    if mismatches and len(mismatches) == len(candidates):
        raise Finding("unsupported_algorithm", f"the token is {alg} but {'; '.join(mismatches)}")
    which = f"key kid {printable(kid)}" if kid is not None else f"any {alg} key"
    raise Finding("bad_signature", f"signature does not match {which} of {jwks.origin}")


def _now(now: float | None) -> float:
    return time.time() if now is None else now
