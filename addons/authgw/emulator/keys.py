"""The emulator's signing keys and the documents that publish them (JWKS, OIDC discovery).

Keys are generated per process and never leave it; each key's ``kid`` is derived
from its public key. Any protocol the emulator speaks signs with these keys, so one
JWKS verifies every token it issues.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass(frozen=True)
class SigningKey:
    algorithm: str
    kid: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS of ``claims``, with this key's ``kid`` in its header."""
        return jwt.encode(
            dict(claims),
            self.private_key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, "typ": "JWT"},
        )


def make_key(algorithm: str) -> SigningKey:
    """A fresh key for ``algorithm`` (RS256: RSA-2048, else EC P-384); kid from its public key."""
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        private_key = ec.generate_private_key(ec.SECP384R1())
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = hashlib.sha256(der).hexdigest()[:16]
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return SigningKey(algorithm=algorithm, kid=kid, private_key=private_key, jwk=dict(jwk))


def jwks(keys: Iterable[SigningKey]) -> dict[str, Any]:
    """The JWK Set of ``keys``' public halves."""
    return {"keys": [dict(key.jwk) for key in keys]}


def openid_configuration(
    issuer: str,
    jwks_uri: str,
    algorithms: Iterable[str],
    claims: Iterable[str],
    *,
    token_endpoint: str,
    token_endpoint_auth_methods: Iterable[str],
) -> dict[str, Any]:
    """The OIDC discovery document of ``issuer``, pointing verifiers at its JWKS and
    clients at its token endpoint (client credentials only)."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "token_endpoint": token_endpoint,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": list(token_endpoint_auth_methods),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(algorithms),
        "claims_supported": list(claims),
    }
