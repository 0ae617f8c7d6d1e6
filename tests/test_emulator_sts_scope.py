"""GetWebIdentityToken's Scope and SubjectMode, driven by boto3 over loopback HTTP: the
claims they give, the rules AWS documents for them, and what the call record keeps."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from authgw.emulator import StsEmulator
from tests.emulator_helpers import error_of, http, make_client, verify_token

pytestmark = pytest.mark.usefixtures("bare_aws_env")

STS_CLAIM = "https://sts.amazonaws.com/"
ROLE = "arn:aws:iam::123456789012:role/emulated-AKIDEXAMPLE"
ORIGIN = {"SubjectMode": "OriginIdentity"}
# Lets requests that botocore would refuse client-side reach the emulator's own validation.
NO_CLIENT_VALIDATION = Config(
    parameter_validation=False, retries={"total_max_attempts": 1, "mode": "standard"}
)
# Every character the model's Scope pattern allows: printable ASCII but space, " , and \.
EVERY_SCOPE_CHAR = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",\\')


def claims_of(emulator: StsEmulator, audience: str = "a", **params: Any) -> dict[str, Any]:
    response = make_client(emulator, NO_CLIENT_VALIDATION).get_web_identity_token(
        Audience=[audience], SigningAlgorithm="RS256", **params
    )
    return verify_token(response["WebIdentityToken"], emulator, audience)


def refusal(emulator: StsEmulator, **params: Any) -> tuple[str, int, str]:
    params.setdefault("Audience", ["a"])
    with pytest.raises(ClientError) as excinfo:
        make_client(emulator, NO_CLIENT_VALIDATION).get_web_identity_token(
            SigningAlgorithm="RS256", **params
        )
    return (*error_of(excinfo), excinfo.value.response["Error"]["Message"])


# -- claims ---------------------------------------------------------------------------------


def test_origin_identity_with_scope_puts_both_in_the_token(emulator: StsEmulator) -> None:
    claims = claims_of(emulator, "https://api.example", Scope="read:orders write", **ORIGIN)

    assert claims["sub"] == "emulated-user@example.com"
    assert claims["subject_mode"] == "OriginIdentity"
    assert claims["scope"] == "read:orders write"
    assert claims[STS_CLAIM]["principal_id"] == ROLE  # the caller, whichever the subject
    [call] = emulator.calls
    assert (call.scope, call.subject_mode, call.result) == (
        "read:orders write",
        "OriginIdentity",
        "OK",
    )


def test_origin_identity_without_scope_has_no_scope_claim(emulator: StsEmulator) -> None:
    claims = claims_of(emulator, **ORIGIN)

    assert claims["sub"] == "emulated-user@example.com"
    assert claims["subject_mode"] == "OriginIdentity" and "scope" not in claims


@pytest.mark.parametrize("params", [{}, {"SubjectMode": "AWSIdentity"}])
def test_aws_identity_is_the_default_and_adds_no_claims(
    emulator: StsEmulator, params: dict[str, str]
) -> None:
    claims = claims_of(emulator, **params)

    assert claims["sub"] == ROLE
    assert "subject_mode" not in claims and "scope" not in claims
    [call] = emulator.calls
    assert (call.scope, call.subject_mode) == (None, params.get("SubjectMode"))


def test_the_origin_subject_is_an_emulator_setting() -> None:
    with StsEmulator(origin_subject="workload/batch-7") as emulator:
        assert claims_of(emulator, **ORIGIN)["sub"] == "workload/batch-7"


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param("x" * 256, id="256-chars"),
        pytest.param("read READ", id="case-sensitive"),
        pytest.param(EVERY_SCOPE_CHAR, id="every-allowed-char"),
    ],
)
def test_scopes_at_the_limits_are_copied_exactly(emulator: StsEmulator, scope: str) -> None:
    assert claims_of(emulator, Scope=scope, **ORIGIN)["scope"] == scope


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        pytest.param({"Scope": "read"}, "OriginIdentity", id="scope-without-subject-mode"),
        pytest.param(
            {"Scope": "read", "SubjectMode": "AWSIdentity"}, "OriginIdentity", id="scope-aws-id"
        ),
        pytest.param(
            {"Scope": "read", "Audience": ["a", "b"], **ORIGIN}, "one audience", id="two-audiences"
        ),
        pytest.param({"Scope": "read read", **ORIGIN}, "repeat", id="repeated-value"),
        pytest.param({"Scope": "", **ORIGIN}, "'scope'", id="empty"),
        pytest.param({"Scope": "x" * 257, **ORIGIN}, "'scope'", id="257-chars"),
        pytest.param({"Scope": " read", **ORIGIN}, "'scope'", id="leading-space"),
        pytest.param({"Scope": "read ", **ORIGIN}, "'scope'", id="trailing-space"),
        pytest.param({"Scope": "read  write", **ORIGIN}, "'scope'", id="double-space"),
        pytest.param({"Scope": 'say"hi"', **ORIGIN}, "'scope'", id="quote"),
        pytest.param({"Scope": "a,b", **ORIGIN}, "'scope'", id="comma"),
        pytest.param({"Scope": "a\\b", **ORIGIN}, "'scope'", id="backslash"),
        pytest.param({"Scope": "caf\u00e9", **ORIGIN}, "'scope'", id="non-ascii"),
        pytest.param({"SubjectMode": "Origin"}, "'subjectMode'", id="unknown-subject-mode"),
        pytest.param({"SubjectMode": "originidentity"}, "'subjectMode'", id="subject-mode-case"),
    ],
)
def test_invalid_scope_or_subject_mode_is_a_validation_error(
    emulator: StsEmulator, params: dict[str, Any], mentions: str
) -> None:
    code, status, message = refusal(emulator, **params)

    assert (code, status) == ("ValidationError", 400)
    assert mentions in message
    [call] = emulator.calls
    assert call.result == "ValidationError"


def test_model_constraints_are_listed_with_the_others(emulator: StsEmulator) -> None:
    code, _, message = refusal(emulator, Scope="a b a" + " " * 2, SubjectMode="Nope", Audience=[])

    assert code == "ValidationError"
    assert message.startswith("3 validation errors detected: ")
    assert "'audience'" in message and "'scope'" in message and "'subjectMode'" in message


def test_without_an_origin_subject_origin_identity_is_a_validation_error() -> None:
    with StsEmulator(origin_subject=None) as emulator:
        code, status, message = refusal(emulator, **ORIGIN)
        assert claims_of(emulator)["sub"] == ROLE  # AWSIdentity still works

    assert (code, status) == ("ValidationError", 400)
    assert "aws:OriginIdentity/Subject" in message


@pytest.mark.parametrize(
    ("subject", "code"),
    [
        ("  ", "ValidationError"),
        ("arn:aws:iam::123456789012:user/x", "AccessDenied"),
        ("ARN:whatever", "AccessDenied"),
        (" padded", "AccessDenied"),
        ("padded ", "AccessDenied"),
        ("tab\tinside", "AccessDenied"),
        ("zero\u200bwidth", "AccessDenied"),
        ("line\u2028break", "AccessDenied"),
    ],
)
def test_origin_subjects_aws_refuses(subject: str, code: str) -> None:
    with StsEmulator(origin_subject=subject) as emulator:
        assert refusal(emulator, **ORIGIN)[:2] == (code, 400 if code == "ValidationError" else 403)


def test_an_origin_subject_with_inner_spaces_is_accepted() -> None:
    with StsEmulator(origin_subject="Jane Doe") as emulator:
        assert claims_of(emulator, **ORIGIN)["sub"] == "Jane Doe"


def test_parameters_the_action_does_not_know_are_ignored(emulator: StsEmulator) -> None:
    form = (
        b"Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=a"
        b"&SigningAlgorithm=RS256&NoSuchParameter=1&scope=lowercase-is-another-name"
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDRAW/20260101/us-east-1/sts/"
        "aws4_request, SignedHeaders=host, Signature=x",
    }

    status, body = http("POST", emulator.url + "/", form, headers)

    assert status == 200
    token = body.split(b"<WebIdentityToken>")[1].split(b"</WebIdentityToken>")[0].decode()
    assert "scope" not in jwt.decode(token, options={"verify_signature": False})
    [call] = emulator.calls
    assert (call.scope, call.result) == (None, "OK")
