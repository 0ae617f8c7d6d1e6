"""Token verification: HMAC and JWKS verdicts and JWKS sources.

Secrets and tokens never reach a failure message: ``no_leak`` checks a text first
and fails naming fingerprints only, and the other assertions run on texts it passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from authgw.emulator import StsEmulator
from authgw.tokens import fingerprint
from authgw.verify import (
    Jwks,
    JwksSource,
    JwksUnavailable,
    Verdict,
    VerifyError,
    verify_hmac,
    verify_jwks,
)

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
SECRET = b"verify-test-secret-" + b"a" * 45  # 64 bytes: no InsecureKeyLengthWarning
OTHER_SECRET = b"verify-test-secret-" + b"b" * 45
# Assertions compare these, never a call on a secret: pytest shows a call's arguments.
SECRET_FP = fingerprint(SECRET)
OTHER_FP = fingerprint(OTHER_SECRET)


def no_leak(text: str, *secrets: str | bytes) -> None:
    """Fail, naming fingerprints only, if any of ``secrets`` is in ``text``."""
    for secret in secrets:
        needle = secret.decode() if isinstance(secret, bytes) else secret
        if needle in text:
            pytest.fail(f"secret or token {fingerprint(needle)} appears in the output", False)


def verdict_text(verdict: Verdict) -> str:
    return " ".join([repr(verdict), verdict.detail, *verdict.notes])


def hs_token(
    secret: bytes = SECRET, alg: str = "HS256", kid: str | None = "fp", **claims: Any
) -> str:
    headers = {"kid": fingerprint(secret) if kid == "fp" else kid} if kid else None
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], hs256_key: bytes | None) -> str:
    """A JWS made by hand: HS256 with keys PyJWT refuses (PEM public keys), or a junk signature."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if hs256_key is None:
        return signing_input + "." + b64(b"junk")
    mac = hmac.new(hs256_key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


# -- HMAC ----------------------------------------------------------------------------


def test_hmac_valid_with_audience_and_issuer() -> None:
    token = hs_token(aud="https://api.example", iss="authgw", exp=int(NOW) + 300)
    verdict = verify_hmac(token, SECRET, audience="https://api.example", issuer="authgw", now=NOW)
    no_leak(verdict_text(verdict), SECRET, token)
    assert verdict.valid and verdict.reason == "valid"
    assert verdict.kid == SECRET_FP == verdict.checked_with
    assert verdict.alg == "HS256"
    assert verdict.claims["aud"] == "https://api.example"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_hmac_accepts_each_hs_algorithm(alg: str) -> None:
    verdict = verify_hmac(hs_token(alg=alg), SECRET, now=NOW)
    assert verdict.valid, verdict.detail


def test_hmac_expired_says_since_when() -> None:
    verdict = verify_hmac(hs_token(exp=int(NOW) - 180), SECRET, now=NOW)
    assert verdict.reason == "expired" and not verdict.valid
    assert verdict.detail == "expired 3 min ago (at 2027-01-15 07:57:00 UTC)"


def test_hmac_leeway_forgives_a_little_clock_skew() -> None:
    token = hs_token(exp=int(NOW) - 5, nbf=int(NOW) + 5)
    strict = verify_hmac(token, SECRET, now=NOW)
    lenient = verify_hmac(token, SECRET, now=NOW, leeway=10)
    assert strict.reason == "expired"
    assert lenient.valid, lenient.detail


@pytest.mark.parametrize(
    ("claim", "says"), [("nbf", "not valid before"), ("iat", "issued in the future")]
)
def test_hmac_not_yet_valid(claim: str, says: str) -> None:
    verdict = verify_hmac(hs_token(**{claim: int(NOW) + 600}), SECRET, now=NOW)
    assert verdict.reason == "not_yet_valid"
    assert says in verdict.detail
    assert "2027-01-15 08:10:00 UTC (in 10 min" in verdict.detail


def test_hmac_wrong_audience_names_both() -> None:
    token = hs_token(aud="https://a.example")
    verdict = verify_hmac(token, SECRET, audience="https://b.example", now=NOW)
    assert verdict.reason == "wrong_audience"
    assert verdict.detail == "audience is https://a.example, expected https://b.example"
    missing = verify_hmac(hs_token(), SECRET, audience="https://b.example", now=NOW)
    assert missing.reason == "wrong_audience"
    assert missing.detail == "the token has no aud claim, expected https://b.example"
    several = hs_token(aud=["https://a.example", "https://b.example"])
    verdict = verify_hmac(several, SECRET, audience="https://b.example", now=NOW)
    assert verdict.valid, verdict.detail


def test_hmac_audience_not_checked_unless_asked() -> None:
    verdict = verify_hmac(hs_token(aud="https://a.example"), SECRET, now=NOW)
    assert verdict.valid, verdict.detail


def test_hmac_wrong_issuer() -> None:
    verdict = verify_hmac(hs_token(iss="someone-else"), SECRET, issuer="authgw", now=NOW)
    assert verdict.reason == "wrong_issuer"
    assert verdict.detail == "issuer is someone-else, expected authgw"
    missing = verify_hmac(hs_token(), SECRET, issuer="authgw", now=NOW)
    assert missing.detail == "the token has no iss claim, expected authgw"


def test_hmac_bad_signature_shows_the_kid_beside_the_checked_secrets_fingerprint() -> None:
    token = hs_token(OTHER_SECRET, stackmon="dummy")  # signed with the drifted secret
    verdict = verify_hmac(token, SECRET, now=NOW)
    no_leak(verdict_text(verdict), SECRET, OTHER_SECRET, token)
    assert verdict.reason == "bad_signature"
    assert verdict.kid == OTHER_FP
    assert verdict.checked_with == SECRET_FP
    assert verdict.detail == (
        f"signed with kid {OTHER_FP} but checked with secret {SECRET_FP}: "
        "the secrets differ (drift)"
    )


@pytest.mark.parametrize(
    ("kid", "says"),
    [
        (None, "the token has no kid"),
        ("reporter-1", "signed with kid reporter-1 but checked with secret"),
    ],
)
def test_hmac_bad_signature_without_a_fingerprint_kid(kid: str | None, says: str) -> None:
    verdict = verify_hmac(hs_token(OTHER_SECRET, kid=kid), SECRET, now=NOW)
    no_leak(verdict_text(verdict), SECRET, OTHER_SECRET)
    assert verdict.reason == "bad_signature"
    assert says in verdict.detail and SECRET_FP in verdict.detail


def test_hmac_altered_token_with_the_right_kid() -> None:
    header, _, signature = hs_token(sub="alice").split(".")
    forged = jwt.encode({"sub": "mallory"}, OTHER_SECRET, algorithm="HS256").split(".")[1]
    verdict = verify_hmac(f"{header}.{forged}.{signature}", SECRET, now=NOW)
    assert verdict.reason == "bad_signature"
    assert "altered" in verdict.detail


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_hmac_refuses_public_key_algorithms_and_none() -> None:
    rs = jwt.encode({"sub": "x"}, rsa_key(), algorithm="RS256")
    verdict = verify_hmac(rs, SECRET, now=NOW)
    assert verdict.reason == "unsupported_algorithm"
    assert "RS256, a public-key algorithm" in verdict.detail
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none")
    verdict = verify_hmac(unsigned, SECRET, now=NOW)
    assert verdict.reason == "unsupported_algorithm" and "alg none" in verdict.detail
    narrowed = verify_hmac(hs_token(alg="HS512"), SECRET, algorithms=["HS256"], now=NOW)
    assert narrowed.reason == "unsupported_algorithm"


def test_hmac_refuses_a_public_key_pem_as_secret() -> None:
    pem = (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = hand_made({"alg": "HS256", "typ": "JWT"}, {"sub": "x"}, pem)
    with pytest.raises(VerifyError, match="cannot be an HMAC secret"):
        verify_hmac(token, pem, now=NOW)


def test_hmac_malformed_and_invalid_claims() -> None:
    for text in ("not-a-jwt", "a.b.c"):
        verdict = verify_hmac(text, SECRET)
        assert verdict.reason == "malformed"
    verdict = verify_hmac(hs_token(exp="tomorrow"), SECRET, now=NOW)
    assert verdict.reason == "invalid_claim"
    assert verdict.detail == 'exp is "tomorrow", not a number'


def test_hmac_short_secret_is_a_note_not_a_warning() -> None:
    short = b"short-secret"
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        token = jwt.encode({"sub": "x"}, short, algorithm="HS256")
    verdict = verify_hmac(token, short, now=NOW)  # filterwarnings=error: a warning would fail
    no_leak(verdict_text(verdict), short)
    assert verdict.valid
    short_fp = fingerprint(short)
    assert verdict.notes == (
        f"secret {short_fp} is 12 bytes, below the 32 RFC 7518 recommends for HS256",
    )


def test_hmac_empty_secret_is_unusable() -> None:
    with pytest.raises(VerifyError, match="empty"):
        verify_hmac(hs_token(), b"")


# -- JWKS ----------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("isolated_aws_env")


def sts_token(sts: StsEmulator, algorithm: str, audience: str = "https://api.example") -> str:
    client = boto3.session.Session().client(
        "sts",
        region_name="us-east-1",
        endpoint_url=sts.url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy",
    )
    response = client.get_web_identity_token(Audience=[audience], SigningAlgorithm=algorithm)
    token: str = response["WebIdentityToken"]
    return token


@pytest.mark.parametrize("algorithm", ["RS256", "ES384"])
@pytest.mark.parametrize("where", ["jwks_url", "issuer"])
def test_jwks_valid_from_the_emulator(sts: StsEmulator, algorithm: str, where: str) -> None:
    token = sts_token(sts, algorithm)
    source = JwksSource(getattr(sts, where), timeout=5)
    verdict = verify_jwks(token, source, audience="https://api.example", issuer=sts.issuer)
    no_leak(verdict_text(verdict), token)
    assert verdict.valid, verdict.detail
    assert verdict.alg == algorithm
    assert verdict.checked_with == f"kid {verdict.kid}"
    assert source.load().origin == sts.jwks_url


def test_jwks_from_a_file(sts: StsEmulator, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(sts.jwks()))
    for algorithm in ("RS256", "ES384"):
        verdict = verify_jwks(sts_token(sts, algorithm), JwksSource(str(path)))
        assert verdict.valid, verdict.detail
    assert JwksSource(str(path)).load().origin == str(path)


def test_jwks_wrong_audience_and_issuer(sts: StsEmulator) -> None:
    token = sts_token(sts, "RS256", audience="https://a.example")
    jwks = Jwks.parse(sts.jwks())
    audience = verify_jwks(token, jwks, audience="https://b.example")
    issuer = verify_jwks(token, jwks, issuer="https://elsewhere")
    assert audience.reason == "wrong_audience"
    assert issuer.reason == "wrong_issuer"


def test_jwks_expired_says_since_when(sts: StsEmulator) -> None:
    token = sts_token(sts, "ES384")
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    verdict = verify_jwks(token, sts.jwks(), now=exp + 7200)
    assert verdict.reason == "expired"
    assert verdict.detail.startswith("expired 2 h ago (at ")


def test_jwks_unknown_kid_lists_the_known_ones(sts: StsEmulator) -> None:
    token = jwt.encode({"sub": "x"}, rsa_key(), algorithm="RS256", headers={"kid": "rotated-away"})
    verdict = verify_jwks(token, sts.jwks())
    assert verdict.reason == "unknown_kid"
    assert "kid rotated-away is not in the JWKS" in verdict.detail
    for kid in Jwks.parse(sts.jwks()).kids():
        assert kid in verdict.detail


def test_jwks_bad_signature(sts: StsEmulator) -> None:
    real = sts_token(sts, "RS256")
    kid = jwt.get_unverified_header(real)["kid"]
    forged = jwt.encode({"sub": "x"}, rsa_key(), algorithm="RS256", headers={"kid": kid})
    verdict = verify_jwks(forged, sts.jwks())
    assert verdict.reason == "bad_signature"
    assert verdict.detail == f"signature does not match key kid {kid} of the JWKS"
    no_kid = jwt.encode({"sub": "x"}, rsa_key(), algorithm="RS256")
    verdict = verify_jwks(no_kid, sts.jwks())
    assert verdict.reason == "bad_signature"


def test_jwks_without_kid_tries_each_key_for_the_alg(sts: StsEmulator) -> None:
    key = rsa_key()
    public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [*sts.jwks()["keys"], public]}
    verdict = verify_jwks(jwt.encode({"sub": "x"}, key, algorithm="RS256"), jwks)
    assert verdict.valid, verdict.detail


def test_jwks_refuses_alg_confusion(sts: StsEmulator) -> None:
    """An HS256 token 'signed' with the RSA public key never passes a JWKS check."""
    real = sts_token(sts, "RS256")
    kid = jwt.get_unverified_header(real)["kid"]
    jwk = next(k for k in sts.jwks()["keys"] if k["kid"] == kid)
    pem = jwt.PyJWK.from_dict(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = hand_made({"alg": "HS256", "kid": kid}, {"sub": "admin"}, pem)
    verdict = verify_jwks(forged, sts.jwks())
    assert verdict.reason == "unsupported_algorithm"
    assert "HS256, an HMAC algorithm" in verdict.detail
    # An ES384 token whose kid names the RS256 key: the key's own alg decides, not the token's.
    swapped = hand_made({"alg": "ES384", "kid": kid}, {"sub": "admin"}, None)
    mismatch = verify_jwks(swapped, sts.jwks())
    assert mismatch.reason == "unsupported_algorithm"
    assert mismatch.detail == f"the token is ES384 but kid {kid} is an RSA key for RS256"


def test_jwks_never_uses_symmetric_keys() -> None:
    oct_key = {"kty": "oct", "k": base64.urlsafe_b64encode(SECRET).decode(), "kid": "k"}
    with pytest.raises(JwksUnavailable, match="no public signing keys"):
        Jwks.parse({"keys": [oct_key]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_jwks_source_unusable(sts: StsEmulator, tmp_path: Path) -> None:
    with pytest.raises(JwksUnavailable, match="Connection refused|cannot fetch"):
        JwksSource(f"http://127.0.0.1:{free_port()}", timeout=2).load()
    with pytest.raises(JwksUnavailable, match="answered HTTP 404"):
        JwksSource(f"{sts.url}/missing.json").load()
    with pytest.raises(JwksUnavailable, match="cannot read"):
        JwksSource(str(tmp_path / "absent.json")).load()
    (tmp_path / "bad.json").write_text("<html>")
    with pytest.raises(JwksUnavailable, match="not JSON"):
        JwksSource(str(tmp_path / "bad.json")).load()
    (tmp_path / "empty.json").write_text('{"keys": []}')
    with pytest.raises(JwksUnavailable, match="no public signing keys"):
        JwksSource(str(tmp_path / "empty.json")).load()
    with pytest.raises(JwksUnavailable, match='no "keys" list'):
        Jwks.parse({"issuer": "x"})


def test_jwks_source_tries_the_issuer_form_first() -> None:
    assert JwksSource("https://iss.example").candidates() == [
        "https://iss.example/.well-known/jwks.json",
        "https://iss.example",
    ]
    assert JwksSource("https://iss.example/keys.json").candidates() == [
        "https://iss.example/keys.json"
    ]
    assert JwksSource("https://iss.example/.well-known/jwks").candidates() == [
        "https://iss.example/.well-known/jwks"
    ]
