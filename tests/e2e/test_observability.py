"""Observability, end to end: /metrics and /status of a real mitmdump as traffic flows.

One gateway (`obs`) serves most of the module: regular proxy mode, `unmatched:
passthrough`, metrics on a loopback port of their own, the STS emulator in this
process. Every test drives routes of its own (each with its own upstream, so its own
cache key and counters) and compares scrapes taken before and after, so the tests do
not depend on each other's traffic or order. The 1,000-host test has a gateway of its
own in upstream-proxy mode, so that no host name is ever resolved: mitmdump hands
every request to a local recording "proxy" that answers 200.

Metrics are read with prometheus_client's own parser, so what is checked is what a
Prometheus server would see. Tokens and secrets are compared by fingerprint and
never end up in a failure message.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgw.emulator import DEMO_SECRET_ACCESS_KEY, StsEmulator
from scripts.gencerts import CertPaths
from tests.e2e import conftest
from tests.e2e.clients import Response, direct_request, proxy_request, wait_until
from tests.e2e.harness import Gateway, GatewayFactory, start_with_metrics
from tests.e2e.helpers import fingerprint, leaks, new_secret, verify_jwt
from tests.e2e.sts_helpers import TokenVerifier, bearer_token, closed_loopback_port, sts_gateway_env
from tests.e2e.upstreams import Upstream, server_tls_context

LIFETIME = 600
STS_AUDIENCE = {
    "denied": "https://denied.audience.test",
    "sts_401": "https://rejects.audience.test",
    "shown_failing": "https://failing.audience.test",
}
# Routes of the shared gateway that have an upstream of their own (host 127.0.0.1:PORT).
UPSTREAM_ROUTES = (
    "counted",
    "denied",
    "sts_401",
    "shown",
    "shown_static",
    "shown_failing",
    "untrusted_tls",  # https, with a certificate the gateway does not trust
)
FINGERPRINT = re.compile(r"sha256:[0-9a-f]{12}")
HOSTS = 1000
MAX_ENTRIES = 50
CLIENTS = 4


# --------------------------------------------------------------------------- scraping


@dataclass(frozen=True)
class Scrape:
    """One /metrics answer: its text and every sample by (sample name, labels)."""

    text: str
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly these labels (0 if it is not there yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of samples `name` whose labels include these."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def label_values(self) -> set[str]:
        """Every label value of every sample, bucket bounds (`le`) aside."""
        return {v for (_, ls) in self.samples for k, v in ls if k != "le"}


def scrape(port: int) -> Scrape:
    resp = direct_request(port, "GET", "/metrics", timeout=5)
    assert resp.status == 200, resp.text
    assert (resp.header("Content-Type") or "").startswith("text/plain"), resp.headers
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(resp.text, samples)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.get(name, **labels) - before.get(name, **labels)


def timed(before: Scrape, after: Scrape, route: str) -> dict[str, float]:
    """error_type -> how many more upstream requests of `route` the histogram counted."""
    name = "authgw_upstream_request_duration_seconds_count"
    moved: dict[str, float] = {}
    for (sample, labels), value in after.samples.items():
        label = dict(labels)
        if sample == name and label["route"] == route:
            grown = value - before.samples.get((sample, labels), 0.0)
            if grown:
                moved[label["error_type"]] = grown
    return moved


def get_status(port: int) -> tuple[dict[str, Any], str]:
    resp = direct_request(port, "GET", "/status", timeout=5)
    assert resp.status == 200, resp.text
    assert resp.header("Content-Type") == "application/json", resp.headers
    return resp.json(), resp.text


def check_jwt(token: str, secret: str, *, audience: str) -> dict[str, Any]:
    """The claims of an HS256 `token` after checking it; failures name its fingerprint only."""
    try:
        return verify_jwt(token, secret, "HS256", audience=audience)[1]
    except jwt.PyJWTError as e:
        # from None: PyJWT's frames hold the token, and pytest prints frame arguments.
        raise AssertionError(f"token {fingerprint(token)}: {type(e).__name__}: {e}") from None


def received_tokens(upstreams: Sequence[Upstream]) -> set[str]:
    return {
        value.partition(" ")[2] or value
        for upstream in upstreams
        for request in upstream.requests
        for value in request.header_values("Authorization")
    }


# --------------------------------------------------------------------------- shared gateway


@dataclass(repr=False)  # pytest prints fixtures of a failed test: no secrets in the repr
class Obs:
    factory: GatewayFactory
    gateway: Gateway
    metrics_port: int
    emulator: StsEmulator
    verifier: TokenVerifier
    upstreams: dict[str, Upstream]  # route -> its upstream; "plain" is matched by no route
    dead_port: int  # the `dead` route's port, where nothing listens
    secrets: dict[str, str]  # everything the gateway must never show
    tokens: set[str] = field(default_factory=set)  # every token an upstream received

    def __repr__(self) -> str:
        return f"<Obs proxy port {self.port}, metrics port {self.metrics_port}>"

    @property
    def port(self) -> int:
        return self.gateway.port

    def get(
        self, route: str, path: str = "/", headers: Mapping[str, str] | None = None
    ) -> Response:
        return proxy_request(self.port, "GET", self.upstreams[route].url + path, headers)

    def scrape(self) -> Scrape:
        return scrape(self.metrics_port)

    def sts_calls(self, route: str) -> int:
        audience = (STS_AUDIENCE[route],)
        return sum(1 for call in self.emulator.calls if call.audiences == audience)

    def harvest(self) -> set[str]:
        self.tokens |= received_tokens(list(self.upstreams.values()))
        return self.tokens

    def assert_nothing_leaked(self, texts: Mapping[str, str]) -> None:
        found = leaks(
            {**texts, "mitmdump output": self.gateway.output},
            [*self.secrets.values(), *self.harvest()],
        )
        assert not found, f"credentials shown: {found}"


def _obs_config(
    metrics_port: int, upstreams: Mapping[str, Upstream], dead_port: int, static_file: Path
) -> str:
    def at(name: str) -> list[str]:
        return [f"127.0.0.1:{upstreams[name].port}"]

    def hmac(env: str, **token: Any) -> dict[str, Any]:
        return {"type": "hmac", "secret": {"env": env}, "lifetime": LIFETIME, **token}

    def sts(route: str) -> dict[str, Any]:
        return {"type": "sts", "audience": [STS_AUDIENCE[route]], "max_attempts": 1}

    routes = [
        {"name": "counted", "hosts": at("counted"), "token": hmac("OBS_COUNTED")},
        {"name": "denied", "hosts": at("denied"), "token": sts("denied")},
        {"name": "sts_401", "hosts": at("sts_401"), "token": sts("sts_401")},
        {"name": "dead", "hosts": [f"127.0.0.1:{dead_port}"], "token": hmac("OBS_COUNTED")},
        {
            "name": "shown",
            "hosts": at("shown"),
            "token": hmac("OBS_SHOWN", audience="dynamic", claims={"team": "obs"}),
        },
        {
            "name": "shown_static",
            "hosts": at("shown_static"),
            "token": {"type": "static", "value": {"file": str(static_file)}},
        },
        {"name": "shown_failing", "hosts": at("shown_failing"), "token": sts("shown_failing")},
        {"name": "untrusted_tls", "hosts": at("untrusted_tls"), "token": hmac("OBS_COUNTED")},
    ]
    config = {
        "version": 1,
        "unmatched": "passthrough",
        "upstream_header": "X-Upstream-Host",
        "upstream_scheme": "http",
        "metrics": f"127.0.0.1:{metrics_port}",
        "routes": routes,
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@pytest.fixture(scope="module")
def obs_gateway(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Obs]:
    tmp = tmp_path_factory.mktemp("observability")
    factory = GatewayFactory(tmp)  # no upstream CA: the gateway trusts no test certificate
    upstreams = {
        name: Upstream(tls=server_tls_context(certs) if name == "untrusted_tls" else None)
        for name in (*UPSTREAM_ROUTES, "plain")
    }
    static_token = jwt.encode(
        {"sub": "obs-static", "exp": int(time.time()) + 7200}, new_secret(), algorithm="HS256"
    )
    static_file = tmp / "static.token"
    static_file.write_text(static_token + "\n", encoding="utf-8")
    secret_values = {
        "OBS_COUNTED": new_secret(),
        "OBS_SHOWN": new_secret(),
        "static token": static_token,
        "AWS secret key": DEMO_SECRET_ACCESS_KEY,
    }
    dead_port = closed_loopback_port()
    with pytest.MonkeyPatch.context() as mp, StsEmulator() as emulator:
        # The JWKS client in this process must not go through a proxy either.
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            mp.delenv(var, raising=False)
        try:
            for upstream in upstreams.values():
                upstream.start()
            env = {
                **sts_gateway_env(emulator.url, tmp),
                "OBS_COUNTED": secret_values["OBS_COUNTED"],
                "OBS_SHOWN": secret_values["OBS_SHOWN"],
            }
            gateway, metrics_port = start_with_metrics(
                factory,
                lambda port: _obs_config(port, upstreams, dead_port, static_file),
                env=env,
            )
            obs = Obs(
                factory=factory,
                gateway=gateway,
                metrics_port=metrics_port,
                emulator=emulator,
                verifier=TokenVerifier(emulator.jwks_url, emulator.issuer),
                upstreams=upstreams,
                dead_port=dead_port,
                secrets=secret_values,
            )
            yield obs
            factory.stop_all()
            obs.assert_nothing_leaked({})  # again, with everything printed up to the exit
        finally:
            factory.stop_all()
            for upstream in upstreams.values():
                upstream.stop()


@pytest.fixture
def obs(obs_gateway: Obs, request: pytest.FixtureRequest) -> Iterator[Obs]:
    """The shared gateway, with a fresh emulator (no faults, no calls) and fresh upstreams."""
    wait_until(lambda: obs_gateway.emulator.in_flight == 0, 10, message="leftover STS calls")
    obs_gateway.emulator.reset()
    obs_gateway.emulator.clear_calls()
    obs_gateway.harvest()
    for upstream in obs_gateway.upstreams.values():
        upstream.reset()
    conftest.report_output(request, obs_gateway.factory)
    yield obs_gateway
    obs_gateway.emulator.reset()


# --------------------------------------------------------------------------- 1. metrics move


def test_each_outcome_fetch_and_cache_lookup_is_counted(obs: Obs) -> None:
    before = obs.scrape()

    injected = [obs.get("counted", f"/c{i}") for i in range(3)]
    passthrough = [obs.get("plain", f"/p{i}") for i in range(2)]
    unknown_upstream = obs.get("plain", "/r", {"X-Upstream-Host": "nowhere.test"})
    obs.emulator.fail_with("AccessDenied")
    unavailable = obs.get("denied", "/d")

    assert [r.status for r in injected] == [200, 200, 200]
    assert [r.status for r in passthrough] == [200, 200]
    assert unknown_upstream.status == 403, unknown_upstream.text
    assert unavailable.status == 502, unavailable.text
    assert unavailable.header("X-Authgw-Error") == "AccessDenied"
    assert obs.upstreams["denied"].count == 0
    after = obs.scrape()
    _, status_text = get_status(obs.metrics_port)
    requests = "authgw_requests_total"
    assert delta(before, after, requests, route="counted", outcome="injected") == 3
    assert delta(before, after, requests, route="-", outcome="passthrough") == 2
    assert delta(before, after, requests, route="-", outcome="rejected") == 1
    assert delta(before, after, requests, route="denied", outcome="token_unavailable") == 1
    fetches = "authgw_token_fetch_total"
    ok = {"result": "ok", "error_class": ""}
    assert delta(before, after, fetches, route="counted", source="hmac", **ok) == 1
    assert delta(before, after, fetches, route="denied", source="sts", **ok) == 0
    denied = {"result": "error", "error_class": "AccessDenied"}
    assert delta(before, after, fetches, route="denied", source="sts", **denied) == 1
    assert delta(before, after, "authgw_token_cache_misses_total", route="counted") == 1
    assert delta(before, after, "authgw_token_cache_hits_total", route="counted") == 2
    assert delta(before, after, "authgw_token_cache_misses_total", route="denied") == 1
    assert delta(before, after, "authgw_token_cache_hits_total", route="denied") == 0
    assert obs.sts_calls("denied") == 1
    # Requests that reached an upstream are timed; those the gateway answered are not.
    assert timed(before, after, "counted") == {"none": 3}
    assert timed(before, after, "-") == {"none": 2}
    assert timed(before, after, "denied") == {}
    # One more token in the cache (the STS failure caches nothing), as /status shows.
    entries = "authgw_token_cache_entries"
    assert delta(before, after, entries) == 1
    assert after.get(entries) == len(json.loads(status_text)["tokens"])
    assert delta(before, after, "authgw_token_cache_evictions_total") == 0


def test_a_refused_upstream_connection_is_timed_as_an_error(obs: Obs) -> None:
    before = obs.scrape()

    resp = proxy_request(obs.port, "GET", f"http://127.0.0.1:{obs.dead_port}/dead")

    assert resp.status == 502
    assert resp.header("X-Authgw-Error") is None, "mitmproxy's 502, not the gateway's"
    after = obs.scrape()
    assert delta(before, after, "authgw_requests_total", route="dead", outcome="injected") == 1
    errors = timed(before, after, "dead")
    assert sum(errors.values()) == 1 and "none" not in errors, errors


def test_an_untrusted_upstream_certificate_is_timed_as_a_tls_error(obs: Obs) -> None:
    before = obs.scrape()

    resp = proxy_request(
        obs.port,
        "GET",
        obs.upstreams["untrusted_tls"].url + "/tls",
        ca_file=obs.gateway.ca_cert_path,
    )

    assert resp.status == 502
    assert resp.header("X-Authgw-Error") is None, "mitmproxy's 502, not the gateway's"
    assert obs.upstreams["untrusted_tls"].count == 0
    assert timed(before, obs.scrape(), "untrusted_tls") == {"tls": 1}


def test_a_refused_upstream_connection_has_error_type_connection_refused(obs: Obs) -> None:
    before = obs.scrape()

    resp = proxy_request(obs.port, "GET", f"http://127.0.0.1:{obs.dead_port}/dead")

    assert resp.status == 502
    assert timed(before, obs.scrape(), "dead") == {"connection_refused": 1}


def test_upstream_401_to_an_sts_token_is_counted_and_the_next_request_fetches_anew(
    obs: Obs,
) -> None:
    upstream = obs.upstreams["sts_401"]
    upstream.respond(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, path="/denied")
    audience = [STS_AUDIENCE["sts_401"]]
    before = obs.scrape()

    rejected = obs.get("sts_401", "/denied")
    calls_after_first = obs.emulator.call_count
    accepted = obs.get("sts_401", "/ok")
    calls_after_second = obs.emulator.call_count
    cached = obs.get("sts_401", "/ok")  # the fresh token is cached as usual

    assert (rejected.status, accepted.status, cached.status) == (401, 200, 200)
    assert (calls_after_first, calls_after_second) == (1, 2)
    assert obs.sts_calls("sts_401") == 2, "every call was for this route's audience"
    first, second, third = (bearer_token(r) for r in upstream.requests)
    assert fingerprint(first) != fingerprint(second), "the rejected token was injected again"
    assert fingerprint(second) == fingerprint(third)
    for token in (first, second):
        obs.verifier.verify(token, audience=audience, algorithm="RS256")
    after = obs.scrape()
    rejections = "authgw_upstream_auth_rejections_total"
    assert delta(before, after, rejections, route="sts_401", status="401") == 1
    assert after.total(rejections, route="sts_401") - before.total(rejections, route="sts_401") == 1
    ok = {"route": "sts_401", "source": "sts", "result": "ok", "error_class": ""}
    assert delta(before, after, "authgw_token_fetch_total", **ok) == 2
    assert delta(before, after, "authgw_token_cache_misses_total", route="sts_401") == 2
    assert delta(before, after, "authgw_token_cache_hits_total", route="sts_401") == 1


def test_a_401_to_a_request_without_an_injected_token_is_not_a_rejection(obs: Obs) -> None:
    obs.upstreams["plain"].respond(401, path="/private")
    before = obs.scrape()

    resp = obs.get("plain", "/private")

    assert resp.status == 401
    after = obs.scrape()
    rejections = "authgw_upstream_auth_rejections_total"
    assert after.total(rejections) == before.total(rejections)


# --------------------------------------------------------------------------- 3. /status


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def now_within(iso: str, seconds: float) -> bool:
    return abs(_parse_iso(iso) - time.time()) <= seconds


def test_status_shows_routes_cached_tokens_and_last_errors_but_no_secret(obs: Obs) -> None:
    served = obs.get("shown", "/s")
    served_static = obs.get("shown_static", "/s")
    obs.emulator.fail_with("AccessDenied")
    failed = obs.get("shown_failing", "/f")

    assert (served.status, served_static.status, failed.status) == (200, 200, 502)
    status, text = get_status(obs.metrics_port)
    metrics_text = obs.scrape().text
    routes = {r["name"]: r for r in status["routes"]}
    assert set(routes) == {"counted", "denied", "sts_401", "dead", *UPSTREAM_ROUTES}
    shown, static, failing = routes["shown"], routes["shown_static"], routes["shown_failing"]
    # Each route: its source and (hmac, static) the fingerprint of its secret.
    assert (shown["source"], static["source"], failing["source"]) == ("hmac", "static", "sts")
    assert FINGERPRINT.fullmatch(shown["secret_fingerprint"])
    assert shown["secret_fingerprint"] == fingerprint(obs.secrets["OBS_SHOWN"])
    assert FINGERPRINT.fullmatch(static["secret_fingerprint"])
    assert static["secret_fingerprint"] == fingerprint(obs.secrets["static token"])
    assert routes["counted"]["secret_fingerprint"] == fingerprint(obs.secrets["OBS_COUNTED"])
    # The last error of the route that failed, none for those that served.
    assert failing["last_error"] is not None
    assert failing["last_error"]["error_class"] == "AccessDenied"
    assert shown["last_error"] is None and static["last_error"] is None
    # The cached tokens, with what they were minted for and when they expire.
    token = bearer_token(obs.upstreams["shown"].last)
    claims = check_jwt(token, obs.secrets["OBS_SHOWN"], audience="http://127.0.0.1")
    [cached] = [t for t in status["tokens"] if t["route"] == "shown"]
    assert cached["audience"] == ["http://127.0.0.1"]
    assert cached["kid"] == fingerprint(obs.secrets["OBS_SHOWN"])
    assert _parse_iso(cached["expires_at"]) == claims["exp"]
    assert LIFETIME - 30 <= cached["seconds_left"] <= LIFETIME
    assert now_within(status["now"], 30)
    [cached_static] = [t for t in status["tokens"] if t["route"] == "shown_static"]
    static_exp = jwt.decode(obs.secrets["static token"], options={"verify_signature": False})["exp"]
    assert _parse_iso(cached_static["expires_at"]) == static_exp
    assert 7200 - 60 <= cached_static["seconds_left"] <= 7200
    assert not [t for t in status["tokens"] if t["route"] == "shown_failing"]
    # Never a secret or a token, anywhere in the document (nor in /metrics).
    obs.assert_nothing_leaked({"/status": text, "/metrics": metrics_text})


# --------------------------------------------------------------------------- 5. ports


def test_metrics_and_status_are_not_served_on_the_proxy_port(obs: Obs) -> None:
    served = scrape(obs.metrics_port)
    assert any(name.startswith("authgw_") for name, _ in served.samples)

    for path in ("/metrics", "/status"):
        resp = direct_request(obs.port, "GET", path, timeout=5)

        assert "authgw_" not in resp.text, f"{path} on the proxy port: {resp.status}"
        assert "secret_fingerprint" not in resp.text
        families = [f.name for f in text_string_to_metric_families(_prometheus_lines(resp.text))]
        assert not [n for n in families if n.startswith("authgw")]


def _prometheus_lines(text: str) -> str:
    """The lines of `text` that could be Prometheus samples (mitmproxy's HTML error is not)."""
    return "".join(
        line + "\n" for line in text.splitlines() if re.fullmatch(r"[a-zA-Z_:][\w:]* \S+", line)
    )


# --------------------------------------------------------------------------- 2. bounded labels


class _Sampler(threading.Thread):
    """Reads the cache entries gauge every `interval` seconds until stopped."""

    def __init__(self, metrics_port: int, interval: float = 0.05) -> None:
        super().__init__(name="metrics-sampler", daemon=True)
        self.metrics_port = metrics_port
        self.interval = interval
        self.values: list[float] = []
        self.errors: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.values.append(scrape(self.metrics_port).get("authgw_token_cache_entries"))
            except (OSError, AssertionError) as e:
                self.errors.append(f"{type(e).__name__}: {e}")


def _client(proxy_port: int, indexes: range, statuses: dict[int, int]) -> None:
    """One keep-alive client connection sending absolute-form requests for these hosts."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    try:
        for i in indexes:
            conn.request("GET", f"http://h{i}.example/bounded", headers={"Host": f"h{i}.example"})
            resp = conn.getresponse()
            resp.read()
            statuses[i] = resp.status
    finally:
        conn.close()


def test_a_thousand_hosts_keep_the_cache_and_the_labels_bounded(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    secret = new_secret()
    config = {
        "version": 1,
        "cache": {"max_entries": MAX_ENTRIES},
        "routes": [
            {
                "name": "any_host",
                "hosts": ["*"],
                "allow_http": True,
                "token": {"type": "hmac", "secret": {"env": "OBS_ANY"}, "audience": "dynamic"},
            }
        ],
    }
    # mitmdump hands every request to this "proxy" (a recording server answering 200 to
    # absolute-form requests): it never resolves h<N>.example nor connects anywhere else.
    with Upstream(http10=True) as proxy:
        gateway, metrics_port = start_with_metrics(
            gateway_factory,
            lambda port: json.dumps(config),
            env={"OBS_ANY": secret},
            extra_args=lambda port: [
                *("--mode", f"upstream:http://127.0.0.1:{proxy.port}"),
                *("--set", f"authgw_metrics=127.0.0.1:{port}"),
            ],
        )
        sampler = _Sampler(metrics_port)
        statuses: dict[int, int] = {}
        clients = [
            threading.Thread(
                target=_client, args=(gateway.port, range(k, HOSTS, CLIENTS), statuses)
            )
            for k in range(CLIENTS)
        ]
        sampler.start()
        try:
            for client in clients:
                client.start()
            for client in clients:
                client.join(60)
        finally:
            sampler.stopped.set()
            sampler.join(10)
        received = proxy.requests
        status, status_text = get_status(metrics_port)
        final = scrape(metrics_port)

    assert sorted(statuses) == list(range(HOSTS)), f"{len(statuses)} of {HOSTS} answered"
    assert set(statuses.values()) == {200}
    assert sorted(r.path for r in received) == sorted(
        f"http://h{i}.example/bounded" for i in range(HOSTS)
    )
    for request in received:  # each host got a token minted for it
        host = request.path.split("/")[2]
        check_jwt(bearer_token(request), secret, audience=f"http://{host}")
    # The cache stayed within its bound all along, and evicted all the rest.
    assert not sampler.errors, sampler.errors[:3]
    assert len(sampler.values) >= 5, "the run was too short to sample"
    assert max(sampler.values) <= MAX_ENTRIES
    assert final.get("authgw_token_cache_entries") == MAX_ENTRIES
    assert final.get("authgw_token_cache_evictions_total") == HOSTS - MAX_ENTRIES
    assert final.get("authgw_token_cache_misses_total", route="any_host") == HOSTS
    ok = {"route": "any_host", "source": "hmac", "result": "ok", "error_class": ""}
    assert final.get("authgw_token_fetch_total", **ok) == HOSTS
    assert final.get("authgw_requests_total", route="any_host", outcome="injected") == HOSTS
    assert len(status["tokens"]) == MAX_ENTRIES
    # Labels carry route names and fixed vocabularies, never a host or an audience.
    assert "example" not in final.text
    assert final.label_values() <= {"any_host", "hmac", "ok", "", "injected", "none"}
    assert not leaks(
        {"/metrics": final.text, "/status": status_text, "mitmdump output": gateway.output},
        [secret, *(bearer_token(r) for r in received)],
    )


def test_healthz_and_readyz_name_a_broken_route_until_it_recovers(obs: Obs) -> None:
    def get(path: str) -> tuple[int, str]:
        resp = direct_request(obs.metrics_port, "GET", path, timeout=5)
        return resp.status, resp.text

    assert get("/healthz") == (200, "ok\n")
    obs.emulator.fail_with("AccessDenied")
    assert obs.get("shown_failing", "/ready-1").status == 502
    status, text = get("/readyz")
    broken = json.loads(text)["broken"]
    assert status == 503 and {"route": "shown_failing", "error_class": "AccessDenied"} in broken
    assert "counted" not in {b["route"] for b in broken}
    obs.emulator.reset()
    wait_until(lambda: obs.get("shown_failing", "/ready-2").status == 200, 15)
    status, text = get("/readyz")
    assert "shown_failing" not in {b["route"] for b in json.loads(text)["broken"]}
