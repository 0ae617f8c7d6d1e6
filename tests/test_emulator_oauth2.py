"""The emulator's OAuth2 client-credentials endpoint over loopback HTTP: the tokens it
issues, whom it lets in, and how it refuses (RFC 6749 4.4, 2.3.1, 5.1, 5.2)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from authgw.emulator import DEMO_OAUTH2_CLIENT_ID, OAuth2Client, StsEmulator
from tests.emulator_helpers import (
    DEMO_CLIENT,
    FIXED_NOW,
    FORM_TYPE,
    GRANT,
    basic_auth,
    http,
    http_answer,
    token_request,
    verify_access_token,
)
from tests.test_verify import no_leak

READER = ("reader", "reader-secret-value-1")
# An id and secret that RFC 6749 2.3.1 form-urlencodes before Basic encoding.
ODD = ("svc:one", "p@ss w0rd+/:%&=")
ODD_CLIENTS = [
    OAuth2Client(*READER, allowed_scopes=frozenset({"read", "list"})),
    OAuth2Client(*ODD),
]


@pytest.fixture(scope="module")
def idp_module() -> Iterator[StsEmulator]:
    with StsEmulator(oauth2_clients=ODD_CLIENTS) as emulator:
        yield emulator


@pytest.fixture
def idp(idp_module: StsEmulator) -> StsEmulator:
    """An emulator whose clients are READER (scopes read, list) and ODD (any scope)."""
    idp_module.reset()
    idp_module.clear_calls()
    return idp_module


def post_fields(client: tuple[str, str], *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """A client_secret_post form: the grant, the client's id and secret, then ``extra``."""
    return [*GRANT, ("client_id", client[0]), ("client_secret", client[1]), *extra]


def assert_refused(answer: Any, status: int, code: str) -> None:
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["error"] == code and isinstance(body["error_description"], str)
    assert "access_token" not in body
    challenge = answer.headers.get("WWW-Authenticate")
    assert (challenge is not None and challenge.startswith("Basic ")) == (status == 401)


# -- tokens ---------------------------------------------------------------------------------


def test_basic_client_gets_a_bearer_jwt_that_verifies_against_the_jwks(
    emulator: StsEmulator,
) -> None:
    answer = token_request(emulator)

    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert (answer.headers["Cache-Control"], answer.headers["Pragma"]) == ("no-store", "no-cache")
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}  # no scope asked, none
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 300)
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"
    claims = verify_access_token(body["access_token"], emulator)
    assert claims["iss"] == emulator.issuer
    assert claims["sub"] == claims["client_id"] == DEMO_OAUTH2_CLIENT_ID
    assert claims["exp"] - claims["iat"] == 300
    assert "aud" not in claims and "scope" not in claims


def test_post_client_gets_its_scope_in_answer_and_token(idp: StsEmulator) -> None:
    answer = token_request(idp, post_fields(READER, ("scope", "read list")), basic=None)

    assert answer.status == 200
    body = answer.json()
    assert body["scope"] == "read list"
    claims = verify_access_token(body["access_token"], idp)
    assert (claims["sub"], claims["scope"]) == ("reader", "read list")


def test_basic_credentials_are_form_urlencoded_first(idp: StsEmulator) -> None:
    answer = token_request(idp, basic=ODD)

    assert answer.status == 200
    assert verify_access_token(answer.json()["access_token"], idp)["sub"] == "svc:one"


@pytest.mark.parametrize(
    ("extra", "aud"),
    [
        ([("audience", "https://api.example")], "https://api.example"),
        ([("audience", "urn:a"), ("audience", "urn:b")], ["urn:a", "urn:b"]),
        ([("resource", "https://res.example")], "https://res.example"),
        ([("resource", "https://res.example"), ("audience", "urn:wins")], "urn:wins"),
    ],
)
def test_audience_or_else_resource_is_the_aud_claim(
    emulator: StsEmulator, extra: list[tuple[str, str]], aud: str | list[str]
) -> None:
    answer = token_request(emulator, [*GRANT, *extra])

    one = aud if isinstance(aud, str) else aud[-1]
    claims = verify_access_token(answer.json()["access_token"], emulator, audience=one)
    assert claims["aud"] == aud


def test_times_follow_the_injected_clock() -> None:
    with StsEmulator(clock=lambda: FIXED_NOW, oauth2_lifetime=120) as emulator:
        body = token_request(emulator).json()

    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (int(FIXED_NOW), int(FIXED_NOW) + 120)
    assert body["expires_in"] == 120


def test_tokens_are_unique(emulator: StsEmulator) -> None:
    tokens = [token_request(emulator).json()["access_token"] for _ in range(2)]
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 2


def test_discovery_names_the_token_endpoint(emulator: StsEmulator) -> None:
    status, body = http("GET", emulator.url + "/.well-known/openid-configuration")

    assert status == 200
    document = json.loads(body)
    assert document["token_endpoint"] == emulator.token_url == emulator.url + "/oauth2/token"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert {"client_id", "scope"} <= set(document["claims_supported"])


# -- client authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "authorization", "status", "code"),
    [
        pytest.param(GRANT, None, 401, "invalid_client", id="no-credentials"),
        pytest.param(GRANT, basic_auth("reader", "wrong"), 401, "invalid_client", id="basic-wrong"),
        pytest.param(GRANT, basic_auth("nobody", "x"), 401, "invalid_client", id="basic-unknown"),
        pytest.param(GRANT, "Basic !!!not-base64", 401, "invalid_client", id="basic-garbled"),
        pytest.param(GRANT, "Basic cmVhZGVy", 401, "invalid_client", id="basic-no-colon"),
        pytest.param(
            post_fields(("reader", "wrong")), None, 401, "invalid_client", id="post-wrong"
        ),
        pytest.param(
            [*GRANT, ("client_id", "reader")], None, 401, "invalid_client", id="post-no-secret"
        ),
        pytest.param(
            post_fields(READER), basic_auth(*READER), 400, "invalid_request", id="both-methods"
        ),
        pytest.param(
            [*GRANT, ("client_id", "svc:one")],
            basic_auth(*READER),
            400,
            "invalid_request",
            id="basic-and-other-client-id",
        ),
    ],
)
def test_client_authentication_failures(
    idp: StsEmulator,
    fields: list[tuple[str, str]],
    authorization: str | None,
    status: int,
    code: str,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answer = token_request(idp, fields, basic=None, headers=headers)

    assert_refused(answer, status, code)
    assert [call.result for call in idp.oauth2_calls] == [code]


def test_basic_with_the_same_client_id_field_is_accepted(idp: StsEmulator) -> None:
    answer = token_request(idp, [*GRANT, ("client_id", "reader")], basic=READER)

    assert answer.status == 200


# -- the request ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param([], "invalid_request", id="grant-missing"),
        pytest.param([("grant_type", "password")], "unsupported_grant_type", id="password"),
        pytest.param([("grant_type", "")], "unsupported_grant_type", id="grant-empty"),
        pytest.param([*GRANT, *GRANT], "invalid_request", id="grant-twice"),
        pytest.param([*GRANT, ("scope", "a"), ("scope", "b")], "invalid_request", id="scope-twice"),
        pytest.param([*GRANT, ("scope", "read write")], "invalid_scope", id="scope-not-allowed"),
        pytest.param([*GRANT, ("scope", "read  list")], "invalid_scope", id="double-space"),
        pytest.param([*GRANT, ("scope", "")], "invalid_scope", id="scope-empty"),
        pytest.param([*GRANT, ("scope", 'read "list"')], "invalid_scope", id="scope-quote"),
    ],
)
def test_invalid_requests_are_refused_with_their_code(
    idp: StsEmulator, fields: list[tuple[str, str]], code: str
) -> None:
    assert_refused(token_request(idp, fields, basic=READER), 400, code)


def test_a_client_without_scope_limits_may_ask_for_any(idp: StsEmulator) -> None:
    answer = token_request(idp, [*GRANT, ("scope", "read write admin:all")], basic=ODD)

    assert answer.json()["scope"] == "read write admin:all"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"grant_type": "client_credentials"}'),
        ("text/plain", b"grant_type=client_credentials"),
        (FORM_TYPE, b"grant_type=client_credentials&scope=\xff"),
    ],
)
def test_a_body_that_is_not_a_utf8_form_is_invalid_request(
    emulator: StsEmulator, content_type: str, body: bytes
) -> None:
    headers = {"Authorization": basic_auth(*DEMO_CLIENT), "Content-Type": content_type}

    answer = http_answer("POST", emulator.token_url, body, headers)

    assert_refused(answer, 400, "invalid_request")


def test_form_type_with_charset_is_a_form(emulator: StsEmulator) -> None:
    answer = token_request(emulator, headers={"Content-Type": FORM_TYPE + "; charset=UTF-8"})

    assert answer.status == 200


def test_get_on_the_token_endpoint_is_405(emulator: StsEmulator) -> None:
    answer = http_answer("GET", emulator.token_url)

    assert (answer.status, answer.headers["Allow"]) == (405, "POST")
    assert answer.json()["error"] == "invalid_request"
    assert emulator.oauth2_call_count == 0


# -- the secret stays out -----------------------------------------------------------------------


def test_client_secrets_reach_no_log_record_or_answer(
    idp: StsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authgw.emulator")
    wrong = "wrong-secret-never-logged"
    answers = [
        token_request(idp, basic=READER),
        token_request(idp, post_fields(ODD), basic=None),
        token_request(idp, basic=(READER[0], wrong)),
        token_request(idp, post_fields((ODD[0], wrong)), basic=None),
    ]
    status, listing = http("GET", idp.url + "/_emulator/oauth2/calls")

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("authgw.emulator")]
    assert len(messages) == 4 and all("result=" in m for m in messages)
    text = "\n".join(messages) + repr(idp.oauth2_calls) + listing.decode() + repr(ODD_CLIENTS)
    text += "".join(a.body.decode() for a in answers[2:])
    no_leak(text, READER[1], ODD[1], wrong)
    # What the record keeps instead: the fingerprint of the secret each call sent.
    sent = [READER[1], ODD[1], wrong, wrong]
    expected = ["sha256:" + hashlib.sha256(s.encode()).hexdigest()[:12] for s in sent]
    assert [c.secret_fingerprint for c in idp.oauth2_calls] == expected
