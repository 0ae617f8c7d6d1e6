"""The local STS emulator, driven by a real boto3 client over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from authgw.sts_emulator import StsEmulator

STS_CLAIM = "https://sts.amazonaws.com/"
# botocore's `max_attempts` counts retries (1 = two attempts); `total_max_attempts` counts calls.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
# Lets requests that botocore would refuse client-side reach the emulator's own validation.
NO_CLIENT_VALIDATION = Config(
    parameter_validation=False, retries={"total_max_attempts": 1, "mode": "standard"}
)
FIXED_NOW = 1_700_000_000.75

Client = Any  # boto3's STS client; its stubs are optional


@pytest.fixture(autouse=True)
def isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the host's AWS config, profiles and endpoint overrides out of the tests."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[StsEmulator]:
    with StsEmulator() as sts:
        yield sts


@pytest.fixture
def emulator(shared_emulator: StsEmulator) -> Iterator[StsEmulator]:
    shared_emulator.reset()
    shared_emulator.clear_calls()
    yield shared_emulator
    shared_emulator.reset()


@pytest.fixture
def fixed_clock_emulator() -> Iterator[StsEmulator]:
    with StsEmulator(clock=lambda: FIXED_NOW, account="210987654321") as sts:
        yield sts


def make_client(
    sts: StsEmulator, config: Config | None = None, region: str = "us-east-1"
) -> Client:
    return boto3.session.Session().client(
        "sts",
        region_name=region,
        endpoint_url=sts.url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy",
        config=config,
    )


def verify(token: str, sts: StsEmulator, audience: str, check_times: bool = True) -> dict[str, Any]:
    """Verify like a relying party: keys from the JWKS, then signature, aud and iss."""
    signing_key = jwt.PyJWKClient(sts.jwks_url, timeout=5).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key,
        algorithms=["RS256", "ES384"],
        audience=audience,
        issuer=sts.issuer,
        options={
            "require": ["exp", "iat", "nbf", "jti", "sub"],
            "verify_exp": check_times,
            "verify_iat": check_times,
            "verify_nbf": check_times,
        },
    )
    return claims


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


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


# -- fault injection ---------------------------------------------------------------------

# The statuses STS uses, written out here rather than read from the module under test.
FAULTS = [
    ("SessionDurationEscalationException", 403),
    ("OutboundWebIdentityFederationDisabledException", 403),
    ("JWTPayloadSizeExceededException", 400),
    ("AccessDenied", 403),
    ("Throttling", 400),
    ("ValidationError", 400),
    ("InvalidClientTokenId", 403),
    ("ExpiredToken", 400),
    ("ServiceUnavailable", 503),
    ("InternalFailure", 500),
]
MODELLED = {
    "SessionDurationEscalationException",
    "OutboundWebIdentityFederationDisabledException",
    "JWTPayloadSizeExceededException",
}


@pytest.mark.parametrize(("code", "status"), FAULTS)
def test_injected_fault_reaches_boto3_with_its_code(
    emulator: StsEmulator, code: str, status: int
) -> None:
    client = make_client(emulator, NO_RETRY)
    emulator.fail_with(code, message="injected by the test")

    with pytest.raises(ClientError) as excinfo:
        client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")

    assert error_of(excinfo) == (code, status)
    assert excinfo.value.response["Error"]["Message"] == "injected by the test"
    expected_type = "Receiver" if status >= 500 else "Sender"
    assert dict(excinfo.value.response["Error"]).get("Type") == expected_type
    if code in MODELLED:
        assert isinstance(excinfo.value, getattr(client.exceptions, code))
    assert [call.result for call in emulator.calls] == [code]


def test_fault_for_n_calls_then_recovers(emulator: StsEmulator) -> None:
    client = make_client(emulator, NO_RETRY)
    emulator.fail_with("Throttling", times=2)
    results = []

    for _ in range(4):
        try:
            client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
            results.append("OK")
        except ClientError as e:
            results.append(e.response["Error"]["Code"])

    assert results == ["Throttling", "Throttling", "OK", "OK"]
    assert [call.result for call in emulator.calls] == results


def test_fault_without_times_persists_until_reset(emulator: StsEmulator) -> None:
    client = make_client(emulator, NO_RETRY)
    emulator.fail_with("AccessDenied")

    for _ in range(3):
        with pytest.raises(ClientError) as excinfo:
            client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
        assert error_of(excinfo) == ("AccessDenied", 403)
    emulator.reset()

    assert client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
    assert emulator.call_count == 4


@pytest.mark.parametrize(
    ("code", "times"), [("NoSuchCode", None), ("Throttling", 0), ("Throttling", -1)]
)
def test_fail_with_refuses_what_it_cannot_answer(
    emulator: StsEmulator, code: str, times: int | None
) -> None:
    with pytest.raises(ValueError):
        emulator.fail_with(code, times)


def test_latency_delays_the_answer_without_blocking_other_calls(emulator: StsEmulator) -> None:
    emulator.set_latency(1.0)
    durations: list[float] = []
    errors: list[BaseException] = []

    def call() -> None:
        client = make_client(emulator, NO_RETRY)
        started = time.monotonic()
        try:
            client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    # Both calls wait out their latency at the same time: one does not block the other.
    deadline = time.monotonic() + 5
    while emulator.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    both_waiting = emulator.in_flight == 2
    for thread in threads:
        thread.join(timeout=10)

    assert not errors
    assert both_waiting, "two delayed calls were answered one after the other"
    assert len(durations) == 2 and min(durations) >= 1.0
    emulator.reset()
    assert emulator.faults_state()["latency"] == 0


def test_stop_ends_a_latency_wait_promptly() -> None:
    sts = StsEmulator().start()
    sts.set_latency(30)
    client = make_client(sts, Config(retries={"total_max_attempts": 1}, read_timeout=10))
    outcome: list[str] = []

    def call() -> None:
        try:
            client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
            outcome.append("OK")
        except ClientError as e:
            outcome.append(e.response["Error"]["Code"])

    thread = threading.Thread(target=call)
    thread.start()
    wait_until(lambda: sts.in_flight == 1)
    started = time.monotonic()
    sts.stop()
    thread.join(timeout=5)

    assert time.monotonic() - started < 2
    assert not thread.is_alive()
    assert outcome == ["ServiceUnavailable"]
    assert sts.in_flight == 0


# -- call record -------------------------------------------------------------------------


def test_calls_are_recorded(fixed_clock_emulator: StsEmulator) -> None:
    client = make_client(fixed_clock_emulator, NO_RETRY, region="eu-central-1")
    client.get_web_identity_token(
        Audience=["a", "b"],
        SigningAlgorithm="ES384",
        DurationSeconds=120,
        Tags=[{"Key": "team", "Value": "payments"}],
    )
    fixed_clock_emulator.fail_with("Throttling", times=1)
    with pytest.raises(ClientError):
        client.get_web_identity_token(Audience=["c"], SigningAlgorithm="RS256")

    first, second = fixed_clock_emulator.calls

    assert fixed_clock_emulator.call_count == 2
    assert first.audiences == ("a", "b")
    assert (first.algorithm, first.duration, first.tags) == ("ES384", 120, {"team": "payments"})
    assert (first.timestamp, first.result) == (FIXED_NOW, "OK")
    assert (first.access_key_id, first.region) == ("AKIDEXAMPLE", "eu-central-1")
    assert (second.audiences, second.duration, second.result) == (("c",), 300, "Throttling")


# -- HTTP control endpoints ----------------------------------------------------------------


def post_json(url: str, payload: object) -> tuple[int, Any]:
    status, body = http(
        "POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    return status, json.loads(body)


def test_http_fault_endpoint_injects_and_clears(emulator: StsEmulator) -> None:
    client = make_client(emulator, NO_RETRY)
    faults = emulator.url + "/_emulator/faults"

    status, state = post_json(faults, {"code": "ExpiredToken", "times": 1})
    assert status == 200
    assert state["fault"] == {
        "code": "ExpiredToken",
        "remaining": 1,
        "message": state["fault"]["message"],
    }
    with pytest.raises(ClientError) as excinfo:
        client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
    assert error_of(excinfo) == ("ExpiredToken", 400)
    client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")

    post_json(faults, {"code": "InternalFailure"})
    status, body = http("DELETE", faults)
    assert status == 200 and json.loads(body) == {"fault": None, "latency": 0.0}
    client.get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")


def test_http_fault_endpoint_sets_latency(emulator: StsEmulator) -> None:
    status, state = post_json(emulator.url + "/_emulator/faults", {"latency": 0.3})
    assert (status, state["latency"]) == (200, 0.3)

    started = time.monotonic()
    make_client(emulator).get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")

    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    "payload",
    [{"code": "NoSuchCode"}, {"code": "Throttling", "times": 0}, {"latency": -1}, {"bogus": 1}, []],
)
def test_http_fault_endpoint_rejects_bad_settings(emulator: StsEmulator, payload: object) -> None:
    status, body = post_json(emulator.url + "/_emulator/faults", payload)

    assert status == 400 and "error" in body
    assert emulator.faults_state() == {"fault": None, "latency": 0.0}


def test_http_calls_endpoint_lists_calls(emulator: StsEmulator) -> None:
    make_client(emulator).get_web_identity_token(
        Audience=["a"], SigningAlgorithm="ES384", Tags=[{"Key": "k", "Value": "v"}]
    )

    status, body = http("GET", emulator.url + "/_emulator/calls")

    assert status == 200
    listing = json.loads(body)
    assert listing["call_count"] == 1
    [call] = listing["calls"]
    assert call["audiences"] == ["a"]
    assert (call["algorithm"], call["duration"], call["tags"]) == ("ES384", 300, {"k": "v"})
    assert call["result"] == "OK"
    assert isinstance(call["timestamp"], float)


# -- discovery -------------------------------------------------------------------------------


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
    caplog.set_level(logging.INFO, logger="authgw.sts_emulator")

    token = make_client(emulator).get_web_identity_token(
        Audience=["a", "b"], SigningAlgorithm="ES384"
    )["WebIdentityToken"]

    records = [r.getMessage() for r in caplog.records if r.name == "authgw.sts_emulator"]
    assert any(
        "GetWebIdentityToken" in m and "audiences=2" in m and "ES384" in m and "result=OK" in m
        for m in records
    )
    assert all(token not in m and token.split(".")[2] not in m for m in records)
    assert capfd.readouterr().err == ""  # http.server's access log is silenced


def test_serve_prints_the_environment_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from authgw.sts_emulator import serve; serve(port=0)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(7)]
        settings = dict(line.split("=", 1) for line in lines if "=" in line and "#" not in line)
        assert set(settings) == {
            "AWS_ENDPOINT_URL_STS",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        assert settings["AWS_REGION"] == "us-east-1"
        url = settings["AWS_ENDPOINT_URL_STS"]
        assert url.startswith("http://127.0.0.1:") and url in lines[0]
        status, body = http("GET", url + "/.well-known/openid-configuration")
        assert status == 200 and json.loads(body)["issuer"] == url
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=5)
