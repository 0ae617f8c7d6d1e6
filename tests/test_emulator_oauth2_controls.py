"""The OAuth2 endpoint's test controls: injected error codes and bad answers, latency,
hold, token lifetime, the call record, and the /_emulator/oauth2/* endpoints."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import pytest

from authgw.emulator import DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET, StsEmulator
from tests.emulator_helpers import (
    FIXED_NOW,
    GRANT,
    Answer,
    http,
    make_client,
    post_json,
    token_request,
    verify_access_token,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("bare_aws_env")

# The statuses RFC 6749 gives each code, written out rather than read from the module.
STATUS_OF = {
    "invalid_request": 400,
    "invalid_client": 401,
    "invalid_grant": 400,
    "unauthorized_client": 400,
    "unsupported_grant_type": 400,
    "invalid_scope": 400,
    "server_error": 500,
    "temporarily_unavailable": 503,
}
DEFAULT_STATE = {"fault": None, "latency": 0.0, "lifetime": 300}


def results(emulator: StsEmulator) -> list[str]:
    return [call.result for call in emulator.oauth2_calls]


# -- injected errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), STATUS_OF.items())
def test_injected_error_is_answered_with_its_status(
    emulator: StsEmulator, code: str, status: int
) -> None:
    emulator.oauth2_fail_with(code, message="injected by the test")

    answer = token_request(emulator)

    assert answer.status == status
    assert answer.json() == {"error": code, "error_description": "injected by the test"}
    assert answer.headers["Cache-Control"] == "no-store"
    assert ("WWW-Authenticate" in answer.headers) == (status == 401)
    assert results(emulator) == [code]


def test_error_for_n_calls_then_recovers(emulator: StsEmulator) -> None:
    emulator.oauth2_fail_with("temporarily_unavailable", times=2)

    statuses = [token_request(emulator).status for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert results(emulator) == ["temporarily_unavailable"] * 2 + ["OK"]


def test_error_without_times_persists_until_reset(emulator: StsEmulator) -> None:
    emulator.oauth2_fail_with("invalid_client")
    assert [token_request(emulator).status for _ in range(3)] == [401] * 3

    emulator.reset()

    assert token_request(emulator).status == 200


@pytest.mark.parametrize(
    ("code", "times"), [("NoSuchCode", None), ("Throttling", None), ("invalid_scope", 0)]
)
def test_oauth2_fail_with_refuses_what_it_cannot_answer(
    emulator: StsEmulator, code: str, times: int | None
) -> None:
    with pytest.raises(ValueError):
        emulator.oauth2_fail_with(code, times)


def test_oauth2_faults_leave_sts_alone_and_sts_faults_leave_oauth2_alone(
    emulator: StsEmulator,
) -> None:
    emulator.oauth2_fail_with("server_error")
    make_client(emulator).get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
    emulator.reset()
    emulator.fail_with("AccessDenied")

    assert token_request(emulator).status == 200
    assert emulator.faults_state()["fault"]["code"] == "AccessDenied"
    assert emulator.oauth2_faults_state() == DEFAULT_STATE


# -- bad answers ---------------------------------------------------------------------------------


def test_html_answer_is_a_200_page(emulator: StsEmulator) -> None:
    emulator.oauth2_answer_with("html")

    answer = token_request(emulator)

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.body.lstrip().lower().startswith(b"<!doctype html>")
    with pytest.raises(ValueError):
        answer.json()
    assert results(emulator) == ["html"]


def test_no_access_token_answer_is_json_without_it(emulator: StsEmulator) -> None:
    emulator.oauth2_answer_with("no_access_token")

    body = token_request(emulator).json()

    assert body == {"token_type": "Bearer", "expires_in": 300}


@pytest.mark.parametrize(
    ("mode", "expires_in"),
    [("expires_in_zero", 0), ("expires_in_negative", -1), ("expires_in_text", "abc")],
)
def test_bad_expires_in_comes_with_a_good_token(
    emulator: StsEmulator, mode: str, expires_in: object
) -> None:
    emulator.oauth2_answer_with(mode)

    body = token_request(emulator).json()

    assert body["expires_in"] == expires_in
    assert type(body["expires_in"]) is type(expires_in)
    claims = verify_access_token(body["access_token"], emulator)
    assert claims["exp"] - claims["iat"] == 300  # the JWT still says the real lifetime


def test_bad_answer_for_n_calls_then_recovers(emulator: StsEmulator) -> None:
    emulator.oauth2_answer_with("expires_in_zero", times=1)

    first, second = (token_request(emulator).json()["expires_in"] for _ in range(2))

    assert (first, second) == (0, 300)
    assert results(emulator) == ["expires_in_zero", "OK"]


def test_a_refused_request_answers_its_error_even_with_a_bad_answer_set(
    emulator: StsEmulator,
) -> None:
    emulator.oauth2_answer_with("html")

    answer = token_request(emulator, basic=(DEMO_OAUTH2_CLIENT_ID, "wrong"))

    assert answer.status == 401 and answer.json()["error"] == "invalid_client"


def test_oauth2_answer_with_refuses_unknown_modes(emulator: StsEmulator) -> None:
    with pytest.raises(ValueError):
        emulator.oauth2_answer_with("invalid_client")


# -- lifetime, latency, hold ---------------------------------------------------------------------


def test_lifetime_sets_expires_in_and_exp_until_reset(emulator: StsEmulator) -> None:
    emulator.set_oauth2_lifetime(45)
    body = token_request(emulator).json()
    claims = verify_access_token(body["access_token"], emulator)
    assert (body["expires_in"], claims["exp"] - claims["iat"]) == (45, 45)

    emulator.reset()

    assert token_request(emulator).json()["expires_in"] == 300


@pytest.mark.parametrize("seconds", [0, -1, 1.5, True, "60"])
def test_lifetime_must_be_a_positive_integer(emulator: StsEmulator, seconds: Any) -> None:
    with pytest.raises(ValueError):
        emulator.set_oauth2_lifetime(seconds)
    with pytest.raises(ValueError):
        StsEmulator(oauth2_lifetime=seconds)


def test_latency_delays_token_answers_only() -> None:
    with StsEmulator() as emulator:  # its own: stopping it ends the injected wait
        emulator.set_oauth2_latency(30)  # far longer than anything below takes
        answers: list[Answer] = []
        thread = threading.Thread(target=lambda: answers.append(token_request(emulator)))
        thread.start()
        wait_until(lambda: emulator.oauth2_in_flight == 1)

        make_client(emulator).get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")

        assert thread.is_alive() and not answers  # the token answer still waits
    thread.join(10)  # stopping answered the waiting call at once
    assert not thread.is_alive()


def held_call(emulator: StsEmulator, answers: list[Answer]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(token_request(emulator)))
    thread.start()
    wait_until(lambda: emulator.oauth2_in_flight == 1)
    return thread


def test_hold_keeps_token_answers_until_release(emulator: StsEmulator) -> None:
    emulator.oauth2_hold()
    answers: list[Answer] = []
    thread = held_call(emulator, answers)

    # A later call is answered meanwhile; the held one is still unanswered (and unrecorded:
    # a call is recorded before its answer is sent).
    make_client(emulator).get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
    held = (emulator.oauth2_in_flight, emulator.oauth2_call_count)
    emulator.oauth2_release()
    thread.join(timeout=5)

    assert held == (1, 0), "a held call was answered before release"
    assert [a.status for a in answers] == [200]
    assert emulator.oauth2_in_flight == 0 and emulator.call_count == 1


def test_stop_ends_a_hold_promptly() -> None:
    emulator = StsEmulator().start()
    emulator.oauth2_hold()
    answers: list[Answer] = []
    thread = held_call(emulator, answers)

    emulator.stop()
    thread.join(timeout=5)  # a safety net: a hold never ends on its own

    # Order, not milliseconds: the stop answered the held call.
    assert not thread.is_alive()
    assert [(a.status, a.json()["error"]) for a in answers] == [(503, "temporarily_unavailable")]
    assert results(emulator) == ["temporarily_unavailable"]


# -- call record ------------------------------------------------------------------------------


def test_calls_are_recorded_without_the_secret() -> None:
    fields = [
        *GRANT,
        ("scope", "read"),
        ("audience", "urn:a"),
        ("resource", "https://r1"),
        ("resource", "https://r2"),
        ("team", "payments"),
    ]
    with StsEmulator(clock=lambda: FIXED_NOW) as emulator:
        token_request(emulator, fields)
        post = [*GRANT, ("client_id", DEMO_OAUTH2_CLIENT_ID), ("client_secret", "wrong")]
        token_request(emulator, post, basic=None)
        first, second = emulator.oauth2_calls

    assert (first.client_id, first.auth_method) == (DEMO_OAUTH2_CLIENT_ID, "client_secret_basic")
    expected = "sha256:" + hashlib.sha256(DEMO_OAUTH2_CLIENT_SECRET.encode()).hexdigest()[:12]
    assert first.secret_fingerprint == expected
    assert (first.grant_type, first.scope) == ("client_credentials", "read")
    assert (first.audience, first.resource) == (("urn:a",), ("https://r1", "https://r2"))
    assert first.params == ("grant_type", "scope", "audience", "resource", "resource", "team")
    assert first.extra == {"team": "payments"}
    assert (first.timestamp, first.result) == (FIXED_NOW, "OK")
    assert (second.auth_method, second.result) == ("client_secret_post", "invalid_client")
    assert second.params == ("grant_type", "client_id", "client_secret")
    assert emulator.oauth2_call_count == 2


def test_concurrent_calls_are_all_recorded(emulator: StsEmulator) -> None:
    threads = [threading.Thread(target=token_request, args=(emulator,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert emulator.oauth2_call_count == 8 and emulator.oauth2_in_flight == 0
    assert emulator.call_count == 0  # STS's record is its own


def test_clear_calls_empties_both_records(emulator: StsEmulator) -> None:
    token_request(emulator)
    make_client(emulator).get_web_identity_token(Audience=["a"], SigningAlgorithm="RS256")
    emulator.clear_oauth2_calls()
    assert (emulator.oauth2_call_count, emulator.call_count) == (0, 1)
    token_request(emulator)

    emulator.clear_calls()

    assert (emulator.oauth2_call_count, emulator.call_count) == (0, 0)


# -- HTTP control endpoints -----------------------------------------------------------------------


def test_http_endpoint_injects_an_error_for_n_calls(emulator: StsEmulator) -> None:
    status, state = post_json(
        emulator.url + "/_emulator/oauth2/faults", {"code": "invalid_scope", "times": 1}
    )

    assert status == 200
    assert state["fault"]["code"] == "invalid_scope" and state["fault"]["remaining"] == 1
    assert [token_request(emulator).status for _ in range(2)] == [400, 200]


def test_http_endpoint_sets_bad_answer_lifetime_and_latency(emulator: StsEmulator) -> None:
    faults = emulator.url + "/_emulator/oauth2/faults"

    status, state = post_json(faults, {"code": "expires_in_text", "lifetime": 42, "latency": 0.2})

    assert status == 200
    assert (state["fault"]["code"], state["lifetime"], state["latency"]) == (
        "expires_in_text",
        42,
        0.2,
    )
    started = time.monotonic()
    body = token_request(emulator).json()
    assert time.monotonic() - started >= 0.2
    claims = verify_access_token(body["access_token"], emulator)
    assert (body["expires_in"], claims["exp"] - claims["iat"]) == ("abc", 42)
    status, raw = http("GET", faults)
    assert status == 200 and json.loads(raw)["lifetime"] == 42
    status, raw = http("DELETE", faults)
    assert status == 200 and json.loads(raw) == DEFAULT_STATE


@pytest.mark.parametrize(
    "payload",
    [
        {"code": "NoSuchCode"},
        {"code": "AccessDenied"},
        {"code": "invalid_client", "times": 0},
        {"code": "html", "message": "modes take none"},
        {"lifetime": 0},
        {"lifetime": "60"},
        {"latency": -1},
        {"bogus": 1},
        [],
    ],
)
def test_http_endpoint_rejects_bad_settings(emulator: StsEmulator, payload: object) -> None:
    status, body = post_json(emulator.url + "/_emulator/oauth2/faults", payload)

    assert status == 400 and "error" in body
    assert emulator.oauth2_faults_state() == DEFAULT_STATE


def test_http_calls_endpoint_lists_and_clears_calls(emulator: StsEmulator) -> None:
    calls = emulator.url + "/_emulator/oauth2/calls"
    token_request(emulator, [*GRANT, ("scope", "read")])

    status, body = http("GET", calls)

    assert status == 200
    listing = json.loads(body)
    assert listing["call_count"] == 1
    [call] = listing["calls"]
    assert (call["client_id"], call["scope"], call["result"]) == (
        DEMO_OAUTH2_CLIENT_ID,
        "read",
        "OK",
    )
    assert call["secret_fingerprint"].startswith("sha256:")
    status, body = http("DELETE", calls)
    assert status == 200 and json.loads(body) == {"call_count": 0, "calls": []}
    assert emulator.oauth2_call_count == 0


def test_sts_delete_endpoints_clear_oauth2_too(emulator: StsEmulator) -> None:
    emulator.oauth2_fail_with("server_error")
    token_request(emulator)

    status, body = http("DELETE", emulator.url + "/_emulator/faults")
    assert (status, json.loads(body)) == (200, {"fault": None, "latency": 0.0})
    http("DELETE", emulator.url + "/_emulator/calls")

    assert emulator.oauth2_faults_state() == DEFAULT_STATE
    assert emulator.oauth2_call_count == 0
