"""Verify routes, end to end: a real mitmdump checking the bearer tokens clients send.

The staging use case: a gateway sits in front of a service and tells which clients
still sign with an old (drifted) secret, first only watching (observe mode), then
refusing them (enforce mode). One gateway serves the module, with one route per
case, each on an upstream of its own (so its own host):

    observe   verify-only, HMAC secret, `audience: dynamic`, `enforce: false`
    enforce   verify-only, HMAC secret, `enforce: true`
    jwks      verify-only, the STS emulator's JWKS (issuer URL), fixed audience and
              issuer, `enforce: true`
    both      verifies the client's token (enforce) and injects the gateway's own
              HMAC token, moving the client's under `inbound: keep-as:X-Client-Authorization`

Client tokens are made here with PyJWT: `valid` (the current secret, kid = its
fingerprint, as authgw's default `kid: fingerprint` does), `drifted` (signed with
the old secret, kid = the old fingerprint), `expired`, `wrong_audience`. STS tokens
come from the emulator through boto3. Each test sends to paths of its own and
compares metric scrapes taken before and after, so the tests do not depend on each
other. Tokens and secrets are compared by fingerprint and never reach a failure
message.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families

from authgw.emulator import DEMO_REGION, StsEmulator
from tests.e2e import conftest
from tests.e2e.clients import Response, direct_request, proxy_request
from tests.e2e.harness import Gateway, GatewayFactory, start_with_metrics
from tests.e2e.helpers import (
    fingerprint,
    fingerprints,
    leaks,
    new_secret,
    verify_jwt,
    wait_for_records,
)
from tests.e2e.sts_helpers import Bearer
from tests.e2e.upstreams import Upstream

CLIENT_ENV = "AUTHGW_E2E_VERIFY_CLIENT"  # the secret clients should sign with
GATEWAY_ENV = "AUTHGW_E2E_VERIFY_GATEWAY"  # the `both` route's own signing secret
DYNAMIC_AUDIENCE = "http://127.0.0.1"  # `audience: dynamic` for http://127.0.0.1:PORT
JWKS_AUDIENCE = "https://staging.verify.example"
LIFETIME = 300
ROUTES = ("observe", "enforce", "jwks", "both")
VERIFY_METRIC = "authgw_verify_total"
BAD_CLIENT_TOKENS = ("bad_signature", "expired", "wrong_audience", "missing")


def unique_path(label: str) -> str:
    return f"/{label}-{uuid.uuid4().hex[:12]}"


def hs256(secret: str, *, aud: str = DYNAMIC_AUDIENCE, expires_in: float = LIFETIME) -> Bearer:
    """A client token as a client of a kid-fingerprint gateway signs it."""
    now = int(time.time())
    claims = {
        "sub": "staging-client",
        "aud": aud,
        "iat": now - 5,
        "exp": int(now + expires_in),
        "jti": uuid.uuid4().hex,  # every token its own, like a real client's
    }
    return Bearer(jwt.encode(claims, secret, "HS256", headers={"kid": fingerprint(secret)}))


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Scrape:
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


def scrape(port: int) -> Scrape:
    resp = direct_request(port, "GET", "/metrics", timeout=5)
    assert resp.status == 200, resp.text
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
    }
    return Scrape(samples)


def verify_counts(before: Scrape, after: Scrape, route: str) -> dict[str, float]:
    """reason -> how much `authgw_verify_total` of `route` grew, with result = valid/invalid."""
    grown: dict[str, float] = {}
    for (name, labels), value in after.samples.items():
        label = dict(labels)
        if name == VERIFY_METRIC and label["route"] == route:
            delta = value - before.samples.get((name, labels), 0.0)
            if delta:
                result = "valid" if label["reason"] == "valid" else "invalid"
                assert label["result"] == result, label
                grown[label["reason"]] = delta
    return grown


# --------------------------------------------------------------------------- the gateway


@dataclass(repr=False)  # pytest may print a fixture of a failed test: no secrets in it
class VerifyLab:
    factory: GatewayFactory
    gateway: Gateway
    metrics_port: int
    emulator: StsEmulator
    upstreams: dict[str, Upstream]
    flowlog: Path
    client_secret: str
    old_secret: str
    gateway_secret: str
    tokens: set[str] = field(default_factory=set)  # every token sent or received

    def __repr__(self) -> str:
        return f"<VerifyLab proxy port {self.gateway.port}>"

    def send(
        self, route: str, path: str, token: str | None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """GET `path` on `route`'s upstream through the proxy, with `token` as a bearer."""
        sent = dict(headers or {})
        if token is not None:
            self.tokens.add(token)
            sent["Authorization"] = f"Bearer {token}"
        return proxy_request(self.gateway.port, "GET", self.upstreams[route].url + path, sent)

    def token(self, kind: str) -> Bearer:
        """A client token of `kind`: valid, bad_signature (drifted), expired, wrong_audience."""
        if kind == "valid":
            return hs256(self.client_secret)
        if kind == "bad_signature":
            return hs256(self.old_secret)
        if kind == "expired":
            return hs256(self.client_secret, expires_in=-120)
        if kind == "wrong_audience":
            return hs256(self.client_secret, aud="https://another-service.example")
        raise ValueError(kind)

    def received(self, route: str, path: str) -> list[Any]:
        return [r for r in self.upstreams[route].requests if r.path == path]

    def records(self, prefix: str, count: int) -> list[dict[str, Any]]:
        return wait_for_records(self.flowlog, prefix, count)

    def scrape(self) -> Scrape:
        return scrape(self.metrics_port)

    def warnings(self, route: str, reason: str) -> list[str]:
        marker = f"authgw: route {route}: client token {reason}: "
        return [line for line in self.gateway.lines if marker in line]

    def assert_nothing_leaked(self) -> None:
        for upstream in self.upstreams.values():
            for request in upstream.requests:
                for name in ("Authorization", "X-Client-Authorization"):
                    for value in request.header_values(name):
                        token = value.partition(" ")[2] or value
                        if len(token) >= 20:  # shorter is no token: a false hit, not a leak
                            self.tokens.add(token)
        flowlog = self.flowlog.read_text(encoding="utf-8") if self.flowlog.exists() else ""
        found = leaks(
            {"mitmdump output": self.gateway.output, "flow log": flowlog},
            [self.client_secret, self.old_secret, self.gateway_secret, *self.tokens],
        )
        assert not found, f"credentials shown: {found}"


def lab_config(
    upstreams: Mapping[str, Upstream], emulator: StsEmulator, flowlog: Path, metrics_port: int
) -> str:
    def at(route: str) -> list[str]:
        return [f"127.0.0.1:{upstreams[route].port}"]

    client = {"env": CLIENT_ENV}
    routes = [
        {
            "name": "observe",
            "hosts": at("observe"),
            "verify": {"secret": client, "audience": "dynamic", "enforce": False},
        },
        {"name": "enforce", "hosts": at("enforce"), "verify": {"secret": client, "enforce": True}},
        {
            "name": "jwks",
            "hosts": at("jwks"),
            "verify": {
                "jwks": emulator.url,  # the issuer URL: /.well-known/jwks.json is appended
                "audience": JWKS_AUDIENCE,
                "issuer": emulator.issuer,
                "enforce": True,
            },
        },
        {
            "name": "both",
            "hosts": at("both"),
            "inbound": "keep-as:X-Client-Authorization",
            "verify": {"secret": client, "enforce": True},
            "token": {
                "type": "hmac",
                "secret": {"env": GATEWAY_ENV},
                "lifetime": LIFETIME,
                "audience": "dynamic",
            },
        },
    ]
    config = {
        "version": 1,
        "unmatched": "reject",
        "flowlog": str(flowlog),
        "metrics": f"127.0.0.1:{metrics_port}",
        "routes": routes,
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@pytest.fixture(scope="module")
def lab_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifyLab]:
    tmp = tmp_path_factory.mktemp("verify")
    upstreams = {name: Upstream() for name in ROUTES}
    factory = GatewayFactory(tmp)
    flowlog = tmp / "flows.jsonl"
    client_secret, old_secret, gateway_secret = new_secret(), new_secret(), new_secret()
    with pytest.MonkeyPatch.context() as mp, StsEmulator() as emulator:
        # boto3 in this process talks to the loopback emulator, never through a proxy.
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            mp.delenv(var, raising=False)
        try:
            for upstream in upstreams.values():
                upstream.start()
                upstream.respond(200, {"Content-Type": "text/plain"}, "ok\n")  # no echo
            env = {CLIENT_ENV: client_secret, GATEWAY_ENV: gateway_secret}
            gateway, metrics_port = start_with_metrics(
                factory, lambda port: lab_config(upstreams, emulator, flowlog, port), env=env
            )
            lab = VerifyLab(
                factory=factory,
                gateway=gateway,
                metrics_port=metrics_port,
                emulator=emulator,
                upstreams=upstreams,
                flowlog=flowlog,
                client_secret=client_secret,
                old_secret=old_secret,
                gateway_secret=gateway_secret,
            )
            yield lab
            factory.stop_all()
            lab.assert_nothing_leaked()  # with everything mitmdump printed up to its exit
        finally:
            factory.stop_all()
            for upstream in upstreams.values():
                upstream.stop()


@pytest.fixture
def lab(lab_gateway: VerifyLab, request: pytest.FixtureRequest) -> VerifyLab:
    conftest.report_output(request, lab_gateway.factory)
    return lab_gateway


def sts_token(emulator: StsEmulator, audience: str, algorithm: str = "RS256") -> Bearer:
    """A token from the emulator's GetWebIdentityToken, asked for with boto3 as AWS users do."""
    client = boto3.client(
        "sts",
        endpoint_url=emulator.url,
        region_name=DEMO_REGION,
        aws_access_key_id="AKIDVERIFYE2E",
        aws_secret_access_key=new_secret(),
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    answer = client.get_web_identity_token(
        Audience=[audience], SigningAlgorithm=algorithm, DurationSeconds=300
    )
    return Bearer(answer["WebIdentityToken"])


def foreign_rs256(emulator: StsEmulator, kid: str | None) -> Bearer:
    """A token with the emulator's claims, signed by an RSA key its JWKS does not hold.

    `kid` None: the kid of the emulator's own RS256 key (so only the signature is wrong).
    """
    if kid is None:
        kid = next(k["kid"] for k in emulator.jwks()["keys"] if k.get("alg") == "RS256")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": emulator.issuer,
        "aud": JWKS_AUDIENCE,
        "sub": "arn:aws:iam::123456789012:role/impostor",
        "iat": now,
        "exp": now + 300,
    }
    return Bearer(jwt.encode(claims, key, "RS256", headers={"kid": kid}))


def assert_forwarded_as_sent(lab: VerifyLab, route: str, path: str, token: str | None) -> None:
    (received,) = lab.received(route, path)
    sent = [] if token is None else [f"Bearer {token}"]
    assert fingerprints(received.header_values("Authorization")) == fingerprints(sent)


def assert_rejected(response: Response, reason: str) -> None:
    assert response.status == 401, (response.status, response.text)
    assert response.text.startswith(f"token rejected ({reason}): "), response.text
    challenge = response.header("WWW-Authenticate") or ""
    assert challenge.startswith('Bearer error="invalid_token"'), challenge
    assert f'error_description="{reason}"' in challenge, challenge


# --------------------------------------------------------------------------- observe mode


def test_observe_mode_forwards_every_token_as_sent_and_logs_the_verdict(lab: VerifyLab) -> None:
    prefix = unique_path("observe")
    sent = {kind: lab.token(kind) for kind in ("valid", *BAD_CLIENT_TOKENS) if kind != "missing"}
    sent_or_none: dict[str, Bearer | None] = {**sent, "missing": None}

    responses = {k: lab.send("observe", f"{prefix}/{k}", t) for k, t in sent_or_none.items()}

    assert {k: r.status for k, r in responses.items()} == dict.fromkeys(sent_or_none, 200)
    for kind, token in sent_or_none.items():
        assert_forwarded_as_sent(lab, "observe", f"{prefix}/{kind}", token)
    records = {r["path"].rsplit("/", 1)[1]: r for r in lab.records(prefix, len(sent_or_none))}
    assert {k: r["verify"] for k, r in records.items()} == {
        "valid": "valid",
        "bad_signature": "bad_signature",
        "expired": "expired",
        "wrong_audience": "wrong_audience",
        "missing": "missing",
    }
    for record in records.values():
        assert (record["route"], record["action"], record["status"]) == (
            "observe",
            "passthrough",
            200,
        )
        assert record["headers_set"] == record["headers_removed"] == []
    # How a drifted client is found: the token's kid against the checked secret, both by
    # fingerprint.
    drift = records["bad_signature"]["verify_detail"]
    assert f"kid {fingerprint(lab.old_secret)}" in drift, drift
    assert f"secret {fingerprint(lab.client_secret)}" in drift, drift
    assert "drift" in drift, drift
    assert "expired" in records["expired"]["verify_detail"]
    wrong = records["wrong_audience"]["verify_detail"]
    assert "https://another-service.example" in wrong, wrong
    assert f"expected {DYNAMIC_AUDIENCE}" in wrong, wrong
    assert "Authorization" in records["missing"]["verify_detail"]


def test_observe_mode_verdicts_are_counted_by_route_result_and_reason(lab: VerifyLab) -> None:
    prefix = unique_path("observe-metrics")
    kinds = ["valid", "valid", "bad_signature", "expired", "wrong_audience"]
    before = lab.scrape()

    for n, kind in enumerate(kinds):
        assert lab.send("observe", f"{prefix}/{n}", lab.token(kind)).status == 200
    assert lab.send("observe", f"{prefix}/missing", None).status == 200
    lab.records(prefix, len(kinds) + 1)
    after = lab.scrape()

    assert verify_counts(before, after, "observe") == {
        "valid": 2,
        "bad_signature": 1,
        "expired": 1,
        "wrong_audience": 1,
        "missing": 1,
    }
    labels = {"route": "observe", "result": "invalid", "reason": "bad_signature"}
    assert after.get(VERIFY_METRIC, **labels) >= 1


def test_observe_mode_warns_about_an_invalid_client_token_once_a_minute(lab: VerifyLab) -> None:
    prefix = unique_path("observe-warn")
    drifted = [lab.token("bad_signature") for _ in range(3)]

    for n, token in enumerate(drifted):
        assert lab.send("observe", f"{prefix}/{n}", token).status == 200
    lab.records(prefix, len(drifted))
    # mitmdump prints a flow's line once the addon's hooks ran for it: after the last
    # request's line, every warning the three could print is in the output.
    lab.gateway.wait_for_output(re.escape(f"{prefix}/{len(drifted) - 1}") + "$")

    (warning,) = lab.warnings("observe", "bad_signature")
    assert "observe mode, forwarded" in warning, warning
    assert fingerprint(lab.old_secret) in warning, warning
    assert fingerprint(lab.client_secret) in warning, warning


# --------------------------------------------------------------------------- enforce mode


def test_enforce_mode_forwards_a_valid_token_unchanged(lab: VerifyLab) -> None:
    path = unique_path("enforce-valid")
    token = lab.token("valid")
    before = lab.scrape()

    response = lab.send("enforce", path, token)

    assert response.status == 200, response.text
    assert_forwarded_as_sent(lab, "enforce", path, token)
    (record,) = lab.records(path, 1)
    assert (record["verify"], record["action"], record["status"]) == ("valid", "passthrough", 200)
    assert verify_counts(before, lab.scrape(), "enforce") == {"valid": 1}


@pytest.mark.parametrize("kind", ["bad_signature", "expired", "missing"])
def test_enforce_mode_answers_401_and_never_contacts_the_upstream(
    lab: VerifyLab, kind: str
) -> None:
    path = unique_path(f"enforce-{kind}")
    token = None if kind == "missing" else lab.token(kind)
    upstream = lab.upstreams["enforce"]
    contacted = upstream.count
    before = lab.scrape()

    response = lab.send("enforce", path, token)

    assert_rejected(response, kind)
    (record,) = lab.records(path, 1)
    assert (record["route"], record["action"], record["status"]) == ("enforce", "rejected", 401)
    assert record["verify"] == kind
    assert verify_counts(before, lab.scrape(), "enforce") == {kind: 1}
    assert upstream.count == contacted, "a rejected client token reached the upstream"
    if kind == "bad_signature":
        assert f"kid {fingerprint(lab.old_secret)}" in response.text, response.text
    warning = lab.gateway.wait_for_output(rf"authgw: route enforce: client token {kind}: .*")
    assert "rejected with 401" in warning.group(0), warning.group(0)


# --------------------------------------------------------------------------- JWKS


@pytest.mark.parametrize("algorithm", ["RS256", "ES384"])
def test_jwks_route_accepts_a_token_the_sts_emulator_issued(lab: VerifyLab, algorithm: str) -> None:
    path = unique_path(f"jwks-{algorithm}")
    token = sts_token(lab.emulator, JWKS_AUDIENCE, algorithm)

    response = lab.send("jwks", path, token)

    assert response.status == 200, response.text
    assert_forwarded_as_sent(lab, "jwks", path, token)
    (record,) = lab.records(path, 1)
    assert (record["verify"], record["action"]) == ("valid", "passthrough")


@pytest.mark.parametrize(
    ("kid", "reason"),
    [("not-in-the-jwks", "unknown_kid"), (None, "bad_signature")],
    ids=["foreign_kid", "emulator_kid"],
)
def test_jwks_route_rejects_a_token_signed_by_a_key_not_in_the_jwks(
    lab: VerifyLab, kid: str | None, reason: str
) -> None:
    path = unique_path(f"jwks-{reason}")
    token = foreign_rs256(lab.emulator, kid)
    upstream = lab.upstreams["jwks"]
    contacted = upstream.count

    response = lab.send("jwks", path, token)

    assert_rejected(response, reason)
    (record,) = lab.records(path, 1)
    assert (record["verify"], record["action"], record["status"]) == (reason, "rejected", 401)
    assert upstream.count == contacted, "a token the JWKS cannot vouch for reached the upstream"


def test_jwks_route_rejects_an_emulator_token_for_another_audience(lab: VerifyLab) -> None:
    path = unique_path("jwks-audience")
    token = sts_token(lab.emulator, "https://some-other-service.example")
    contacted = lab.upstreams["jwks"].count

    response = lab.send("jwks", path, token)

    assert_rejected(response, "wrong_audience")
    assert JWKS_AUDIENCE in response.text, response.text
    assert lab.upstreams["jwks"].count == contacted


# --------------------------------------------------------------------------- verify and inject


def test_verify_and_inject_gives_the_upstream_both_tokens(lab: VerifyLab) -> None:
    path = unique_path("both")
    client = lab.token("valid")
    forged = Bearer(new_secret())  # a client may not set the keep-as header itself
    lab.tokens.add(forged)

    response = lab.send("both", path, client, {"X-Client-Authorization": f"Bearer {forged}"})

    assert response.status == 200, response.text
    (received,) = lab.received("both", path)
    (value,) = received.header_values("Authorization")
    scheme, _, injected = value.partition(" ")
    assert scheme == "Bearer"
    injected = Bearer(injected)
    assert fingerprint(injected) != fingerprint(client)
    try:
        header, claims = verify_jwt(
            injected, lab.gateway_secret, "HS256", audience=DYNAMIC_AUDIENCE
        )
    except jwt.PyJWTError as e:
        # from None: PyJWT's frames hold the token, and pytest prints frame arguments.
        raise AssertionError(f"token {fingerprint(injected)}: {type(e).__name__}") from None
    assert header["kid"] == fingerprint(lab.gateway_secret)
    assert claims["exp"] - claims["iat"] == LIFETIME
    assert fingerprints(received.header_values("X-Client-Authorization")) == [
        fingerprint(f"Bearer {client}")
    ]
    (record,) = lab.records(path, 1)
    assert (record["verify"], record["action"], record["token_source"]) == (
        "valid",
        "injected",
        "hmac",
    )
    assert set(record["headers_set"]) == {"Authorization", "X-Client-Authorization"}


def test_verify_and_inject_refuses_a_drifted_client_before_minting(lab: VerifyLab) -> None:
    path = unique_path("both-drifted")
    contacted = lab.upstreams["both"].count

    response = lab.send("both", path, lab.token("bad_signature"))

    assert_rejected(response, "bad_signature")
    assert lab.upstreams["both"].count == contacted
    (record,) = lab.records(path, 1)
    assert (record["verify"], record["action"], record["kid"]) == (
        "bad_signature",
        "rejected",
        None,
    )
    assert record["headers_set"] == [], "a token was injected for a refused client"
