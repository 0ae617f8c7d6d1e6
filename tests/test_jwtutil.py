"""HMAC signing and checking without PyJWT's per-call warning (authgw.jwtutil)."""

from __future__ import annotations

import warnings

import jwt
import pytest

from authgw.jwtutil import HMAC_ALGORITHMS, MIN_HMAC_KEY_BYTES, check_hmac_signature, encode_hmac

LONG = b"k" * 64


@pytest.mark.parametrize("alg", HMAC_ALGORITHMS)
def test_encode_hmac_gives_pyjwts_token_byte_for_byte(alg: str) -> None:
    claims = {"sub": "x", "b": "ü", "a": 1}
    headers = {"kid": "k1", "typ": "JWT"}
    assert encode_hmac(claims, LONG, alg, headers) == jwt.encode(claims, LONG, alg, headers)


@pytest.mark.parametrize("alg", HMAC_ALGORITHMS)
def test_a_short_key_signs_and_checks_without_a_warning_or_a_filter(alg: str) -> None:
    short = b"k" * (MIN_HMAC_KEY_BYTES[alg] - 1)
    filters = list(warnings.filters)
    token = encode_hmac({"sub": "x"}, short, alg)  # filterwarnings=error: a warning fails
    check_hmac_signature(token, short, alg)
    assert warnings.filters == filters  # nothing process-wide was touched
    with pytest.warns(jwt.InsecureKeyLengthWarning):  # PyJWT's own still warns
        assert jwt.encode({"sub": "x"}, short, alg) == token


def test_check_hmac_signature_raises_as_pyjwt_does() -> None:
    token = encode_hmac({"sub": "x"}, LONG, "HS256")
    with pytest.raises(jwt.InvalidSignatureError):
        check_hmac_signature(token, b"o" * 64, "HS256")
    with pytest.raises(jwt.InvalidAlgorithmError):
        check_hmac_signature(token, LONG, "HS512")
    pem = b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    with pytest.raises(jwt.InvalidKeyError):  # a public key is never an HMAC secret
        check_hmac_signature(token, pem, "HS256")


def test_encode_hmac_refuses_a_non_string_issuer_as_jwt_encode_does() -> None:
    with pytest.raises(TypeError, match="iss"):
        encode_hmac({"iss": 5}, LONG, "HS256")
