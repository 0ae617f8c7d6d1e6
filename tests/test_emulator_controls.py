"""The emulator's test controls: injected faults and latency, the call record, and
the /_emulator/* endpoints that set and show them."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from authgw.emulator import StsEmulator
from tests.emulator_helpers import (
    FIXED_NOW,
    NO_RETRY,
    error_of,
    http,
    make_client,
    post_json,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("bare_aws_env")


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
    sts.stop()
    thread.join(timeout=5)  # a safety net: the call's own latency is 30 s

    # Order, not milliseconds: the stop answered the call; its latency would have said OK.
    assert not thread.is_alive()
    assert outcome == ["ServiceUnavailable"]
    assert [call.result for call in sts.calls] == ["ServiceUnavailable"]
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
