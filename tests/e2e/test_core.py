"""Gateway core, end to end: a real mitmdump with the authgw addon and recording upstreams.

Starting mitmdump is the slow part, so gateways with one config are shared by the
tests of this module: `regular` (regular proxy mode, `unmatched: reject`, one route per
behaviour under test, each with an upstream of its own), `reverse` (reverse mode with
the upstream header) and `streaming` (`stream_large_bodies`, for two known bugs).
Each test resets the upstreams it uses and asserts only on its own requests and flow
log records (found by a unique path). The shared gateways log at debug level, and
tests end by checking that no secret and no token the upstreams received appear in
mitmdump's output or the flow log. Start-up failures get a mitmdump of their own.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest

from scripts.gencerts import CertPaths
from tests.contract import FLOWLOG_FIELDS
from tests.e2e import conftest
from tests.e2e.clients import Response, direct_request, proxy_request
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.helpers import (
    bearer_token,
    fingerprint,
    fingerprints,
    leaks,
    new_secret,
    raw_request,
    replace_file,
    verify_jwt,
    wait_for_records,
)
from tests.e2e.upstreams import Upstream, server_tls_context

LIFETIME = 300
CLAIMS = {"stackmon": "dummy"}
DEBUG = ["--set", "termlog_verbosity=debug"]
# Headers that may carry a credential on the way to an upstream.
CREDENTIAL_HEADERS = ("Authorization", "X-Forwarded-Authorization")
# Re-stat interval of secret and token files (1 s), plus a margin.
FILE_RECHECK = 1.2
ALGORITHMS = ("HS256", "HS384", "HS512")


def hmac_route(
    name: str, hosts: list[str], secret: Mapping[str, str], **route: Any
) -> dict[str, Any]:
    token = {
        "type": "hmac",
        "secret": dict(secret),
        "algorithm": route.pop("algorithm", "HS256"),
        "claims": CLAIMS,
        "lifetime": LIFETIME,
        "audience": "dynamic",
    }
    return {"name": name, "hosts": hosts, **route, "token": token}


def config_text(routes: list[dict[str, Any]], **top: Any) -> str:
    # JSON is YAML: the gateway reads this like any gateway.yaml.
    return json.dumps({"version": 1, **top, "routes": routes}, indent=2)


def static_jwt(expires_in: float) -> str:
    """A JWT for a static token file; its signature is never checked by the gateway."""
    claims = {"sub": "e2e-static", "exp": int(time.time() + expires_in)}
    return jwt.encode(claims, secrets.token_hex(32), algorithm="HS256")


def unique_prefix(label: str) -> str:
    return f"/{label}-{uuid.uuid4().hex[:12]}"


@dataclass
class Lab:
    """One running gateway, its upstreams by name, and every credential it must not print."""

    factory: GatewayFactory
    gateway: Gateway
    upstreams: dict[str, Upstream]
    flowlog: Path
    secrets: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)
    credentials: set[str] = field(default_factory=set)  # other values never to be printed

    def __getitem__(self, name: str) -> Upstream:
        return self.upstreams[name]

    @property
    def port(self) -> int:
        return self.gateway.port

    def harvest(self) -> None:
        """Remember every credential the upstreams received, before they forget it."""
        for upstream in self.upstreams.values():
            for request in upstream.requests:
                for name in CREDENTIAL_HEADERS:
                    for value in request.header_values(name):
                        self.credentials.add(value.partition(" ")[2] or value)

    def reset(self) -> None:
        self.harvest()
        for upstream in self.upstreams.values():
            upstream.reset()

    def assert_nothing_leaked(self) -> None:
        self.harvest()
        flowlog = self.flowlog.read_text(encoding="utf-8") if self.flowlog.exists() else ""
        found = leaks(
            {"mitmdump output": self.gateway.output, "flow log": flowlog},
            [*self.secrets.values(), *self.credentials],
        )
        assert not found, f"credentials printed: {found}"

    def assert_no_upstream_contacted(self) -> None:
        counts = {name: up.count for name, up in self.upstreams.items() if up.count}
        assert not counts, f"upstreams contacted: {counts}"


def use(lab: Lab, request: pytest.FixtureRequest) -> Lab:
    """Reset `lab` for a test; a failing test's report shows the gateway's output."""
    lab.reset()
    conftest.report_output(request, lab.factory)
    return lab


# --------------------------------------------------------------------------- gateways

PLAIN_UPSTREAMS = (
    "hs256",
    "hs384",
    "hs512",
    "keep",
    "static",
    "gone",
    "victim",
    "rejects",
    "unrouted",
)


@pytest.fixture(scope="module")
def regular_lab(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Lab]:
    """Regular proxy mode, `unmatched: reject`, debug logging, flow log set in the file."""
    tmp = tmp_path_factory.mktemp("regular")
    with ExitStack() as stack:
        ups = {name: stack.enter_context(Upstream()) for name in PLAIN_UPSTREAMS}
        ups["tls"] = stack.enter_context(Upstream(tls=server_tls_context(certs)))
        keys = {alg: new_secret() for alg in ALGORITHMS}
        gone, victim = new_secret(), new_secret()
        files = {"static": tmp / "static.token", "gone": tmp / "gone.key", "victim": tmp / "v.key"}
        expired = static_jwt(-3600)
        files["static"].write_text(expired + "\n")
        files["gone"].write_text(gone + "\n")
        files["victim"].write_text(victim)
        env = {f"AUTHGW_E2E_{alg}": key for alg, key in keys.items()}
        hs256 = {"env": "AUTHGW_E2E_HS256"}

        def at(name: str) -> list[str]:
            return [f"127.0.0.1:{ups[name].port}"]

        routes = [
            *(
                hmac_route(
                    alg.lower(), at(alg.lower()), {"env": f"AUTHGW_E2E_{alg}"}, algorithm=alg
                )
                for alg in ALGORITHMS
            ),
            hmac_route("keep", at("keep"), hs256, inbound="keep-as:X-Forwarded-Authorization"),
            hmac_route("tls", [*at("tls"), f"localhost:{ups['tls'].port}"], hs256),
            {
                "name": "static_file",
                "hosts": at("static"),
                "token": {"type": "static", "value": {"file": str(files["static"])}},
            },
            hmac_route("gone", at("gone"), {"file": str(files["gone"])}),
            hmac_route("victim", at("victim"), {"file": str(files["victim"])}),
            hmac_route("rejects", at("rejects"), hs256),
            hmac_route("insecure", ["service.invalid"], hs256),
        ]
        flowlog = tmp / "flows.jsonl"
        factory = GatewayFactory(tmp, upstream_ca=certs.ca_cert)
        stack.callback(factory.stop_all)
        gateway = factory.start(
            config_text(routes, unmatched="reject", flowlog=str(flowlog)),
            env=env,
            extra_args=DEBUG,
        )
        lab = Lab(
            factory,
            gateway,
            ups,
            flowlog,
            secrets={**keys, "gone": gone, "victim": victim},
            files=files,
            credentials={expired},
        )
        yield lab
        factory.stop_all()
        lab.assert_nothing_leaked()  # again, with everything printed up to the exit


@pytest.fixture(scope="module")
def reverse_lab(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Lab]:
    """Reverse mode to the `default` upstream; X-Upstream-Host may name the `target`."""
    tmp = tmp_path_factory.mktemp("reverse")
    with ExitStack() as stack:
        ups = {n: stack.enter_context(Upstream()) for n in ("target", "default", "unrouted")}
        key = new_secret()
        route = hmac_route(
            "reverse_target", [f"127.0.0.1:{ups['target'].port}"], {"env": "AUTHGW_E2E_REVERSE"}
        )
        flowlog = tmp / "flows.jsonl"
        factory = GatewayFactory(tmp, upstream_ca=certs.ca_cert)
        stack.callback(factory.stop_all)
        gateway = factory.start(
            config_text([route], upstream_header="X-Upstream-Host", upstream_scheme="http"),
            env={"AUTHGW_E2E_REVERSE": key},
            extra_args=[
                *("--mode", f"reverse:{ups['default'].url}"),
                *("--set", f"authgw_flowlog={flowlog}"),
                *DEBUG,
            ],
        )
        lab = Lab(factory, gateway, ups, flowlog, secrets={"reverse": key})
        yield lab
        factory.stop_all()
        lab.assert_nothing_leaked()


@pytest.fixture
def regular(regular_lab: Lab, request: pytest.FixtureRequest) -> Lab:
    return use(regular_lab, request)


@pytest.fixture
def reverse(reverse_lab: Lab, request: pytest.FixtureRequest) -> Lab:
    return use(reverse_lab, request)


def client_credential() -> str:
    """A credential a client sends itself: never to be forwarded where replaced, nor printed."""
    return "client-" + secrets.token_hex(16)


def assert_token_unavailable(response: Response, error_class: str) -> None:
    assert response.status == 502, response.text
    assert response.text.startswith("token unavailable"), response.text
    assert response.header("X-Authgw-Error") == error_class


def check_hmac_token(
    token: str, secret: str, algorithm: str = "HS256", audience: str = "http://127.0.0.1"
) -> dict[str, Any]:
    """Verify `token` as the gateway's hmac routes here mint it; return its claims."""
    header, claims = verify_jwt(token, secret, algorithm, audience=audience)
    assert header["alg"] == algorithm
    assert header["kid"] == fingerprint(secret)
    assert set(claims) == {"stackmon", "aud", "iat", "exp"}
    assert claims["stackmon"] == "dummy"
    assert claims["aud"] == audience
    assert claims["exp"] - claims["iat"] == LIFETIME
    now = time.time()
    assert now - LIFETIME < claims["iat"] <= now + 1
    return claims


# --------------------------------------------------------------------------- regular, http


@pytest.mark.smoke
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_plain_http_upstream_receives_a_verifiable_bearer_jwt(regular: Lab, algorithm: str) -> None:
    upstream = regular[algorithm.lower()]

    response = proxy_request(regular.port, "GET", f"{upstream.url}/health?verbose=1")

    assert response.status == 200
    (received,) = upstream.requests
    assert received.path == "/health?verbose=1"
    (value,) = received.header_values("Authorization")
    check_hmac_token(bearer_token(value), regular.secrets[algorithm], algorithm)
    regular.assert_nothing_leaked()


def test_cloudmon_component_status_post_arrives_intact_with_the_token(regular: Lab) -> None:
    upstream = regular["hs256"]
    status = {
        "name": "compute",
        "impact": 2,
        "attributes": [{"name": "region", "value": "eu-de"}],
        "padding": ["x" * 64] * 512,  # ~35 KB: more than one read's worth
    }
    body = json.dumps(status).encode()

    response = proxy_request(
        regular.port,
        "POST",
        f"{upstream.url}/v1/component_status",
        {"Content-Type": "application/json"},
        body,
    )

    assert response.status == 200
    (received,) = upstream.requests
    assert (received.method, received.path) == ("POST", "/v1/component_status")
    assert received.body == body
    assert received.header("Content-Type") == "application/json"
    check_hmac_token(bearer_token(received.header("Authorization")), regular.secrets["HS256"])
    regular.assert_nothing_leaked()


def test_inbound_authorization_is_replaced_not_forwarded(regular: Lab) -> None:
    upstream = regular["hs256"]
    mine = client_credential()
    regular.credentials.add(mine)

    response = proxy_request(
        regular.port,
        "GET",
        f"{upstream.url}/replace",
        [("Authorization", f"Bearer {mine}"), ("authorization", f"Basic {mine}")],
    )

    assert response.status == 200
    (received,) = upstream.requests
    (value,) = received.header_values("Authorization")
    check_hmac_token(bearer_token(value), regular.secrets["HS256"])
    assert not [name for name, v in received.headers if mine in v]
    regular.assert_nothing_leaked()


def test_keep_as_moves_the_inbound_authorization_and_drops_a_forged_copy(regular: Lab) -> None:
    upstream = regular["keep"]
    mine, forged = client_credential(), client_credential()
    regular.credentials |= {mine, forged}

    moved = proxy_request(
        regular.port,
        "GET",
        f"{upstream.url}/moved",
        {"Authorization": f"Bearer {mine}", "X-Forwarded-Authorization": f"Bearer {forged}"},
    )
    forged_only = proxy_request(
        regular.port, "GET", f"{upstream.url}/forged", {"X-Forwarded-Authorization": forged}
    )

    assert (moved.status, forged_only.status) == (200, 200)
    first, second = upstream.requests
    check_hmac_token(bearer_token(first.header("Authorization")), regular.secrets["HS256"])
    assert fingerprints(first.header_values("X-Forwarded-Authorization")) == [
        fingerprint(f"Bearer {mine}")
    ]
    check_hmac_token(bearer_token(second.header("Authorization")), regular.secrets["HS256"])
    assert fingerprints(second.header_values("X-Forwarded-Authorization")) == []
    regular.assert_nothing_leaked()


# --------------------------------------------------------------------------- regular, https


@pytest.mark.smoke
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_https_is_intercepted_and_the_tls_upstream_receives_the_token(
    regular: Lab, host: str
) -> None:
    upstream = regular["tls"]
    mine = client_credential()
    regular.credentials.add(mine)

    response = proxy_request(
        regular.port,
        "POST",
        f"https://{host}:{upstream.port}/v1/component_status?x=1",
        {"Authorization": f"Bearer {mine}", "Content-Type": "application/json"},
        b'{"name": "dns"}',
        ca_file=regular.gateway.ca_cert_path,
    )

    assert response.status == 200
    (received,) = upstream.requests
    assert received.path == "/v1/component_status?x=1"
    assert received.body == b'{"name": "dns"}'
    (value,) = received.header_values("Authorization")
    check_hmac_token(bearer_token(value), regular.secrets["HS256"], audience=f"https://{host}")
    regular.assert_nothing_leaked()


# --------------------------------------------------------------------------- behaviour table


def test_expired_static_token_is_502_until_the_file_is_fixed_and_rotation_is_seen(
    regular: Lab,
) -> None:
    upstream = regular["static"]
    url = f"{upstream.url}/static"

    expired = proxy_request(regular.port, "GET", url)

    assert_token_unavailable(expired, "expired")
    assert upstream.count == 0

    fresh = static_jwt(3600)
    regular.credentials.add(fresh)
    replace_file(regular.files["static"], fresh + "\n")
    time.sleep(FILE_RECHECK)
    recovered = proxy_request(regular.port, "GET", url)

    assert recovered.status == 200, recovered.text
    (received,) = upstream.requests
    assert fingerprints(received.header_values("Authorization")) == [fingerprint(f"Bearer {fresh}")]

    rotated = static_jwt(3600)
    regular.credentials.add(rotated)
    replace_file(regular.files["static"], rotated + "\n")
    time.sleep(FILE_RECHECK)
    after_rotation = proxy_request(regular.port, "GET", url)

    assert after_rotation.status == 200, after_rotation.text
    assert fingerprints(upstream.last.header_values("Authorization")) == [
        fingerprint(f"Bearer {rotated}")
    ]
    regular.assert_nothing_leaked()


def test_hmac_secret_file_deleted_after_start_is_502_missing_secret(regular: Lab) -> None:
    upstream = regular["gone"]
    url = f"{upstream.url}/gone"
    before = proxy_request(regular.port, "GET", url)
    assert before.status == 200
    check_hmac_token(bearer_token(upstream.last.header("Authorization")), regular.secrets["gone"])
    upstream.clear()

    regular.files["gone"].unlink()
    time.sleep(FILE_RECHECK)
    after = proxy_request(regular.port, "GET", url)
    again = proxy_request(regular.port, "GET", url)  # a cached token must not be used either

    assert_token_unavailable(after, "missing_secret")
    assert_token_unavailable(again, "missing_secret")
    assert upstream.count == 0
    regular.assert_nothing_leaked()


def test_one_routes_missing_secret_does_not_affect_another_route(regular: Lab) -> None:
    victim, healthy = regular["victim"], regular["hs256"]
    assert proxy_request(regular.port, "GET", f"{victim.url}/v").status == 200
    victim.clear()

    regular.files["victim"].unlink()
    time.sleep(FILE_RECHECK)
    failed = proxy_request(regular.port, "GET", f"{victim.url}/v")
    served = proxy_request(regular.port, "GET", f"{healthy.url}/h")
    failed_again = proxy_request(regular.port, "GET", f"{victim.url}/v")
    served_again = proxy_request(regular.port, "GET", f"{healthy.url}/h")

    assert_token_unavailable(failed, "missing_secret")
    assert_token_unavailable(failed_again, "missing_secret")
    assert (served.status, served_again.status) == (200, 200)
    assert victim.count == 0
    for received in healthy.requests:
        check_hmac_token(bearer_token(received.header("Authorization")), regular.secrets["HS256"])
    assert healthy.count == 2
    regular.assert_nothing_leaked()


def test_unmatched_reject_answers_403_and_never_forwards(regular: Lab) -> None:
    upstream = regular["unrouted"]

    response = proxy_request(
        regular.port, "POST", f"{upstream.url}/anything", {"Content-Type": "text/plain"}, b"x"
    )

    assert response.status == 403
    assert response.text.strip() == "no route for host"
    regular.assert_no_upstream_contacted()
    regular.assert_nothing_leaked()


def test_plain_http_to_a_non_loopback_host_is_refused_before_connecting(regular: Lab) -> None:
    # service.invalid never resolves: had the gateway tried to connect, it would answer
    # mitmproxy's own 502 (a DNS error), not the addon's.
    response = proxy_request(regular.port, "GET", "http://service.invalid:8080/status")

    assert_token_unavailable(response, "insecure_upstream")
    assert "route insecure" in response.text
    connects = [
        line
        for line in regular.gateway.lines
        if "service.invalid" in line and "connect" in line.lower()
    ]
    assert connects == []
    regular.assert_no_upstream_contacted()
    regular.assert_nothing_leaked()


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_auth_rejection_drops_the_cached_token_and_logs_a_diagnostic(
    regular: Lab, status: int
) -> None:
    upstream = regular["rejects"]
    upstream.respond(status, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, path="/denied")
    secret = regular.secrets["HS256"]

    first = proxy_request(regular.port, "GET", f"{upstream.url}/ok")
    time.sleep(1.1)  # so that a token minted now has another iat
    denied = proxy_request(regular.port, "GET", f"{upstream.url}/denied")
    after = proxy_request(regular.port, "GET", f"{upstream.url}/ok")

    assert (first.status, denied.status, after.status) == (200, status, 200)
    tokens = [bearer_token(r.header("Authorization")) for r in upstream.requests]
    assert len(tokens) == 3
    first_fp, denied_fp, after_fp = fingerprints(tokens)
    assert denied_fp == first_fp, "the token was not cached"
    assert after_fp != denied_fp, "the rejected token was injected again"
    assert check_hmac_token(tokens[2], secret)["iat"] > check_hmac_token(tokens[1], secret)["iat"]
    line = regular.gateway.wait_for_output(f"route rejects: upstream answered {status} ").string
    assert f"kid {fingerprint(secret)}" in line
    assert "claims aud,exp,iat,stackmon" in line
    assert re.search(r"\b\d+ s left", line), line
    regular.assert_nothing_leaked()


# --------------------------------------------------------------------------- flow log


def test_flow_log_has_one_redacted_record_per_flow(regular: Lab) -> None:
    prefix = unique_prefix("flowlog")
    query_secret = client_credential()  # mitmproxy itself prints URLs: flow log only
    mine = client_credential()
    regular.credentials.add(mine)
    routed, unrouted = regular["hs256"], regular["unrouted"]

    injected = proxy_request(
        regular.port,
        "GET",
        f"{routed.url}{prefix}/injected?access_token={query_secret}",
        {"Authorization": f"Bearer {mine}"},
    )
    unavailable = proxy_request(regular.port, "GET", f"http://service.invalid{prefix}/insecure")
    rejected = proxy_request(regular.port, "DELETE", f"{unrouted.url}{prefix}/rejected?x=1")
    assert (injected.status, unavailable.status, rejected.status) == (200, 502, 403)

    records = wait_for_records(regular.flowlog, prefix, 3)
    assert len(records) == 3, records
    by_action = {r["action"]: r for r in records}
    assert set(by_action) == {"injected", "token_unavailable", "rejected"}
    for record in records:
        assert set(record) == FLOWLOG_FIELDS
        assert record["client"].startswith("127.0.0.1:")
    assert len({r["client"] for r in records}) == 3  # three connections, three flows

    ok = by_action["injected"]
    assert ok["path"] == f"{prefix}/injected"  # no query string
    assert (ok["method"], ok["scheme"], ok["host"], ok["port"]) == (
        "GET",
        "http",
        "127.0.0.1",
        routed.port,
    )
    assert (ok["route"], ok["token_source"], ok["status"]) == ("hs256", "hmac", 200)
    assert ok["kid"] == fingerprint(regular.secrets["HS256"])
    assert ok["audience"] == ["http://127.0.0.1"]
    assert 0 < ok["token_expires_in"] <= LIFETIME
    assert ok["headers_set"] == ["Authorization"]
    assert ok["headers_removed"] == ["Authorization"]
    assert ok["error_class"] is None
    assert ok["token_ms"] >= 0 and ok["upstream_ms"] >= 0

    failed = by_action["token_unavailable"]
    assert (failed["route"], failed["status"], failed["error_class"]) == (
        "insecure",
        502,
        "insecure_upstream",
    )
    assert (failed["host"], failed["port"], failed["path"]) == (
        "service.invalid",
        80,
        f"{prefix}/insecure",
    )
    assert failed["kid"] is None and failed["headers_set"] == []

    refused = by_action["rejected"]
    assert (refused["route"], refused["status"], refused["method"]) == (None, 403, "DELETE")
    assert refused["path"] == f"{prefix}/rejected"
    assert refused["kid"] is None and refused["token_source"] is None
    flowlog = {"flow log": regular.flowlog.read_text(encoding="utf-8")}
    assert not leaks(flowlog, [query_secret]), "the query string was logged"
    regular.assert_nothing_leaked()


def test_debug_output_and_flow_log_never_show_secrets_or_tokens(regular: Lab) -> None:
    prefix = unique_prefix("redaction")
    for name in ("hs256", "hs384", "hs512", "keep", "rejects"):
        url = f"{regular[name].url}{prefix}/{name}"
        assert proxy_request(regular.port, "GET", url).status == 200
    tls = regular["tls"]
    response = proxy_request(
        regular.port, "GET", f"{tls.url}{prefix}/tls", ca_file=regular.gateway.ca_cert_path
    )
    assert response.status == 200
    proxy_request(regular.port, "GET", f"http://service.invalid{prefix}/debug")

    # Debug lines are in the output (this one is logged at debug level only).
    regular.gateway.wait_for_output(r"route insecure: token unavailable \(insecure_upstream\)")
    assert len(wait_for_records(regular.flowlog, prefix, 7)) == 7
    received = {
        bearer_token(request.header("Authorization"))
        for upstream in regular.upstreams.values()
        for request in upstream.requests
    }
    assert len(received) >= 4  # HS256, HS384, HS512 and the https audience: all checked
    regular.assert_nothing_leaked()


# --------------------------------------------------------------------------- reverse mode


def test_reverse_mode_upstream_header_retargets_and_injects(reverse: Lab) -> None:
    target = reverse["target"]
    prefix = unique_prefix("reverse")
    body = b'{"name": "compute", "impact": 1}'

    response = direct_request(
        reverse.port,
        "POST",
        f"{prefix}/v1/component_status?x=1",
        {"X-Upstream-Host": f"127.0.0.1:{target.port}", "Content-Type": "application/json"},
        body,
    )
    lowercase = direct_request(
        reverse.port, "GET", f"{prefix}/lower", {"x-upstream-host": f"127.0.0.1:{target.port}"}
    )

    assert (response.status, lowercase.status) == (200, 200)
    assert reverse["default"].count == 0
    first, second = target.requests
    assert (first.method, first.path, first.body) == (
        "POST",
        f"{prefix}/v1/component_status?x=1",
        body,
    )
    for received in (first, second):
        assert received.header_values("X-Upstream-Host") == []
        assert received.header("Host") == f"127.0.0.1:{target.port}"
        (value,) = received.header_values("Authorization")
        check_hmac_token(bearer_token(value), reverse.secrets["reverse"])
    records = wait_for_records(reverse.flowlog, prefix, 2)
    for record in records:
        assert record["action"] == "injected"
        assert (record["route"], record["port"]) == ("reverse_target", target.port)
        assert record["headers_removed"] == ["X-Upstream-Host"]
    reverse.assert_nothing_leaked()


def test_reverse_mode_upstream_header_for_an_unrouted_host_is_403_and_mints_nothing(
    reverse: Lab,
) -> None:
    prefix = unique_prefix("unrouted")

    response = direct_request(
        reverse.port,
        "GET",
        f"{prefix}/x",
        {"X-Upstream-Host": f"127.0.0.1:{reverse['unrouted'].port}"},
    )

    assert response.status == 403
    assert response.text.strip() == "no route for host"
    reverse.assert_no_upstream_contacted()
    (record,) = wait_for_records(reverse.flowlog, prefix, 1)
    assert (record["action"], record["status"], record["route"]) == ("rejected", 403, None)
    # No token was asked for: no source, no kid, no time spent getting one.
    assert record["token_source"] is None
    assert record["kid"] is None
    assert record["token_ms"] is None
    assert record["headers_set"] == []
    reverse.assert_nothing_leaked()


MALFORMED = {
    "path": "127.0.0.1:{port}/admin",
    "query": "127.0.0.1:{port}?x=1",
    "fragment": "127.0.0.1:{port}#x",
    "scheme": "http://127.0.0.1:{port}",
    "userinfo": "user@127.0.0.1:{port}",
    "userinfo_password": "user:pw@127.0.0.1:{port}",
    "inner_space": "127.0.0.1 :{port}",
    "tab": "127.0.0.1:{port}\tx",
    "nul": "127.0.0.1\x00:{port}",
    "control": "127.0.0.1\x01:{port}",
    "escape": "127.0.0.1:{port}\x1b",
    "delete": "127.0.0.1:{port}\x7f",
    "non_ascii": "r\u00e9seau.example:{port}",
    "percent": "127.0.0.1%2f:{port}",
    "backslash": "127.0.0.1\\x:{port}",
    "port_zero": "127.0.0.1:0",
    "port_too_big": "127.0.0.1:65536",
    "port_name": "127.0.0.1:http",
    "port_empty": "127.0.0.1:",
    "port_negative": "127.0.0.1:-1",
    "label_hyphen": "-bad.example:{port}",
    "label_empty": "bad..example:{port}",
    "label_too_long": "a" * 64 + ".example:{port}",
    "label_star": "*.example:{port}",
    "ipv6_unclosed": "[::1:{port}",
}


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_reverse_mode_malformed_upstream_header_is_400(reverse: Lab, value: str) -> None:
    header = value.format(port=reverse["target"].port).encode("utf-8")

    response = raw_request(
        reverse.port,
        b"GET /malformed HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Upstream-Host: " + header,
    )

    assert response.status == 400, response.text
    assert response.text.startswith("bad X-Upstream-Host"), response.text
    reverse.assert_no_upstream_contacted()
    reverse.assert_nothing_leaked()


def test_reverse_mode_upstream_header_sent_twice_is_400(reverse: Lab) -> None:
    target = f"127.0.0.1:{reverse['target'].port}"

    response = direct_request(
        reverse.port, "GET", "/twice", [("X-Upstream-Host", target), ("X-Upstream-Host", target)]
    )

    assert response.status == 400
    assert response.text.startswith("bad X-Upstream-Host")
    reverse.assert_no_upstream_contacted()


def test_reverse_mode_without_upstream_header_passes_through_untouched(reverse: Lab) -> None:
    prefix = unique_prefix("passthrough")
    mine = client_credential()
    reverse.credentials.add(mine)

    response = direct_request(
        reverse.port, "GET", f"{prefix}/p?q=1", {"Authorization": f"Bearer {mine}"}
    )

    assert response.status == 200
    (received,) = reverse["default"].requests
    assert fingerprints(received.header_values("Authorization")) == [fingerprint(f"Bearer {mine}")]
    assert reverse["target"].count == 0
    (record,) = wait_for_records(reverse.flowlog, prefix, 1)
    assert (record["action"], record["route"], record["status"]) == ("passthrough", None, 200)
    assert record["path"] == f"{prefix}/p"
    assert record["headers_set"] == [] and record["headers_removed"] == []
    reverse.assert_nothing_leaked()


# ------------------------------------------------------- streamed bodies, verbose output
# These stay above the start-up tests: the module-scoped gateways are checked for leaks
# once more when they stop, in the teardown of the module's last test.

STREAM_LIMIT = 1024


@pytest.fixture(scope="module")
def streaming_lab(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Lab]:
    """Regular mode, `unmatched: reject`, with mitmproxy's `stream_large_bodies` set."""
    tmp = tmp_path_factory.mktemp("streaming")
    with ExitStack() as stack:
        ups = {n: stack.enter_context(Upstream()) for n in ("routed", "unrouted")}
        key = new_secret()
        route = hmac_route(
            "streamed", [f"127.0.0.1:{ups['routed'].port}"], {"env": "AUTHGW_E2E_STREAM"}
        )
        flowlog = tmp / "flows.jsonl"
        factory = GatewayFactory(tmp, upstream_ca=certs.ca_cert)
        stack.callback(factory.stop_all)
        gateway = factory.start(
            config_text([route], unmatched="reject", flowlog=str(flowlog)),
            env={"AUTHGW_E2E_STREAM": key},
            extra_args=["--set", f"stream_large_bodies={STREAM_LIMIT}b", *DEBUG],
        )
        yield Lab(factory, gateway, ups, flowlog, secrets={"stream": key})


@pytest.fixture
def streaming(streaming_lab: Lab, request: pytest.FixtureRequest) -> Lab:
    return use(streaming_lab, request)


def test_stream_large_bodies_gateway_injects_into_small_bodies(streaming: Lab) -> None:
    routed, unrouted = streaming["routed"], streaming["unrouted"]
    body = b"s" * (STREAM_LIMIT // 2)

    injected = proxy_request(streaming.port, "POST", f"{routed.url}/small", body=body)
    rejected = proxy_request(streaming.port, "POST", f"{unrouted.url}/small", body=body)

    assert (injected.status, rejected.status) == (200, 403)
    (received,) = routed.requests
    assert received.body == body
    check_hmac_token(bearer_token(received.header("Authorization")), streaming.secrets["stream"])
    assert unrouted.count == 0
    streaming.assert_nothing_leaked()


def test_stream_large_bodies_body_above_the_limit_still_gets_the_token(streaming: Lab) -> None:
    routed = streaming["routed"]
    body = b"L" * (STREAM_LIMIT * 4)

    response = proxy_request(streaming.port, "POST", f"{routed.url}/large", body=body)

    assert response.status == 200
    (received,) = routed.requests
    assert received.body == body
    token = bearer_token(received.header("Authorization"))
    check_hmac_token(token, streaming.secrets["stream"])


def test_stream_large_bodies_unrouted_host_is_still_rejected(streaming: Lab) -> None:
    """mitmproxy cannot answer a request it streams: the gateway closes the connection."""
    unrouted = streaming["unrouted"]
    started = time.monotonic()

    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        proxy_request(
            streaming.port, "POST", f"{unrouted.url}/large", body=b"L" * (STREAM_LIMIT * 4)
        )

    assert time.monotonic() - started < 5, "the client was left hanging"
    assert unrouted.count == 0, "forwarded to a host that matches no route"
    streaming.gateway.wait_for_output(r"closing the connection instead of answering 403")


def test_verbose_mitmdump_does_not_print_the_injected_token(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    key = new_secret()
    route = hmac_route("api", [f"127.0.0.1:{upstream.port}"], {"env": "AUTHGW_E2E_KEY"})
    gateway = gateway_factory(config_text([route]), env={"AUTHGW_E2E_KEY": key}, extra_args=["-v"])

    response = proxy_request(gateway.port, "GET", f"{upstream.url}/verbose")

    assert response.status == 200
    token = bearer_token(upstream.last.header("Authorization"))
    gateway.wait_for_output(r"<< 200")
    found = leaks({"mitmdump output": gateway.output}, [key, token])
    assert not found, f"credentials printed: {found}"


# --------------------------------------------------------------------------- start-up


def yaml_route(token: str, hosts: str = "[api.example.com]") -> str:
    return f"version: 1\nroutes:\n  - name: api\n    hosts: {hosts}\n    token:\n{token}"


INVALID_CONFIGS = {
    "bad_algorithm": (
        yaml_route(
            "      type: hmac\n      secret: {env: AUTHGW_E2E_KEY}\n      algorithm: HS999\n"
        ),
        "routes[0].token.algorithm: is not one of HS256, HS384, HS512",
    ),
    "missing_env_secret": (
        yaml_route("      type: hmac\n      secret: {env: AUTHGW_E2E_UNSET}\n"),
        "routes[0].token.secret: env var AUTHGW_E2E_UNSET is not set or empty",
    ),
    "host_with_path": (
        yaml_route("      type: hmac\n      secret: {env: AUTHGW_E2E_KEY}\n", '["api.example/v1"]'),
        "routes[0].hosts[0]: is not a host pattern",
    ),
}


@pytest.mark.parametrize(
    ("config", "expected"), list(INVALID_CONFIGS.values()), ids=list(INVALID_CONFIGS)
)
def test_invalid_config_stops_mitmdump_naming_the_field(
    gateway_factory: GatewayFactory, config: str, expected: str
) -> None:
    key = new_secret()

    returncode, output = gateway_factory.run_to_exit(
        config, env={"AUTHGW_E2E_KEY": key, "AUTHGW_E2E_UNSET": None}, timeout=15
    )

    assert returncode != 0
    assert expected in output
    assert "authgw-e2e-harness: ready" not in output
    assert not leaks({"mitmdump output": output}, [key]), "the secret was printed"
