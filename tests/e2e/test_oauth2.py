"""The oauth2 source through a real mitmdump, against a token endpoint written from the RFC
(tests/oauth2_endpoint.py): the first token, the cached one, refresh-ahead, failures as
502 with the OAuth2 error code, and the client secret in no output."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import jwt
import pytest

from authgw.emulator import StsEmulator
from tests.e2e.clients import direct_request, proxy_request
from tests.e2e.harness import GatewayFactory, start_with_metrics
from tests.e2e.helpers import bearer_token, leaks
from tests.e2e.upstreams import Upstream
from tests.oauth2_endpoint import TokenEndpoint

pytestmark = pytest.mark.e2e

CLIENT_ID = "e2e-client"
CLIENT_SECRET = "e2e-client-secret-" + uuid.uuid4().hex
ENV = {"E2E_CLIENT_SECRET": CLIENT_SECRET}


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint(CLIENT_ID, CLIENT_SECRET, expires_in=300) as ep:
        yield ep


def config(
    upstream: Upstream, token_url: str, auth: str = "client_secret_post", **cache: float
) -> str:
    route = {
        "name": "idp",
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "token": {
            "type": "oauth2",
            "token_url": token_url,
            "client_id": CLIENT_ID,
            "client_secret": {"env": "E2E_CLIENT_SECRET"},
            "auth_method": auth,
            "scope": "read",
            "audience": "dynamic",
            "timeout": 2,
        },
    }
    return json.dumps({"version": 1, "cache": cache, "routes": [route]})


def test_one_token_endpoint_call_serves_many_requests(
    gateway_factory: GatewayFactory, upstream: Upstream, endpoint: TokenEndpoint
) -> None:
    gateway = gateway_factory(
        config(upstream, endpoint.url), env={"E2E_CLIENT_SECRET": CLIENT_SECRET}
    )
    url = f"{upstream.url}/r"
    statuses = [proxy_request(gateway.port, "GET", url).status for _ in range(50)]
    assert statuses == [200] * 50
    assert len(endpoint.calls) == 1 and endpoint.calls[0]["auth"] == "client_secret_post"
    assert {"audience", "scope", "grant_type"} <= set(endpoint.calls[0]["form"])
    assert len({bearer_token(r.header("Authorization")) for r in upstream.requests}) == 1
    assert not leaks({"mitmdump output": gateway.output}, [CLIENT_SECRET])


def test_a_short_lived_token_is_refreshed_ahead_without_a_failed_request(
    gateway_factory: GatewayFactory, upstream: Upstream, endpoint: TokenEndpoint
) -> None:
    endpoint.expires_in = 12  # refreshed half its life ahead: 6 s after it was issued
    gateway = gateway_factory(
        config(upstream, endpoint.url, min_ttl=1), env={"E2E_CLIENT_SECRET": CLIENT_SECRET}
    )
    stop, statuses = threading.Event(), []

    def traffic() -> None:
        while not stop.is_set():
            statuses.append(proxy_request(gateway.port, "GET", f"{upstream.url}/t").status)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    stop.wait(8)
    stop.set()
    thread.join(10)
    assert statuses and set(statuses) == {200}
    assert len(endpoint.calls) == 2, f"{len(endpoint.calls)} token endpoint calls"
    assert len({bearer_token(r.header("Authorization")) for r in upstream.requests}) == 2


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [("error", "invalid_scope"), ("html", "invalid_token"), ("no_token", "invalid_token")],
)
def test_a_failing_token_endpoint_is_a_502_naming_the_error(
    gateway_factory: GatewayFactory,
    upstream: Upstream,
    endpoint: TokenEndpoint,
    mode: str,
    error_class: str,
) -> None:
    endpoint.mode = mode
    gateway = gateway_factory(
        config(upstream, endpoint.url), env={"E2E_CLIENT_SECRET": CLIENT_SECRET}
    )
    resp = proxy_request(gateway.port, "GET", f"{upstream.url}/fail")
    assert resp.status == 502 and resp.header("X-Authgw-Error") == error_class
    assert upstream.count == 0
    gateway.wait_for_output(rf"token unavailable \({error_class}\)")
    assert not leaks({"mitmdump output": gateway.output, "answer": resp.text}, [CLIENT_SECRET])


@pytest.mark.parametrize("code", [CLIENT_SECRET, "x" * 5000, "invalid_scope\r\nX-Evil: 1"])
def test_a_token_endpoint_that_answers_an_unknown_error_code_is_oauth2_error(
    gateway_factory: GatewayFactory, upstream: Upstream, endpoint: TokenEndpoint, code: str
) -> None:
    """A hostile (or broken) token endpoint chooses its error code: set to the client
    secret, it must not reach X-Authgw-Error, the 502's body, the log or a metrics label."""
    endpoint.mode, endpoint.error_code = "error", code
    gateway, metrics_port = start_with_metrics(
        gateway_factory,
        lambda port: config(upstream, endpoint.url),
        env=ENV,
        extra_args=lambda port: ["--set", f"authgw_metrics=127.0.0.1:{port}"],
    )
    resp = proxy_request(gateway.port, "GET", f"{upstream.url}/hostile")
    assert resp.status == 502 and resp.header("X-Authgw-Error") == "oauth2_error"
    assert upstream.count == 0 and "X-Evil" not in dict(resp.headers)
    gateway.wait_for_output(r"token unavailable \(oauth2_error\)")
    metrics = direct_request(metrics_port, "GET", "/metrics", timeout=5).text
    status = direct_request(metrics_port, "GET", "/status", timeout=5).text
    assert 'error_class="oauth2_error"' in metrics
    outputs = {"log": gateway.output, "answer": resp.text, "metrics": metrics, "status": status}
    assert not leaks(outputs, [CLIENT_SECRET, "x" * 100])


def test_a_wrong_client_secret_is_invalid_client(
    gateway_factory: GatewayFactory, upstream: Upstream, endpoint: TokenEndpoint
) -> None:
    gateway = gateway_factory(
        config(upstream, endpoint.url), env={"E2E_CLIENT_SECRET": "not-" + CLIENT_SECRET}
    )
    resp = proxy_request(gateway.port, "GET", f"{upstream.url}/wrong")
    assert resp.status == 502 and resp.header("X-Authgw-Error") == "invalid_client"
    assert not leaks({"mitmdump output": gateway.output}, [CLIENT_SECRET])


def test_the_emulators_token_endpoint_through_a_real_mitmdump(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    """The project's emulator as the IdP: its RS256 tokens verify against its JWKS."""
    with StsEmulator(oauth2_clients={CLIENT_ID: CLIENT_SECRET}) as idp:
        text = config(upstream, idp.token_url, "client_secret_basic")
        gateway = gateway_factory(text, env={"E2E_CLIENT_SECRET": CLIENT_SECRET})
        for _ in range(20):
            assert proxy_request(gateway.port, "GET", f"{upstream.url}/idp").status == 200
        assert idp.oauth2_call_count == 1
        token = bearer_token(upstream.last.header("Authorization"))
        key = jwt.PyJWKClient(idp.jwks_url).get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=["RS256"], audience="http://127.0.0.1")
        assert (claims["sub"], claims["scope"]) == (CLIENT_ID, "read")
