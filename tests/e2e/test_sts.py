"""End to end: the `type: sts` token source in a real mitmdump, against the local STS emulator.

One gateway serves the whole module. Every test has a route of its own (its own
upstream, so its own host and cache key), which keeps each test's cache cold and
its failures unremembered without restarting mitmdump. The emulator runs in this
process; between tests its faults and latency are reset and its call record
cleared, once no call is in flight any more.

STS calls are counted at the emulator, deliveries at the upstreams. Tokens are
compared by fingerprint, so none ends up in a failure message.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authgw.emulator import (
    DEMO_ACCESS_KEY_ID,
    DEMO_REGION,
    STS_CLAIM,
    CallRecord,
    StsEmulator,
)
from authgw.tokens import fingerprint
from tests.e2e.clients import Response, direct_request, proxy_request, wait_until
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.sts_helpers import (
    TokenVerifier,
    abort,
    backoff_window,
    bearer_token,
    by_path,
    closed_loopback_port,
    max_fetches,
    new_lines,
    send_then_disconnect,
    sts_gateway_env,
)
from tests.e2e.upstreams import Upstream

ERROR_BACKOFF = 1.0
REFRESH_AHEAD = 58
MIN_TTL = 5
DYNAMIC_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

LIST_AUDIENCE = ["https://api.one.example", "urn:authgw:two"]

# Route name -> its `token:` block (type sts implied). Each route gets its own upstream.
TOKENS: dict[str, dict[str, Any]] = {
    "claims_rs256_list": {
        "audience": LIST_AUDIENCE,
        "signing_algorithm": "RS256",
        "duration": 900,
        "tags": {"team": "payments", "env": "e2e"},
    },
    "claims_es384_dynamic": {
        "audience": "dynamic",
        "signing_algorithm": "ES384",
        "duration": 120,
        "tags": {"team": "search"},
    },
    "burst": {"audience": ["https://burst.example"]},
    "err_access_denied": {"audience": ["https://errors.example"]},
    "err_federation_disabled": {"audience": ["https://errors.example"]},
    "err_throttling": {"audience": ["https://errors.example"]},
    "err_session_duration": {"audience": ["https://errors.example"], "duration": 3600},
    "err_payload_size": {"audience": ["https://errors.example"], "tags": {"big": "x" * 200}},
    "err_timeout": {"audience": ["https://errors.example"], "read_timeout": 0.5, "max_attempts": 1},
    "err_transport": {
        "audience": ["https://errors.example"],
        "connect_timeout": 0.5,
        "max_attempts": 1,
        # filled in at start: a closed loopback port
        "endpoint_url": None,
    },
    "recovery": {"audience": ["https://recovery.example"], "max_attempts": 1},
    "backoff": {"audience": ["https://backoff.example"], "max_attempts": 1},
    "refresh": {"audience": ["https://refresh.example"], "duration": 60},
    "soak": {"audience": ["https://soak.example"], "duration": 60},
    "disconnect_first": {"audience": ["https://disconnect.example"]},
    "disconnect_waiter": {"audience": ["https://disconnect.example"]},
}

# (AWS error code, route, STS calls for one request, what the log line must say):
# botocore's standard mode retries Throttling once (default max_attempts 2), nothing else.
AWS_ERROR_CASES = [
    ("AccessDenied", "err_access_denied", 1, None),
    (
        "OutboundWebIdentityFederationDisabledException",
        "err_federation_disabled",
        1,
        "outbound identity federation",
    ),
    ("Throttling", "err_throttling", 2, None),
    ("SessionDurationEscalationException", "err_session_duration", 1, None),
    ("JWTPayloadSizeExceededException", "err_payload_size", 1, None),
]


@dataclass
class Stack:
    emulator: StsEmulator
    gateway: Gateway
    upstreams: dict[str, Upstream]  # route -> its upstream on 127.0.0.1
    dynamic_hosts: list[Upstream]  # the dynamic_hosts route's upstreams
    verifier: TokenVerifier
    flowlog: Path
    metrics_port: int
    mark: int = 0  # the gateway output line the current test began at

    def url(self, route: str, path: str = "/") -> str:
        return self.upstreams[route].url + path

    def get(self, url: str, timeout: float = 10.0) -> Response:
        return proxy_request(self.gateway.port, "GET", url, timeout=timeout)

    def output(self) -> str:
        """The gateway's output since this test began (for failure messages)."""
        return new_lines(self.gateway.lines, self.mark)

    def settled_calls(self, timeout: float = 5.0) -> list[CallRecord]:
        """The emulator's call record once no call is in flight (a call is recorded at its end)."""
        wait_until(lambda: self.emulator.in_flight == 0, timeout, message="STS calls to finish")
        return self.emulator.calls

    def metric(self, name: str, route: str) -> float:
        """A counter of the gateway's /metrics for `route` (0 before its first count)."""
        text = direct_request(self.metrics_port, "GET", "/metrics", timeout=5).text
        prefix = f'{name}{{route="{route}"}} '
        values = [
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        ]
        return values[0] if values else 0.0

    def flow_records(self, route: str) -> list[dict[str, Any]]:
        lines = self.flowlog.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if r["route"] == route]


def _config(
    upstreams: dict[str, Upstream], transport_port: int, flowlog: Path, metrics_port: int
) -> str:
    routes: list[dict[str, Any]] = []
    for name, settings in TOKENS.items():
        token = {"type": "sts", **settings}
        if name == "err_transport":
            token["endpoint_url"] = f"http://127.0.0.1:{transport_port}"
        # host:port patterns: every route is on 127.0.0.1, told apart by its upstream's port.
        routes.append(
            {"name": name, "hosts": [f"127.0.0.1:{upstreams[name].port}"], "token": token}
        )
    routes.append(
        {
            "name": "dynamic_hosts",
            "hosts": list(DYNAMIC_HOSTS),
            "token": {"type": "sts", "audience": "dynamic"},
        }
    )
    config = {
        "version": 1,
        "unmatched": "reject",
        "cache": {
            "refresh_ahead": REFRESH_AHEAD,
            "min_ttl": MIN_TTL,
            "error_backoff": ERROR_BACKOFF,
        },
        "flowlog": str(flowlog),
        "metrics": f"127.0.0.1:{metrics_port}",
        "routes": routes,
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sts")
    upstreams = {name: Upstream(http10=True) for name in TOKENS}
    hosts = [Upstream(host=h, http10=True) for h in DYNAMIC_HOSTS]
    factory = GatewayFactory(tmp)
    with pytest.MonkeyPatch.context() as mp, StsEmulator() as emulator:
        # The JWKS client in this process must not go through a proxy either.
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            mp.delenv(var, raising=False)
        try:
            for server in [*upstreams.values(), *hosts]:
                server.start()
            flowlog = tmp / "flows.jsonl"
            metrics_port = closed_loopback_port()
            gateway = factory.start(
                _config(upstreams, closed_loopback_port(), flowlog, metrics_port),
                env=sts_gateway_env(emulator.url, tmp),
            )
            yield Stack(
                emulator=emulator,
                gateway=gateway,
                upstreams=upstreams,
                dynamic_hosts=hosts,
                verifier=TokenVerifier(emulator.jwks_url, emulator.issuer),
                flowlog=flowlog,
                metrics_port=metrics_port,
            )
        finally:
            factory.stop_all()
            for server in [*upstreams.values(), *hosts]:
                server.stop()


@pytest.fixture
def sts(stack: Stack) -> Iterator[Stack]:
    """The shared stack with a fresh emulator: no faults, no latency, no recorded calls."""
    wait_until(lambda: stack.emulator.in_flight == 0, 10, message="leftover STS calls")
    stack.emulator.reset()
    stack.emulator.clear_calls()
    for server in [*stack.upstreams.values(), *stack.dynamic_hosts]:
        server.clear()
    stack.mark = len(stack.gateway.lines)
    yield stack
    stack.emulator.reset()


def _assert_token_unavailable(resp: Response, error_class: str, sts: Stack) -> None:
    assert resp.status == 502, f"status {resp.status}\n{sts.output()}"
    assert resp.text.startswith("token unavailable"), resp.text
    assert resp.header("X-Authgw-Error") == error_class, f"{resp.text}\n{sts.output()}"


# --------------------------------------------------------------------------- 1. claims


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("route", "audience"),
    [
        ("claims_rs256_list", LIST_AUDIENCE),
        ("claims_es384_dynamic", ["http://127.0.0.1"]),
    ],
)
def test_token_verifies_and_carries_what_the_route_asked_for(
    sts: Stack, route: str, audience: list[str]
) -> None:
    want = TOKENS[route]
    tags = want["tags"]

    resp = sts.get(sts.url(route, "/claims"))

    assert resp.status == 200, f"status {resp.status}: {resp.text}\n{sts.output()}"
    [delivered] = sts.upstreams[route].requests
    token = bearer_token(delivered)
    claims = sts.verifier.verify(token, audience=audience, algorithm=want["signing_algorithm"])
    assert claims["exp"] - claims["iat"] == want["duration"]
    assert claims[STS_CLAIM]["request_tags"] == tags

    [call] = sts.settled_calls()
    assert call.result == "OK"
    assert call.audiences == tuple(audience)
    assert call.algorithm == want["signing_algorithm"]
    assert call.duration == want["duration"]
    assert call.tags == tags
    assert (call.region, call.access_key_id) == (DEMO_REGION, DEMO_ACCESS_KEY_ID)


# --------------------------------------------------------------------------- 2. single flight


def test_concurrent_cold_requests_share_one_sts_call(sts: Stack) -> None:
    clients = 100
    sts.emulator.hold()  # the one STS call is answered only once every request waits on it
    barrier = threading.Barrier(clients)

    def one(i: int) -> int:
        barrier.wait(10)
        return sts.get(sts.url("burst", f"/burst/{i}"), timeout=30).status

    with ThreadPoolExecutor(max_workers=clients) as pool:
        pending = [pool.submit(one, i) for i in range(clients)]
        try:
            # Counts, not milliseconds: every request has missed the cache and waits.
            wait_until(
                lambda: sts.metric("authgw_token_cache_misses_total", "burst") >= clients,
                20,
                message="all requests waiting on the fetch",
            )
            assert sts.emulator.in_flight == 1, "more than one STS call for one audience"
        finally:
            sts.emulator.release()
        statuses = [f.result(timeout=30) for f in pending]

    assert statuses == [200] * clients, f"{sorted(set(statuses))}\n{sts.output()}"
    calls = sts.settled_calls()
    assert [c.result for c in calls] == ["OK"], f"{len(calls)} STS calls for one audience"
    assert sts.metric("authgw_token_cache_misses_total", "burst") == clients
    delivered = sts.upstreams["burst"].requests
    assert sorted(r.path for r in delivered) == sorted(f"/burst/{i}" for i in range(clients))
    tokens = {bearer_token(r) for r in delivered}
    assert len({fingerprint(t) for t in tokens}) == 1
    sts.verifier.verify(tokens.pop(), audience=["https://burst.example"], algorithm="RS256")


# --------------------------------------------------------------------------- 3. dynamic


def test_dynamic_audience_makes_one_call_per_host(sts: Stack) -> None:
    per_host = 4
    sts.emulator.set_latency(0.2)
    targets = [(up, n) for up in sts.dynamic_hosts for n in range(per_host)]

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        statuses = list(pool.map(lambda t: sts.get(f"{t[0].url}/dyn/{t[1]}").status, targets))

    assert statuses == [200] * len(targets), f"{statuses}\n{sts.output()}"
    calls = sts.settled_calls()
    assert sorted(c.audiences for c in calls) == [(f"http://{h}",) for h in DYNAMIC_HOSTS]
    assert {c.result for c in calls} == {"OK"}
    fingerprints = set()
    for up in sts.dynamic_hosts:
        delivered = up.requests
        assert len(delivered) == per_host, up.host
        tokens = {bearer_token(r) for r in delivered}
        assert len({fingerprint(t) for t in tokens}) == 1, up.host
        token = tokens.pop()
        sts.verifier.verify(token, audience=[f"http://{up.host}"], algorithm="RS256")
        fingerprints.add(fingerprint(token))
    assert len(fingerprints) == len(DYNAMIC_HOSTS)


# --------------------------------------------------------------------------- 4. error classes


@pytest.mark.parametrize(("code", "route", "expected_calls", "hint"), AWS_ERROR_CASES)
def test_aws_error_answers_502_with_its_class_and_never_reaches_upstream(
    sts: Stack, code: str, route: str, expected_calls: int, hint: str | None
) -> None:
    sts.emulator.fail_with(code)

    resp = sts.get(sts.url(route, "/err"))

    _assert_token_unavailable(resp, code, sts)
    assert sts.upstreams[route].count == 0
    calls = sts.settled_calls()
    assert [c.result for c in calls] == [code] * expected_calls
    logged = sts.gateway.wait_for_output(rf"route {route}: token fetch failed \({code}\)")
    if hint is not None:
        assert hint in logged.string, logged.string


def test_sts_slower_than_read_timeout_is_class_timeout(sts: Stack) -> None:
    sts.emulator.set_latency(2.0)  # read_timeout 0.5 (the default is 5), max_attempts 1

    resp = sts.get(sts.url("err_timeout", "/slow"))
    waiting = sts.emulator.in_flight

    _assert_token_unavailable(resp, "timeout", sts)
    # Order, not milliseconds: the 502 came while STS still waited out its latency.
    assert waiting == 1, f"{waiting} STS calls waiting at the 502: read_timeout not applied"
    assert sts.upstreams["err_timeout"].count == 0
    assert len(sts.settled_calls()) == 1  # max_attempts 1: no retry


def test_unreachable_sts_endpoint_is_class_transport(sts: Stack) -> None:
    started = time.monotonic()
    resp = sts.get(sts.url("err_transport", "/down"))

    _assert_token_unavailable(resp, "transport", sts)
    assert time.monotonic() - started < 3
    assert sts.upstreams["err_transport"].count == 0
    assert sts.emulator.call_count == 0
    sts.gateway.wait_for_output(r"route err_transport: token fetch failed \(transport\)")


# --------------------------------------------------------------------------- 5. recovery


def test_recovers_once_sts_does_and_the_backoff_window_passed(sts: Stack) -> None:
    route, failures = "recovery", 4
    sts.emulator.fail_with("AccessDenied")

    # Drive the failure count up to 4: the remembered window is then error_backoff (1 s).
    deadline = time.monotonic() + 5
    while sts.emulator.call_count < failures:
        assert time.monotonic() < deadline, f"{sts.emulator.call_count} STS calls"
        sent = time.monotonic()
        _assert_token_unavailable(sts.get(sts.url(route, "/failing")), "AccessDenied", sts)
        time.sleep(0.05)
    assert sts.emulator.call_count == failures
    assert backoff_window(ERROR_BACKOFF, failures) == ERROR_BACKOFF

    sts.emulator.reset()  # STS is healthy again
    # Inside the window the remembered error is answered without asking STS.
    _assert_token_unavailable(sts.get(sts.url(route, "/remembered")), "AccessDenied", sts)
    assert sts.emulator.call_count == failures

    ok = None
    while ok is None:
        assert time.monotonic() - sent < ERROR_BACKOFF + 3, "no success after the window"
        resp = sts.get(sts.url(route, "/recovered"))
        if resp.status == 200:
            ok = time.monotonic()
        else:
            _assert_token_unavailable(resp, "AccessDenied", sts)
            time.sleep(0.1)
    assert ok - sent >= ERROR_BACKOFF * 0.95, "asked STS again before the window ended"

    calls = sts.settled_calls()
    assert [c.result for c in calls] == ["AccessDenied"] * failures + ["OK"]
    [delivered] = sts.upstreams[route].requests
    assert delivered.path == "/recovered"
    sts.verifier.verify(
        bearer_token(delivered), audience=["https://recovery.example"], algorithm="RS256"
    )


# --------------------------------------------------------------------------- 6. backoff


def test_backoff_bounds_calls_to_a_failing_sts(sts: Stack) -> None:
    route, requests, pace = "backoff", 50, 0.08
    sts.emulator.fail_with("ServiceUnavailable")

    asked: list[int] = []  # the STS calls each request made
    started = time.monotonic()
    for i in range(requests):
        # A fixed schedule: one slow request does not stretch the run.
        time.sleep(max(0.0, started + i * pace - time.monotonic()))
        before = sts.emulator.call_count
        resp = sts.get(sts.url(route, f"/b/{i}"), timeout=5)
        asked.append(sts.emulator.call_count - before)  # a call is recorded before its answer
        _assert_token_unavailable(resp, "ServiceUnavailable", sts)
    elapsed = time.monotonic() - started

    assert sts.upstreams[route].count == 0
    calls = sts.settled_calls()
    # Counts, not milliseconds: a 502 either made the one STS call (max_attempts 1) or
    # came from the remembered failure without asking (or waiting on) STS.
    assert set(asked) <= {0, 1} and sum(asked) == len(calls), f"STS calls per request: {asked}"
    bound = max_fetches(elapsed, ERROR_BACKOFF)  # 6 in 4 s: windows 1/8, 1/4, 1/2, 1, 1 s
    assert len(calls) <= bound, f"{len(calls)} STS calls in {elapsed:.2f}s (bound {bound})"
    # ... and the source is asked again once each window ends: the 6th call is due at 2.9 s.
    assert len(calls) >= 6, f"{len(calls)} STS calls in {elapsed:.2f}s"
    gaps = [round(b.timestamp - a.timestamp, 3) for a, b in zip(calls, calls[1:], strict=False)]
    windows = [backoff_window(ERROR_BACKOFF, k) for k in range(1, len(calls))]
    # Call k+1 comes after the window failure k opened (doubling, capped at error_backoff),
    # and within a request or two of its end.
    assert all(w * 0.9 <= g <= w + 0.5 for g, w in zip(gaps, windows, strict=True)), (
        f"gaps {gaps} for windows {windows}"
    )


# --------------------------------------------------------------------------- 7. refresh-ahead


def test_short_lived_tokens_cost_one_sts_call_per_half_life_under_load(sts: Stack) -> None:
    """60 s tokens arriving with 36 s left (an STS clock 24 s behind) and refresh_ahead 58:
    refreshed half their life ahead, 6 s after they arrive; not on every request."""
    route, seconds, clients = "soak", 10.0, 4
    sts.emulator.set_clock_skew(24)
    served: list[int] = []
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            served.append(sts.get(sts.url(route, f"/soak/{n}/{i}"), timeout=5).status)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(10)
    calls = sts.settled_calls()
    assert set(served) == {200} and len(served) >= 50, f"{len(served)} requests served"
    # The first fetch, then one refresh 6 s later; a third may start as the run ends.
    assert 2 <= len(calls) <= 3, f"{len(calls)} STS calls for {len(served)} requests"


def test_refresh_ahead_replaces_the_token_without_blocking_requests(sts: Stack) -> None:
    route, held_requests = "refresh", 3
    # Tokens of 60 s that arrive with 32 s left (an STS clock 28 s behind): refreshed
    # half their life ahead, so a few seconds after they arrive.
    sts.emulator.set_clock_skew(28)
    upstream = sts.upstreams[route]

    started = time.monotonic()
    first = sts.get(sts.url(route, "/r/0"))
    assert first.status == 200, f"{first.status}\n{sts.output()}"
    assert sts.emulator.call_count == 1  # the cold one fetched
    # The refresh's STS call is answered only once requests were served while it waited:
    # order and counts, not milliseconds, show that requests do not wait on it.
    sts.emulator.hold()

    # Steady requests until a second token has been in use for a while (or 12 s).
    held = 0  # requests answered while the refresh's STS call was held
    i = 0
    try:
        while time.monotonic() - started < 12:
            i += 1
            resp = sts.get(sts.url(route, f"/r/{i}"), timeout=5)
            assert resp.status == 200, f"request {i}: {resp.status}\n{sts.output()}"
            if held < held_requests and sts.emulator.in_flight:
                # One refresh at a time, however many requests find the token due.
                assert sts.emulator.in_flight == 1, "overlapping refreshes"
                held += 1
                if held == held_requests:
                    sts.emulator.release()
            fps = [fingerprint(bearer_token(r)) for r in upstream.requests]
            if len(set(fps)) >= 2 and fps[-3:] == [fps[-1]] * 3:
                break
            time.sleep(0.1)
    finally:
        sts.emulator.release()

    assert held == held_requests, f"{held} requests answered while the refresh was held"
    delivered = upstream.requests
    fps = [fingerprint(bearer_token(r)) for r in delivered]
    order = list(dict.fromkeys(fps))
    assert len(order) >= 2, (
        f"one token across {len(fps)} requests in {time.monotonic() - started:.1f}s"
    )
    # Once a newer token is served the older one never comes back.
    assert [order.index(f) for f in fps] == sorted(order.index(f) for f in fps)
    for r in delivered[:: max(1, len(delivered) // 5)]:
        claims = sts.verifier.verify(
            bearer_token(r), audience=["https://refresh.example"], algorithm="RS256"
        )
        assert claims["exp"] - claims["iat"] == 60
    calls = sts.settled_calls()
    assert {c.result for c in calls} == {"OK"}
    assert len(calls) >= len(order)


# --------------------------------------------------------------------------- 8. disconnects


@pytest.mark.parametrize("who", ["first", "waiter"])
def test_a_client_that_goes_away_does_not_fail_the_others(sts: Stack, who: str) -> None:
    """`who` goes away: the client whose request started the fetch, or one that joined it."""
    route, others = f"disconnect_{who}", 4
    sts.emulator.hold()  # the one fetch is answered once every client waits on it

    def one(i: int) -> Response:
        return sts.get(sts.url(route, f"/ok/{i}"))

    def fetching() -> bool:
        return sts.emulator.in_flight == 1

    gone: socket.socket | None = None
    try:
        with ThreadPoolExecutor(max_workers=others) as pool:
            if who == "first":
                gone = send_then_disconnect(sts.gateway.port, sts.url(route, "/gone"))
                wait_until(fetching, 3, message="the STS call")
                futures = [pool.submit(one, i) for i in range(others)]
            else:
                futures = [pool.submit(one, 0)]
                wait_until(fetching, 3, message="the STS call")
                gone = send_then_disconnect(sts.gateway.port, sts.url(route, "/gone"))
                futures += [pool.submit(one, i) for i in range(1, others)]
            # Counts, not milliseconds: every request has missed the cache and waits.
            wait_until(
                lambda: sts.metric("authgw_token_cache_misses_total", route) >= others + 1,
                10,
                message="all requests waiting on the fetch",
            )
            in_flight = sts.emulator.in_flight
            assert in_flight == 1, f"{in_flight} STS calls in flight, not the one fetch"
            gone_port = gone.getsockname()[1]
            abort(gone)
            gone = None
            # The gateway saw the client go while the fetch was still held.
            sts.gateway.wait_for_output(rf"\[127\.0\.0\.1:{gone_port}\] client disconnect")
            sts.emulator.release()
            responses = [f.result(timeout=15) for f in futures]
    finally:
        sts.emulator.release()
        if gone is not None:
            abort(gone)

    assert [r.status for r in responses] == [200] * others, sts.output()
    assert len(sts.settled_calls()) == 1
    grouped = by_path(sts.upstreams[route].requests)
    assert {p: len(grouped.get(p, [])) for p in (f"/ok/{i}" for i in range(others))} == {
        f"/ok/{i}": 1 for i in range(others)
    }
    tokens = {bearer_token(r) for i in range(others) for r in grouped[f"/ok/{i}"]}
    assert len({fingerprint(t) for t in tokens}) == 1
    sts.verifier.verify(tokens.pop(), audience=["https://disconnect.example"], algorithm="RS256")
    assert "internal error" not in sts.output()
