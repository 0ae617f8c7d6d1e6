"""Hot reload, end to end: config and secret changes reach a running mitmdump, no restart.

Each test starts its own gateway (the config file is what it changes) and keeps
traffic flowing through it from a background thread: one request every ~20 ms, each
with a numbered path, so the upstream's record says which token each request carried
and in which order. Then it changes a file the way an operator would (written whole
and renamed into place) and checks three things: the change is in use within
PICKUP seconds of the write, the tokens switch over once and never back, and no
request fails on the way.

Tokens and secrets are compared by fingerprint; none ends up in a failure message.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import jwt

from tests.e2e.clients import proxy_request, wait_until
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.helpers import fingerprint, leaks, new_secret, replace_file
from tests.e2e.sts_helpers import bearer_token
from tests.e2e.upstreams import Upstream

# The config file is polled once a second, secret and token files re-stat-ed at most
# once a second; 2 s leaves a second for a loaded machine.
PICKUP = 2.0
INTERVAL = 0.02  # between requests of the background traffic
SETTLE = 10  # requests to see through before and after each change
MAX_REQUESTS = 1500
MAX_SECONDS = 40.0


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class Sent:
    n: int
    started: float  # time.monotonic()
    status: int | None
    error: str | None = None


class Traffic:
    """GET `base_url`/traffic/<n> through the proxy every INTERVAL seconds, in a thread.

    Stops on `stop()`, after MAX_REQUESTS requests or after MAX_SECONDS.
    """

    def __init__(self, proxy_port: int, base_url: str) -> None:
        self.proxy_port = proxy_port
        self.base_url = base_url
        self._sent: list[Sent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        for n in range(MAX_REQUESTS):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            started = time.monotonic()
            try:
                resp = proxy_request(
                    self.proxy_port, "GET", f"{self.base_url}/traffic/{n}", timeout=5
                )
                sent = Sent(n, started, resp.status)
            except (OSError, http.client.HTTPException) as e:
                sent = Sent(n, started, None, type(e).__name__)
            with self._lock:
                self._sent.append(sent)
            self._stop.wait(INTERVAL)

    def stop(self) -> list[Sent]:
        self._stop.set()
        self._thread.join(10)
        return self.sent

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    def started_at(self, n: int) -> float:
        return self.sent[n].started

    def wait_for_more(self, count: int = SETTLE, timeout: float = 10.0) -> None:
        target = len(self.sent) + count
        wait_until(lambda: len(self.sent) >= target, timeout, message=f"{count} more requests")


class Tokens:
    """The tokens the upstream received from the traffic, labelled by `label(token)`."""

    def __init__(self, upstream: Upstream, label: Callable[[str], str]) -> None:
        self.upstream = upstream
        self._label = label
        self._labels: dict[str, str] = {}

    def label(self, token: str) -> str:
        if token not in self._labels:
            self._labels[token] = self._label(token)
        return self._labels[token]

    def by_request(self) -> list[tuple[int, str]]:
        """(request number, label), in the order the requests were sent."""
        found = []
        for request in self.upstream.requests:
            if m := re.fullmatch(r"/traffic/(\d+)", request.path):
                found.append((int(m.group(1)), self.label(bearer_token(request))))
        return sorted(found)

    def all(self) -> set[str]:
        return {bearer_token(r) for r in self.upstream.requests}

    def first_with(self, label: str) -> int | None:
        return next((n for n, got in self.by_request() if got == label), None)

    def wait_for(self, label: str, timeout: float = PICKUP + 3) -> int:
        """The number of the first request that carried a `label` token (waits for one)."""
        wait_until(
            lambda: self.first_with(label) is not None,
            timeout,
            interval=0.05,
            message=f"a {label} token",
        )
        first = self.first_with(label)
        assert first is not None
        return first


def phases(labelled: list[tuple[int, str]]) -> list[str]:
    """The labels in request order, with runs collapsed: [a, a, b, b, b] -> [a, b]."""
    runs: list[str] = []
    for _, label in labelled:
        if not runs or runs[-1] != label:
            runs.append(label)
    return runs


def assert_no_request_failed(sent: list[Sent], upstream: Upstream) -> None:
    failed = [(s.n, s.status, s.error) for s in sent if s.status != 200]
    assert not failed, f"{len(failed)} of {len(sent)} requests failed, first: {failed[:5]}"
    delivered = sum(1 for r in upstream.requests if r.path.startswith("/traffic/"))
    assert delivered == len(sent)


def assert_picked_up(traffic: Traffic, first_new: int, written_at: float, what: str) -> None:
    after = traffic.started_at(first_new) - written_at
    assert after <= PICKUP, f"{what} in use {after:.2f} s after the write"


# --------------------------------------------------------------------------- tokens


def hmac_label(secrets_by_name: Mapping[str, str]) -> Callable[[str], str]:
    """Labels an HS256 token `<secret name>/gen<gen>/life<exp - iat>` once it verifies.

    The secret is the one whose fingerprint is the token's kid; a token that does not
    verify with it is labelled `unverified <fingerprint>`.
    """
    by_kid = {fingerprint(value): name for name, value in secrets_by_name.items()}

    def label(token: str) -> str:
        kid = jwt.get_unverified_header(token).get("kid")
        name = by_kid.get(kid)
        if name is None:
            return f"unknown kid {kid}"
        try:
            claims = jwt.decode(token, secrets_by_name[name], algorithms=["HS256"])
        except jwt.PyJWTError:
            return f"unverified {fingerprint(token)}"
        return f"{name}/gen{claims.get('gen')}/life{claims['exp'] - claims['iat']}"

    return label


def hmac_route(
    name: str, upstream: Upstream, secret: Mapping[str, str], *, gen: int, lifetime: int = 300
) -> dict[str, Any]:
    return {
        "name": name,
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "token": {
            "type": "hmac",
            "secret": dict(secret),
            "claims": {"gen": gen},
            "lifetime": lifetime,
        },
    }


def config_text(*routes: dict[str, Any]) -> str:
    return json.dumps({"version": 1, "routes": list(routes)}, indent=2)  # JSON is YAML


def reloads(gateway: Gateway) -> int:
    return sum(1 for line in gateway.lines if "authgw: reloaded" in line)


def assert_nothing_leaked(gateway: Gateway, credentials: set[str]) -> None:
    found = leaks({"mitmdump output": gateway.output}, credentials)
    assert not found, f"credentials printed: {found}"


# --------------------------------------------------------------------------- 1. good change


def test_a_good_config_change_is_in_use_within_seconds_and_no_request_fails(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    secrets = {"A": new_secret(), "B": new_secret()}
    env = {"RELOAD_A": secrets["A"], "RELOAD_B": secrets["B"]}
    label = hmac_label(secrets)
    with Upstream() as steady_upstream:
        # `steady` is the same in every version: its cached token must survive reloads.
        steady = hmac_route("steady", steady_upstream, {"env": "RELOAD_A"}, gen=0)
        v1 = hmac_route("dash", upstream, {"env": "RELOAD_A"}, gen=1)
        v2 = hmac_route("dash", upstream, {"env": "RELOAD_A"}, gen=2, lifetime=600)
        v3 = hmac_route("dash", upstream, {"env": "RELOAD_B"}, gen=2, lifetime=600)
        gateway = gateway_factory(config_text(v1, steady), env=env)
        assert gateway.config_path is not None
        steady_before = proxy_request(gateway.port, "GET", f"{steady_upstream.url}/steady")
        tokens = Tokens(upstream, label)

        with Traffic(gateway.port, upstream.url) as traffic:
            traffic.wait_for_more()
            # Same secret and algorithm, so the same cache key: only dropping the route's
            # cached tokens lets the new claims through before the old token expires.
            written = time.monotonic()
            replace_file(gateway.config_path, config_text(v2, steady))
            claims_changed = tokens.wait_for("A/gen2/life600")
            traffic.wait_for_more()
            written_again = time.monotonic()
            replace_file(gateway.config_path, config_text(v3, steady))
            secret_changed = tokens.wait_for("B/gen2/life600")
            traffic.wait_for_more()
        sent = traffic.stop()
        steady_after = proxy_request(gateway.port, "GET", f"{steady_upstream.url}/steady")

        assert_no_request_failed(sent, upstream)
        assert phases(tokens.by_request()) == ["A/gen1/life300", "A/gen2/life600", "B/gen2/life600"]
        assert_picked_up(traffic, claims_changed, written, "the new claims")
        assert_picked_up(traffic, secret_changed, written_again, "the new secret")
        assert reloads(gateway) == 2
        assert (steady_before.status, steady_after.status) == (200, 200)
        first, second = (bearer_token(r) for r in steady_upstream.requests)
        assert fingerprint(first) == fingerprint(second), "an unchanged route lost its token"
        assert label(first) == "A/gen0/life300"
        assert_nothing_leaked(gateway, {*secrets.values(), *tokens.all(), first})


# --------------------------------------------------------------------------- 2. broken change

BROKEN_YAML = """\
version: 1
routes:
  - name: dash
    hosts: [127.0.0.1
    token: {type: hmac, secret: {env: RELOAD_A}, claims: {gen: 2}
"""


def test_a_broken_config_is_refused_and_traffic_keeps_the_running_one(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    secret = new_secret()
    label = hmac_label({"A": secret})
    v1 = hmac_route("dash", upstream, {"env": "RELOAD_A"}, gen=1)
    bad_algorithm = hmac_route("dash", upstream, {"env": "RELOAD_A"}, gen=2)
    bad_algorithm["token"]["algorithm"] = "HS999"
    v2 = hmac_route("dash", upstream, {"env": "RELOAD_A"}, gen=2)
    gateway = gateway_factory(config_text(v1), env={"RELOAD_A": secret})
    assert gateway.config_path is not None
    tokens = Tokens(upstream, label)

    with Traffic(gateway.port, upstream.url) as traffic:
        traffic.wait_for_more()
        replace_file(gateway.config_path, BROKEN_YAML)
        yaml_error = gateway.wait_for_output(r"the new config is invalid", timeout=PICKUP + 3)
        traffic.wait_for_more()
        replace_file(gateway.config_path, config_text(bad_algorithm))
        field_error = gateway.wait_for_output(r"routes\[0\]\.token\.algorithm", timeout=PICKUP + 3)
        # A second poll of the (still broken) file must not apply it either.
        time.sleep(1.2)
        traffic.wait_for_more()
        still_old = tokens.by_request()
        written = time.monotonic()
        replace_file(gateway.config_path, config_text(v2))
        fixed = tokens.wait_for("A/gen2/life300")
        traffic.wait_for_more()
    sent = traffic.stop()

    assert_no_request_failed(sent, upstream)
    assert gateway.returncode is None, "mitmdump exited"
    assert "not valid YAML" in yaml_error.string and "gateway.yaml:" in yaml_error.string
    assert "the new config is invalid; the running config stays" in field_error.string
    assert "routes[0].token.algorithm: is not one of" in field_error.string
    assert "HS999" not in field_error.string  # a config error never quotes a value
    assert {got for _, got in still_old} == {"A/gen1/life300"}
    assert phases(tokens.by_request()) == ["A/gen1/life300", "A/gen2/life300"]
    assert_picked_up(traffic, fixed, written, "the fixed config")
    assert reloads(gateway) == 1
    assert_nothing_leaked(gateway, {secret, *tokens.all()})


# --------------------------------------------------------------------------- 3. secret file


def test_a_rotated_secret_file_signs_the_next_tokens_without_a_restart(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    secrets = {"old": new_secret(), "new": new_secret()}
    label = hmac_label(secrets)
    secret_file = tmp_path / "dash.key"
    secret_file.write_text(secrets["old"] + "\n", encoding="utf-8")
    route = hmac_route("dash", upstream, {"file": str(secret_file)}, gen=1)
    gateway = gateway_factory(config_text(route))
    tokens = Tokens(upstream, label)

    with Traffic(gateway.port, upstream.url) as traffic:
        traffic.wait_for_more()
        written = time.monotonic()
        replace_file(secret_file, secrets["new"] + "\n")
        rotated = tokens.wait_for("new/gen1/life300")
        traffic.wait_for_more()
    sent = traffic.stop()

    assert_no_request_failed(sent, upstream)
    # Labelled "new" only if the kid is the new secret's fingerprint and it verifies.
    assert phases(tokens.by_request()) == ["old/gen1/life300", "new/gen1/life300"]
    assert_picked_up(traffic, rotated, written, "the new secret")
    assert reloads(gateway) == 0, "a secret file change is not a config reload"
    assert_nothing_leaked(gateway, {*secrets.values(), *tokens.all()})


# --------------------------------------------------------------------------- 4. static file


def test_a_rotated_static_token_file_is_injected_without_a_restart(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    values = {"old": f"static-{new_secret()}", "new": f"static-{new_secret()}"}
    names = {value: name for name, value in values.items()}
    token_file = tmp_path / "gateway.token"
    token_file.write_text(values["old"] + "\n", encoding="utf-8")
    route = {
        "name": "gateway",
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "token": {"type": "static", "value": {"file": str(token_file)}},
    }
    gateway = gateway_factory(config_text(route))
    tokens = Tokens(upstream, lambda token: names.get(token, f"unknown {fingerprint(token)}"))

    with Traffic(gateway.port, upstream.url) as traffic:
        traffic.wait_for_more()
        written = time.monotonic()
        replace_file(token_file, values["new"] + "\n")
        rotated = tokens.wait_for("new")
        traffic.wait_for_more()
    sent = traffic.stop()

    assert_no_request_failed(sent, upstream)
    assert phases(tokens.by_request()) == ["old", "new"]
    assert_picked_up(traffic, rotated, written, "the new token")
    assert_nothing_leaked(gateway, set(values.values()))


# --------------------------------------------------------------------------- 5. kept elsewhere


def test_a_secret_rotated_in_secrets_manager_signs_the_next_tokens_without_a_restart(
    gateway_factory: GatewayFactory, upstream: Upstream, moto_url: str
) -> None:
    secrets = {"old": new_secret(), "new": new_secret()}
    name = f"authgw-e2e/{uuid.uuid4().hex}"
    aws = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_PROFILE": None,
    }
    manager = boto3.client(
        "secretsmanager",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    manager.create_secret(Name=name, SecretString=json.dumps({"hmac": secrets["old"]}))
    secret = {"aws_secretsmanager": name, "field": "hmac", "refresh": 1}
    gateway = gateway_factory(config_text(hmac_route("dash", upstream, secret, gen=1)), env=aws)
    tokens = Tokens(upstream, hmac_label(secrets))

    with Traffic(gateway.port, upstream.url) as traffic:
        traffic.wait_for_more()
        written = time.monotonic()
        manager.put_secret_value(SecretId=name, SecretString=json.dumps({"hmac": secrets["new"]}))
        rotated = tokens.wait_for("new/gen1/life300")
        traffic.wait_for_more()
    sent = traffic.stop()

    assert_no_request_failed(sent, upstream)
    assert phases(tokens.by_request()) == ["old/gen1/life300", "new/gen1/life300"]
    assert_picked_up(traffic, rotated, written, "the rotated secret")
    assert reloads(gateway) == 0
    assert_nothing_leaked(gateway, {*secrets.values(), *tokens.all()})


def test_a_command_secret_is_reread_and_an_upstream_401_rereads_it_at_once(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    secrets = {"old": new_secret(), "new": new_secret()}
    kept = tmp_path / "kept.secret"
    kept.write_text(secrets["old"] + "\n", encoding="utf-8")
    # Re-read only hourly on its own: the 401 is what makes the gateway look again.
    secret = {"cmd": f"cat {kept}", "refresh": 3600}
    gateway = gateway_factory(config_text(hmac_route("dash", upstream, secret, gen=1)))
    label = hmac_label(secrets)

    first = proxy_request(gateway.port, "GET", f"{upstream.url}/one")
    assert first.status == 200 and label(bearer_token(upstream.last)) == "old/gen1/life300"
    replace_file(kept, secrets["new"] + "\n")
    upstream.respond(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, path="/two")
    assert proxy_request(gateway.port, "GET", f"{upstream.url}/two").status == 401
    wait_until(
        lambda: label(_token_for(gateway, upstream)) == "new/gen1/life300",
        5,
        message="a token signed with the re-read secret",
    )
    assert_nothing_leaked(
        gateway, {*secrets.values(), *{bearer_token(r) for r in upstream.requests}}
    )


def _token_for(gateway: Gateway, upstream: Upstream) -> str:
    assert proxy_request(gateway.port, "GET", f"{upstream.url}/three").status == 200
    return bearer_token(upstream.last)
