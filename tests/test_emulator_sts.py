"""The emulator's STS protocol, driven by a real boto3 client over loopback HTTP:
the tokens it issues, how it validates requests, whom it lets in."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import jwt
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from authgw.emulator import StsEmulator
from tests.emulator_helpers import FIXED_NOW, NO_RETRY, error_of, http, make_client, verify_token

pytestmark = pytest.mark.usefixtures("bare_aws_env")

STS_CLAIM = "https://sts.amazonaws.com/"
# Lets requests that botocore would refuse client-side reach the emulator's own validation.
NO_CLIENT_VALIDATION = Config(
    parameter_validation=False, retries={"total_max_attempts": 1, "mode": "standard"}
)


def verify(token: str, sts: StsEmulator, audience: str, check_times: bool = True) -> dict[str, Any]:
    """Verify like a relying party: keys from the JWKS, then signature, aud and iss."""
    return verify_token(
        token, sts, audience, require=("exp", "iat", "nbf", "jti", "sub"), check_times=check_times
    )


# -- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES384"])
def test_token_for_one_audience_verifies_against_jwks(
    emulator: StsEmulator, algorithm: str
) -> None:
    client = make_client(emulator, region="eu-west-2")
    before = int(time.time())

    response = client.get_web_identity_token(
        Audience=["https://api.example.com"],
        SigningAlgorithm=algorithm,
        DurationSeconds=900,
        Tags=[{"Key": "team", "Value": "payments"}, {"Key": "env", "Value": "dev"}],
    )

    token = response["WebIdentityToken"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    assert header["typ"] == "JWT"
    claims = verify(token, emulator, "https://api.example.com")
    assert claims["aud"] == "https://api.example.com"  # one audience: a string
    assert claims["iss"] == emulator.url
    assert claims["sub"] == "arn:aws:iam::123456789012:role/emulated-AKIDEXAMPLE"
    assert before <= claims["iat"] <= time.time()
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 900
    assert claims[STS_CLAIM] == {
        "aws_account": "123456789012",
        "source_region": "eu-west-2",
        "principal_id": claims["sub"],
        "request_tags": {"team": "payments", "env": "dev"},
    }
    assert response["Expiration"] == datetime.fromtimestamp(claims["exp"], tz=timezone.utc)


def test_token_for_several_audiences_carries_the_list(emulator: StsEmulator) -> None:
    audiences = ["https://a.example", "https://b.example", "urn:c"]

    response = make_client(emulator).get_web_identity_token(
        Audience=audiences, SigningAlgorithm="ES384"
    )

    token = response["WebIdentityToken"]
    for audience in audiences:
        assert verify(token, emulator, audience)["aud"] == audiences
    claims = verify(token, emulator, "urn:c")
    assert claims["exp"] - claims["iat"] == 300  # the default duration
    assert claims[STS_CLAIM]["request_tags"] == {}
    with pytest.raises(jwt.InvalidAudienceError):
        verify(token, emulator, "https://other.example")


def test_expiration_equals_exp_on_the_injected_clock(fixed_clock_emulator: StsEmulator) -> None:
    sts = fixed_clock_emulator

    response = make_client(sts).get_web_identity_token(
        Audience=["aud"], SigningAlgorithm="RS256", DurationSeconds=3600
    )

    now = int(FIXED_NOW)
    assert response["Expiration"] == datetime(2023, 11, 14, 23, 13, 20, tzinfo=timezone.utc)
    claims = verify(
        response["WebIdentityToken"],
        sts,
        "aud",
        check_times=False,  # the fixed clock is in the past
    )
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (now, now, now + 3600)
    assert response["Expiration"].timestamp() == claims["exp"]
    assert claims["sub"] == "arn:aws:iam::210987654321:role/emulated-AKIDEXAMPLE"
    assert claims[STS_CLAIM]["aws_account"] == "210987654321"


def test_tokens_are_unique(emulator: StsEmulator) -> None:
    client = make_client(emulator)
    tokens = [
        client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")["WebIdentityToken"]
        for _ in range(2)
    ]
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 2


# -- validation -----------------------------------------------------------------------

TAG = {"Key": "k", "Value": "v"}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"Audience": [], "SigningAlgorithm": "RS256"}, id="no-audience"),
        pytest.param({"SigningAlgorithm": "RS256"}, id="audience-missing"),
        pytest.param(
            {"Audience": [f"a{i}" for i in range(11)], "SigningAlgorithm": "RS256"},
            id="11-audiences",
        ),
        pytest.param({"Audience": [""], "SigningAlgorithm": "RS256"}, id="empty-audience"),
        pytest.param({"Audience": ["a"], "SigningAlgorithm": "HS256"}, id="bad-algorithm"),
        pytest.param({"Audience": ["a"]}, id="algorithm-missing"),
        pytest.param(
            {"Audience": ["a"], "SigningAlgorithm": "RS256", "DurationSeconds": 59}, id="59s"
        ),
        pytest.param(
            {"Audience": ["a"], "SigningAlgorithm": "RS256", "DurationSeconds": 3601}, id="3601s"
        ),
        pytest.param(
            {
                "Audience": ["a"],
                "SigningAlgorithm": "RS256",
                "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)],
            },
            id="51-tags",
        ),
        pytest.param(
            {"Audience": ["a"], "SigningAlgorithm": "RS256", "Tags": [{"Key": "", "Value": "v"}]},
            id="empty-tag-key",
        ),
        pytest.param(
            {"Audience": ["a"], "SigningAlgorithm": "RS256", "Tags": [{"Key": "a*b", "Value": ""}]},
            id="tag-key-pattern",
        ),
    ],
)
def test_invalid_requests_are_validation_errors(
    emulator: StsEmulator, params: dict[str, Any]
) -> None:
    client = make_client(emulator, NO_CLIENT_VALIDATION)

    with pytest.raises(ClientError) as excinfo:
        client.get_web_identity_token(**params)

    assert error_of(excinfo) == ("ValidationError", 400)
    assert dict(excinfo.value.response["Error"]).get("Type") == "Sender"
    assert "validation error" in excinfo.value.response["Error"]["Message"]
    assert [call.result for call in emulator.calls] == ["ValidationError"]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"Audience": [f"a{i}" for i in range(10)]}, id="10-audiences"),
        pytest.param({"Audience": ["a"], "DurationSeconds": 60}, id="60s"),
        pytest.param({"Audience": ["a"], "DurationSeconds": 3600}, id="3600s"),
        pytest.param(
            {"Audience": ["a"], "Tags": [{"Key": f"k {i}", "Value": "v@x"} for i in range(50)]},
            id="50-tags",
        ),
    ],
)
def test_requests_at_the_limits_are_accepted(emulator: StsEmulator, params: dict[str, Any]) -> None:
    client = make_client(emulator, NO_CLIENT_VALIDATION)

    response = client.get_web_identity_token(SigningAlgorithm="RS256", **params)

    claims = jwt.decode(response["WebIdentityToken"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == params.get("DurationSeconds", 300)
    assert len(claims[STS_CLAIM]["request_tags"]) == len(params.get("Tags", []))


# -- authentication and actions ----------------------------------------------------------

FORM = b"Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=a&SigningAlgorithm=RS256"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def test_unsigned_boto3_request_is_rejected(emulator: StsEmulator) -> None:
    client = make_client(
        emulator, Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1})
    )

    with pytest.raises(ClientError) as excinfo:
        client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")

    assert error_of(excinfo) == ("MissingAuthenticationToken", 403)


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "MissingAuthenticationToken"),
        ("Bearer abc", "IncompleteSignature"),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", "IncompleteSignature"),
    ],
)
def test_request_without_sigv4_is_rejected(
    emulator: StsEmulator, authorization: str | None, code: str
) -> None:
    headers = dict(FORM_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization

    status, body = http("POST", emulator.url + "/", FORM, headers)

    assert status == 403
    assert f"<Code>{code}</Code>".encode() in body
    assert b"<WebIdentityToken>" not in body


def test_any_sigv4_shaped_header_is_accepted_without_verifying_it(emulator: StsEmulator) -> None:
    headers = {
        **FORM_HEADERS,
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDRAW/20260101/ap-south-1/sts/"
        "aws4_request, SignedHeaders=host, Signature=not-a-real-signature",
    }

    status, body = http("POST", emulator.url + "/", FORM, headers)

    assert status == 200
    assert b"<GetWebIdentityTokenResponse" in body and b"<Expiration>" in body
    [call] = emulator.calls
    assert (call.access_key_id, call.region, call.result) == ("AKIDRAW", "ap-south-1", "OK")


def test_unknown_action_is_invalid_action(emulator: StsEmulator) -> None:
    with pytest.raises(ClientError) as excinfo:
        make_client(emulator, NO_RETRY).get_caller_identity()

    assert error_of(excinfo) == ("InvalidAction", 400)
    assert emulator.call_count == 0
