"""The emulator's server: its keys and discovery documents, its log, and serve()."""

from __future__ import annotations

import hashlib
import json
import logging

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from authgw.emulator import StsEmulator
from tests.emulator_helpers import STS_ENV_NAMES, http, make_client, serving

pytestmark = pytest.mark.usefixtures("bare_aws_env")


# -- keys and discovery --------------------------------------------------------------------


def test_each_algorithm_has_its_own_key_and_kid_from_public_key(emulator: StsEmulator) -> None:
    client = make_client(emulator)
    kids = {}
    for algorithm in ("RS256", "ES384"):
        token = client.get_web_identity_token(Audience=["x"], SigningAlgorithm=algorithm)[
            "WebIdentityToken"
        ]
        kids[algorithm] = jwt.get_unverified_header(token)["kid"]

    status, body = http("GET", emulator.jwks_url)

    assert status == 200
    keys = {key["kid"]: key for key in json.loads(body)["keys"]}
    assert set(keys) == set(kids.values()) and len(keys) == 2
    for algorithm, kid in kids.items():
        jwk = keys[kid]
        assert jwk["alg"] == algorithm and jwk["use"] == "sig"
        der = jwt.PyJWK(jwk).key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert kid == hashlib.sha256(der).hexdigest()[:16]


def test_discovery_document_points_at_the_jwks(emulator: StsEmulator) -> None:
    status, body = http("GET", emulator.url + "/.well-known/openid-configuration")

    assert status == 200
    document = json.loads(body)
    assert document["issuer"] == emulator.issuer == emulator.url
    assert document["jwks_uri"] == emulator.jwks_url
    assert document["id_token_signing_alg_values_supported"] == ["RS256", "ES384"]
    status, body = http("GET", document["jwks_uri"])
    assert status == 200
    assert {key["alg"] for key in json.loads(body)["keys"]} == {"RS256", "ES384"}


# -- logging and serve() ----------------------------------------------------------------------


def test_calls_are_logged_without_the_token(
    emulator: StsEmulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="authgw.emulator")

    token = make_client(emulator).get_web_identity_token(
        Audience=["a", "b"], SigningAlgorithm="ES384"
    )["WebIdentityToken"]

    records = [r.getMessage() for r in caplog.records if r.name.startswith("authgw.emulator")]
    assert any(
        "GetWebIdentityToken" in m and "audiences=2" in m and "ES384" in m and "result=OK" in m
        for m in records
    )
    assert all(token not in m and token.split(".")[2] not in m for m in records)
    assert capfd.readouterr().err == ""  # http.server's access log is silenced


def test_serve_prints_the_environment_and_stops_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    with serving("-c", "from authgw.emulator import serve; serve(port=0)") as (settings, lines):
        assert {name for name in settings if name.startswith("AWS_")} == STS_ENV_NAMES
        assert settings["AWS_REGION"] == settings["AWS_DEFAULT_REGION"] == "us-east-1"
        url = settings["AWS_ENDPOINT_URL_STS"]
        assert url.startswith("http://127.0.0.1:") and url in lines[0]
        status, body = http("GET", url + "/.well-known/openid-configuration")
        assert status == 200 and json.loads(body)["issuer"] == url
        # Plain boto3 with exactly the printed variables (bare_aws_env cleared the rest).
        for name in STS_ENV_NAMES:
            monkeypatch.setenv(name, settings[name])
        import boto3

        token = boto3.client("sts").get_web_identity_token(
            Audience=["https://printed.example"], SigningAlgorithm="RS256"
        )["WebIdentityToken"]
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
