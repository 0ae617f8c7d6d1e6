"""What signing and checking JWTs share: the algorithm families, the HMAC key lengths,
and HMAC signing and checking without a warning per call.

PyJWT warns (``InsecureKeyLengthWarning``) on every signature made or checked with a
short HMAC key, and offers no option to keep quiet short of refusing the key
(``enforce_minimum_key_length``). authgw says a short secret once per secret itself,
so its HMAC work goes through one ``PyJWS`` of its own whose HS* algorithms skip that
check: no process-wide warning filter is touched on the request path. The algorithms
sign exactly as PyJWT's do, so the tokens are byte for byte the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jwt import PyJWS
from jwt.algorithms import HMACAlgorithm

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# Public-key algorithms a JWKS may verify. HS* is never among them: a JWKS holds public
# keys, and an HMAC check with a public key as secret is the classic alg-confusion attack.
JWKS_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
# RFC 7518 3.2: an HMAC key at least as long as the hash output.
MIN_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class _HmacWithoutLengthWarning(HMACAlgorithm):
    """PyJWT's HMAC, minus its per-call key length warning (authgw warns once per secret)."""

    def check_key_length(self, key: bytes) -> str | None:
        return None


def _hmac_jws() -> PyJWS:
    jws = PyJWS(algorithms=[])
    for alg, hash_alg in zip(
        HMAC_ALGORITHMS,
        (HMACAlgorithm.SHA256, HMACAlgorithm.SHA384, HMACAlgorithm.SHA512),
        strict=True,
    ):
        jws.register_algorithm(alg, _HmacWithoutLengthWarning(hash_alg))
    return jws


_HMAC_JWS = _hmac_jws()


def encode_hmac(
    claims: Mapping[str, Any],
    secret: bytes,
    algorithm: str,
    headers: dict[str, Any] | None = None,
    json_encoder: type[json.JSONEncoder] | None = None,
) -> str:
    """The token ``jwt.encode(claims, secret, algorithm, headers, json_encoder)`` gives,
    without its ``InsecureKeyLengthWarning`` for a short ``secret``."""
    if "iss" in claims and not isinstance(claims["iss"], str):
        raise TypeError("Issuer (iss) must be a string.")  # as jwt.encode refuses it
    payload = json.dumps(claims, separators=(",", ":"), cls=json_encoder).encode("utf-8")
    return _HMAC_JWS.encode(payload, secret, algorithm, headers, json_encoder)


def check_hmac_signature(token: str, secret: bytes, algorithm: str) -> None:
    """Raise as ``jwt.decode_complete`` does (``InvalidSignatureError``, ``InvalidKeyError``
    for a PEM as secret, ``DecodeError``, ...) unless ``token`` is signed with ``secret``
    under ``algorithm``. Checks the signature only, never a claim."""
    _HMAC_JWS.decode_complete(token, secret, algorithms=[algorithm])
