from __future__ import annotations

import base64
import json

import jwt
import pytest

from authgw.tokens import Token, fingerprint, peek, token_from_jwt


def test_fingerprint_is_sha256_prefix_of_12_hex() -> None:
    # sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    assert fingerprint("abc") == "sha256:ba7816bf8f01"
    assert fingerprint(b"abc") == fingerprint("abc")


def test_token_repr_never_shows_the_value() -> None:
    token = Token(value="very-secret-token-value", source="static")
    assert "very-secret-token-value" not in repr(token)
    assert token.fingerprint == fingerprint("very-secret-token-value")


def test_peek_reads_header_and_claims_without_verifying() -> None:
    value = jwt.encode(
        {"exp": 2000, "iat": 1000, "sub": "x"},
        "k" * 32,
        algorithm="HS256",
        headers={"kid": "kid-1"},
    )
    peeked = peek(value)
    assert peeked is not None
    assert (peeked.kid, peeked.exp, peeked.iat) == ("kid-1", 2000.0, 1000.0)
    token = token_from_jwt(value, "static")
    assert (token.kid, token.expires_at, token.claim_names) == (
        "kid-1",
        2000.0,
        ("exp", "iat", "sub"),
    )
    assert token_from_jwt(value, "sts", expires_at=1500).expires_at == 1500


def _segment(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "value",
    [
        "opaque-token",
        "a.b",
        "a.b.c.d",
        f"{_segment([1])}.{_segment({})}.sig",
        f"{_segment({})}.!!!.sig",
        f"{_segment({'alg': 'HS256'})}.{_segment('str')}.sig",
    ],
)
def test_peek_rejects_what_is_not_a_jws(value: str) -> None:
    assert peek(value) is None
    token = token_from_jwt(value, "static")
    assert token.expires_at is None and token.kid is None


def test_non_numeric_exp_is_ignored() -> None:
    value = f"{_segment({'alg': 'none'})}.{_segment({'exp': 'tomorrow', 'iat': True})}.x"
    peeked = peek(value)
    assert peeked is not None and peeked.exp is None and peeked.iat is None
