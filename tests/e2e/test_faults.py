"""Fault matrix, end to end: a real mitmdump with authgw while STS or an upstream misbehaves.

One gateway serves the module (regular proxy mode, `unmatched: reject`, metrics on a
loopback port, the STS emulator in this process). Every fault case has a route of its
own, with an upstream of its own (so its own host:port, cache key and metric labels),
which keeps a case's cache cold and its failures unremembered without restarting
mitmdump. Each case is checked the same way:

- what the client saw (status; `X-Authgw-Error` where the gateway itself answered 502,
  and its absence where mitmproxy did);
- how many STS calls the emulator answered (botocore retries Throttling and 5xx once
  with the default `max_attempts: 2`; the other classes are not retried);
- that every request the case's upstream recorded carries a token that verifies for
  that route and audience (or that there are none);
- which metric samples of the case's route moved, and by how much (a /metrics scrape
  before and after, parsed with prometheus_client's own parser);
- that the gateway still serves the healthy route afterwards.

Tokens are compared by fingerprint and never reach a failure message.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authgw.emulator import StsEmulator
from tests.e2e import conftest
from tests.e2e.clients import Response, direct_request, proxy_request, wait_until
from tests.e2e.harness import Gateway, GatewayFactory, start_with_metrics
from tests.e2e.helpers import fingerprint, leaks, new_secret, read_flowlog, verify_jwt
from tests.e2e.sts_helpers import (
    TokenVerifier,
    abort,
    backoff_window,
    bearer_token,
    closed_loopback_port,
    new_lines,
    sts_gateway_env,
)
from tests.e2e.upstreams import RecordedRequest, Upstream

SECRET_ENV = "AUTHGW_E2E_FAULTS_SECRET"
LIFETIME = 300
ERROR_BACKOFF = 1.0
STS_LATENCY = 2.0  # the emulator's latency in the timeout case; the route's read_timeout is 0.5
HANG_CLIENT_TIMEOUT = 1.0
# A JWT (header and claims are base64url JSON objects), e.g. a token minted for a request
# that never reached an upstream: mitmdump's output must not show one.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
RESET_BODY_SENT, RESET_BODY_ANNOUNCED = 100, 1000


# --------------------------------------------------------------------------- metrics

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def scrape(port: int) -> dict[SampleKey, float]:
    """Every counter, histogram count and histogram sum on /metrics, by (name, labels)."""
    resp = direct_request(port, "GET", "/metrics", timeout=5)
    assert resp.status == 200, resp.text
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name.endswith(("_total", "_count", "_sum")):
                samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def _sample_key(short: str, route: str, source: str) -> SampleKey:
    """The sample a case's expectation names in short, e.g. "fetch error Throttling"."""
    kind, _, rest = short.partition(" ")
    labels: dict[str, str] = {"route": route}
    if kind == "fetch":  # "fetch ok" | "fetch error CLASS"
        result, _, error_class = rest.partition(" ")
        name = "authgw_token_fetch_total"
        labels.update(source=source, result=result, error_class=error_class)
    elif kind == "outcome":
        name, labels["outcome"] = "authgw_requests_total", rest
    elif kind == "hit":
        name = "authgw_token_cache_hits_total"
    elif kind == "miss":
        name = "authgw_token_cache_misses_total"
    elif kind == "upstream":  # "upstream ERROR_TYPE": one observation of the histogram
        name, labels["error_type"] = "authgw_upstream_request_duration_seconds_count", rest
    elif kind == "rejected":
        name, labels["status"] = "authgw_upstream_auth_rejections_total", rest
    else:
        raise ValueError(short)
    return name, frozenset(labels.items())


def route_deltas(
    before: Mapping[SampleKey, float], after: Mapping[SampleKey, float], route: str
) -> dict[SampleKey, float]:
    """The counters and histogram counts of `route` that changed between two scrapes."""
    moved = {}
    for key, value in after.items():
        name, labels = key
        if ("route", route) in labels and not name.endswith("_sum"):
            delta = value - before.get(key, 0.0)
            if delta:
                moved[key] = delta
    return moved


def show(samples: Mapping[SampleKey, float]) -> list[str]:
    return sorted(
        f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels) if k != 'route')}}} {value:g}"
        for (name, labels), value in samples.items()
    )


# --------------------------------------------------------------------------- raw upstream


class ResettingUpstream:
    """Answers every request with headers and part of the body, then resets the connection.

    `Content-Length` announces RESET_BODY_ANNOUNCED bytes; RESET_BODY_SENT are sent, then
    the socket is closed with SO_LINGER 0 (a TCP RST). The request head is recorded.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._heads: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, name="resetting-upstream")

    def __enter__(self) -> ResettingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            heads = list(self._heads)
        return [_parse_head(h, self.port) for h in heads]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                self._answer(conn)
            except OSError:
                pass
            finally:
                abort(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 1 << 20:
            chunk = conn.recv(65536)
            if not chunk:
                return
            head += chunk
        with self._lock:
            self._heads.append(head.partition(b"\r\n\r\n")[0])
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {RESET_BODY_ANNOUNCED}\r\n\r\n".encode()
            + b"p" * RESET_BODY_SENT
        )
        time.sleep(0.2)  # let the gateway read what was sent before the reset discards it


def _parse_head(head: bytes, port: int) -> RecordedRequest:
    line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = line.split(" ", 2)
    headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)]
    return RecordedRequest(method, path, headers, b"", port)


# --------------------------------------------------------------------------- the lab


@dataclass
class FaultLab:
    factory: GatewayFactory
    gateway: Gateway
    metrics_port: int
    emulator: StsEmulator
    verifier: TokenVerifier
    secret: str
    flowlog: Path
    upstreams: dict[str, Any]  # route -> Upstream | ResettingUpstream
    targets: dict[str, str]  # route -> base URL of its upstream
    tokens: set[str] = field(default_factory=set)  # every token an upstream received
    mark: int = 0

    def get(self, route: str, path: str, timeout: float = 10.0) -> Response:
        return proxy_request(self.gateway.port, "GET", self.targets[route] + path, timeout=timeout)

    def output(self) -> str:
        return new_lines(self.gateway.lines, self.mark)

    def settled_sts_calls(self, timeout: float = STS_LATENCY + 3) -> int:
        wait_until(lambda: self.emulator.in_flight == 0, timeout, message="STS calls to end")
        return self.emulator.call_count

    def check_healthy(self) -> None:
        healthy = self.upstreams["healthy"]
        count = healthy.count
        resp = self.get("healthy", "/healthy", timeout=5)
        assert resp.status == 200, f"healthy route: {resp.status} {resp.text}\n{self.output()}"
        assert healthy.count == count + 1
        self.check_tokens("healthy", [healthy.last])

    def check_tokens(self, route: str, requests: list[RecordedRequest]) -> None:
        """Each request carries exactly one token, valid for `route` and its audience."""
        for request in requests:
            token = bearer_token(request)
            self.tokens.add(token)
            if route in STS_AUDIENCES:
                self.verifier.verify(token, audience=[STS_AUDIENCES[route]], algorithm="RS256")
            else:
                header, claims = verify_jwt(
                    token, self.secret, "HS256", audience="http://127.0.0.1"
                )
                assert header["kid"] == fingerprint(self.secret)
                assert claims["exp"] - claims["iat"] == LIFETIME


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Seen:
    """What the client saw for one request: an answer, or no answer at all."""

    status: int | None
    error_class: str | None = None  # X-Authgw-Error
    body: str = ""

    @classmethod
    def of(cls, resp: Response) -> Seen:
        return cls(resp.status, resp.header("X-Authgw-Error"), resp.text)


Driver = Callable[[FaultLab, "Case"], list[Seen]]


@dataclass(frozen=True)
class Case:
    route: str
    drive: Driver
    answers: Callable[[list[Seen]], list[tuple[int | None, str | None]]]
    metrics: Callable[[list[Seen]], dict[str, int]]
    sts_calls: int | None = None  # None: an hmac route, STS is never asked
    forwarded: int = 0
    fault: tuple[str, int | None] | None = None  # the emulator answers this code (times)
    sts_latency: float = 0.0
    extra: Callable[[FaultLab, Case, dict[SampleKey, float]], None] | None = None

    def __str__(self) -> str:
        return self.route


def one_request(lab: FaultLab, case: Case) -> list[Seen]:
    return [Seen.of(lab.get(case.route, "/fault"))]


def until_recovered(lab: FaultLab, case: Case) -> list[Seen]:
    """Ask every 50 ms until a 200 (at most 5 s): STS throttles, then answers."""
    seen: list[Seen] = []
    started = time.monotonic()
    while not seen or seen[-1].status != 200:
        assert time.monotonic() - started < 5, f"no recovery: {seen[-3:]}\n{lab.output()}"
        seen.append(Seen.of(lab.get(case.route, f"/recover/{len(seen)}")))
        time.sleep(0.05)
    # The source is asked again only once each backoff window has passed.
    windows = sum(backoff_window(ERROR_BACKOFF, k) for k in range(1, THROTTLED_TIMES + 1))
    elapsed = time.monotonic() - started
    assert elapsed >= windows * 0.9, f"recovered after {elapsed:.2f}s, inside the backoff"
    return seen


def rejected_then_refetched(lab: FaultLab, case: Case) -> list[Seen]:
    """200, then the upstream answers 401 to the same (cached) token, then 200 again."""
    upstream = lab.upstreams[case.route]
    upstream.respond(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, path="/denied")
    seen = [Seen.of(lab.get(case.route, "/ok"))]
    calls = lab.emulator.call_count
    seen.append(Seen.of(lab.get(case.route, "/denied")))
    assert lab.emulator.call_count == calls, "a cached token was not used for the 2nd request"
    seen.append(Seen.of(lab.get(case.route, "/ok")))
    assert lab.emulator.call_count == calls + 1, "the rejected token was not replaced by a fetch"
    first, denied, after = (fingerprint(bearer_token(r)) for r in upstream.requests)
    assert first == denied, "the first token was not cached"
    assert after != denied, "the token the upstream rejected was injected again"
    return seen


def hangs(lab: FaultLab, case: Case) -> list[Seen]:
    """The upstream accepts and never answers.

    mitmproxy 11 has no upstream read timeout to set (only a hard-coded 600 s inactivity
    timeout), so what a user sees is bounded by the client's own timeout: no answer at
    all within HANG_CLIENT_TIMEOUT, while the gateway keeps serving other routes. When
    the client gives up, the flow ends as an error and is timed as one.
    """
    upstream = lab.upstreams[case.route]
    upstream.delay(30)  # ended early when the upstream stops at teardown
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        pending = pool.submit(lab.get, case.route, "/hang", HANG_CLIENT_TIMEOUT)
        upstream.wait_for_count(1, timeout=HANG_CLIENT_TIMEOUT)
        lab.check_healthy()  # served while the hung request is still waiting
        assert not pending.done(), "the hung request ended before its client gave up"
        wait([pending], timeout=HANG_CLIENT_TIMEOUT + 5)
        assert pending.done(), "the client's own timeout did not end the request"
        error = pending.exception()
        assert isinstance(error, TimeoutError), f"the client got {error or pending.result()}"
    assert time.monotonic() - started < HANG_CLIENT_TIMEOUT + 2
    return [Seen(None)]


def hang_is_timed_until_the_client_gave_up(
    lab: FaultLab, case: Case, moved: dict[SampleKey, float]
) -> None:
    name = "authgw_upstream_request_duration_seconds_sum"
    sums = {k: v for k, v in scrape(lab.metrics_port).items() if k[0] == name}
    sums = {k: v for k, v in sums.items() if ("route", case.route) in k[1]}
    assert sum(sums.values()) >= HANG_CLIENT_TIMEOUT * 0.9, sums


def reset_is_logged(lab: FaultLab, case: Case, moved: dict[SampleKey, float]) -> None:
    lab.gateway.wait_for_output(r"peer closed connection|[Cc]onnection reset")
    records = [r for r in read_flowlog(lab.flowlog) if r["route"] == case.route]
    assert len(records) == 1, records
    assert records[0]["status"] != 200, "a reset mid-body was logged as a complete 200"


def mitmproxy_502(seen: list[Seen]) -> list[tuple[int | None, str | None]]:
    """mitmproxy's own 502 (no X-Authgw-Error): the gateway had a token, the upstream failed."""
    for s in seen:
        assert not s.body.startswith("token unavailable"), s.body
    return [(502, None)]


THROTTLED_TIMES = 3
STS_ERRORS = {
    # error class -> STS calls for one request with the default max_attempts (2)
    "AccessDenied": 1,
    "OutboundWebIdentityFederationDisabledException": 1,
    "Throttling": 2,
    "SessionDurationEscalationException": 1,
    "JWTPayloadSizeExceededException": 1,
    "ExpiredToken": 1,
    "InvalidClientTokenId": 1,
    "InternalFailure": 2,
    "ServiceUnavailable": 2,
}


def _sts_error_case(code: str, calls: int) -> Case:
    return Case(
        route=f"sts_{_snake(code)}",
        drive=one_request,
        answers=lambda seen: [(502, code)],
        metrics=lambda seen: {f"fetch error {code}": 1, "miss": 1, "outcome token_unavailable": 1},
        sts_calls=calls,
        fault=(code, None),
    )


def _snake(code: str) -> str:
    """AccessDenied -> access_denied, JWTPayloadSize... -> jwt_payload_size..."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", code).lower()


CASES: list[Any] = [
    *(_sts_error_case(code, calls) for code, calls in STS_ERRORS.items()),
    Case(
        route="sts_timeout",  # read_timeout 0.5, max_attempts 1
        drive=one_request,
        answers=lambda seen: [(502, "timeout")],
        metrics=lambda seen: {"fetch error timeout": 1, "miss": 1, "outcome token_unavailable": 1},
        sts_calls=1,
        sts_latency=STS_LATENCY,
    ),
    Case(
        route="sts_transport",  # endpoint_url: a closed loopback port
        drive=one_request,
        answers=lambda seen: [(502, "transport")],
        metrics=lambda seen: {
            "fetch error transport": 1,
            "miss": 1,
            "outcome token_unavailable": 1,
        },
        sts_calls=0,
    ),
    Case(
        route="sts_recovers",  # max_attempts 1: one STS call per fetch
        drive=until_recovered,
        answers=lambda seen: [(502, "Throttling")] * (len(seen) - 1) + [(200, None)],
        metrics=lambda seen: {
            "fetch error Throttling": THROTTLED_TIMES,
            "fetch ok": 1,
            "miss": len(seen),
            "outcome token_unavailable": len(seen) - 1,
            "outcome injected": 1,
            "upstream none": 1,
        },
        sts_calls=THROTTLED_TIMES + 1,
        forwarded=1,
        fault=("Throttling", THROTTLED_TIMES),
    ),
    Case(
        route="upstream_refused",  # a closed loopback port
        drive=one_request,
        answers=mitmproxy_502,
        metrics=lambda seen: {
            "fetch ok": 1,
            "miss": 1,
            "outcome injected": 1,
            "upstream connection_refused": 1,
        },
    ),
    Case(
        route="upstream_hangs",
        drive=hangs,
        answers=lambda seen: [(None, None)],
        # mitmproxy ends the flow with "Client disconnected.": error_type unknown.
        metrics=lambda seen: {
            "fetch ok": 1,
            "miss": 1,
            "outcome injected": 1,
            "upstream unknown": 1,
        },
        forwarded=1,
        extra=hang_is_timed_until_the_client_gave_up,
    ),
    pytest.param(
        Case(
            route="upstream_resets",
            drive=one_request,
            answers=mitmproxy_502,
            metrics=lambda seen: {
                "fetch ok": 1,
                "miss": 1,
                "outcome injected": 1,
                "upstream unknown": 1,
            },
            forwarded=1,
            extra=reset_is_logged,
        ),
        id="upstream_resets",
    ),
    Case(
        route="sts_rejected_401",
        drive=rejected_then_refetched,
        answers=lambda seen: [(200, None), (401, None), (200, None)],
        metrics=lambda seen: {
            "fetch ok": 2,
            "miss": 2,
            "hit": 1,
            "outcome injected": 3,
            "upstream none": 3,
            "rejected 401": 1,
        },
        sts_calls=2,
        forwarded=3,
    ),
]


def _case(param: Any) -> Case:
    return param.values[0] if hasattr(param, "values") else param  # pytest.param(Case)


STS_AUDIENCES = {
    c.route: f"https://{c.route.replace('_', '-')}.faults.example"
    for c in map(_case, CASES)
    if c.sts_calls is not None
}
STS_SETTINGS: dict[str, dict[str, Any]] = {
    "sts_timeout": {"read_timeout": 0.5, "max_attempts": 1},
    "sts_transport": {"connect_timeout": 0.5, "max_attempts": 1},  # endpoint_url set at start
    "sts_recovers": {"max_attempts": 1},
}


def _config(lab_targets: dict[str, str], transport_port: int, flowlog: Path) -> str:
    routes: list[dict[str, Any]] = []
    for route, url in lab_targets.items():
        token: dict[str, Any]
        if route in STS_AUDIENCES:
            token = {
                "type": "sts",
                "audience": [STS_AUDIENCES[route]],
                **STS_SETTINGS.get(route, {}),
            }
            if route == "sts_transport":
                token["endpoint_url"] = f"http://127.0.0.1:{transport_port}"
        else:
            token = {
                "type": "hmac",
                "secret": {"env": SECRET_ENV},
                "lifetime": LIFETIME,
                "audience": "dynamic",
            }
        routes.append({"name": route, "hosts": [url.removeprefix("http://")], "token": token})
    config = {
        "version": 1,
        "unmatched": "reject",
        "cache": {"error_backoff": ERROR_BACKOFF},
        "flowlog": str(flowlog),
        "routes": routes,
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    tmp = tmp_path_factory.mktemp("faults")
    secret = new_secret()
    with ExitStack() as stack, pytest.MonkeyPatch.context() as mp:
        # The JWKS client in this process must not go through a proxy either.
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            mp.delenv(var, raising=False)
        emulator = stack.enter_context(StsEmulator())
        upstreams: dict[str, Any] = {"healthy": stack.enter_context(Upstream())}
        for route in (_case(p).route for p in CASES):
            if route == "upstream_resets":
                upstreams[route] = stack.enter_context(ResettingUpstream())
            elif route != "upstream_refused":
                upstreams[route] = stack.enter_context(Upstream())
        targets = {route: up.url for route, up in upstreams.items()}
        targets["upstream_refused"] = f"http://127.0.0.1:{closed_loopback_port()}"
        flowlog = tmp / "flows.jsonl"
        config = _config(targets, closed_loopback_port(), flowlog)
        env = {**sts_gateway_env(emulator.url, tmp), SECRET_ENV: secret}
        factory = GatewayFactory(tmp)
        stack.callback(factory.stop_all)  # before the upstreams stop
        gateway, metrics_port = _start_with_metrics(factory, config, env)
        lab = FaultLab(
            factory=factory,
            gateway=gateway,
            metrics_port=metrics_port,
            emulator=emulator,
            verifier=TokenVerifier(emulator.jwks_url, emulator.issuer),
            secret=secret,
            flowlog=flowlog,
            upstreams=upstreams,
            targets=targets,
        )
        yield lab
        factory.stop_all()
        texts = {"mitmdump output": gateway.output, "flow log": flowlog.read_text()}
        found = leaks(texts, [secret, *lab.tokens])
        assert not found, f"credentials printed: {found}"


def _start_with_metrics(
    factory: GatewayFactory, config: str, env: Mapping[str, str | None]
) -> tuple[Gateway, int]:
    """A gateway with metrics on a loopback port found free (retried if taken meanwhile).
    -v: mitmdump prints every request's headers, so a token left unredacted on an error
    path (refused, reset, hung upstream) would show in its output."""
    return start_with_metrics(
        factory,
        lambda port: config,
        env=env,
        extra_args=lambda port: ["-v", "--set", f"authgw_metrics=127.0.0.1:{port}"],
    )


@pytest.fixture
def lab(fault_lab: FaultLab, request: pytest.FixtureRequest) -> Iterator[FaultLab]:
    """The shared lab with a healthy emulator and nothing in flight."""
    wait_until(lambda: fault_lab.emulator.in_flight == 0, STS_LATENCY + 3, message="STS calls")
    fault_lab.emulator.reset()
    fault_lab.emulator.clear_calls()
    fault_lab.mark = len(fault_lab.gateway.lines)
    conftest.report_output(request, fault_lab.factory)
    yield fault_lab
    fault_lab.emulator.reset()


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fault_matrix(lab: FaultLab, case: Case) -> None:
    route, upstream = case.route, lab.upstreams.get(case.route)
    before = scrape(lab.metrics_port)
    if case.fault is not None:
        lab.emulator.fail_with(*case.fault)
    if case.sts_latency:
        lab.emulator.set_latency(case.sts_latency)

    seen = case.drive(lab, case)
    sts_waiting = lab.emulator.in_flight  # STS calls still waiting out their latency

    # What the client saw.
    got = [(s.status, s.error_class) for s in seen]
    assert got == case.answers(seen), f"{got}\n{lab.output()}"
    for s in seen:
        if s.error_class is not None:
            assert s.body.startswith(f"token unavailable (route {route}: {s.error_class})")
    if case.sts_latency:
        # Order, not milliseconds: the 502 came while STS still waited out its latency.
        assert sts_waiting == 1, f"{sts_waiting} STS calls waiting at the 502: no read timeout"

    # STS calls, counted where they arrive.
    if case.sts_calls is not None:
        assert lab.settled_sts_calls() == case.sts_calls, [c.result for c in lab.emulator.calls]

    # Nothing reached the upstream without its token.
    received = upstream.requests if upstream is not None else []
    assert len(received) == case.forwarded, [r.path for r in received]
    lab.check_tokens(route, received)

    # The gateway still serves a healthy route.
    lab.check_healthy()

    # The metrics of this route that moved, and nothing else of it.
    want = {
        _sample_key(k, route, "sts" if case.sts_calls is not None else "hmac"): v
        for k, v in case.metrics(seen).items()
    }
    observations = sum(v for (name, _), v in want.items() if name.endswith("_count"))

    def settled() -> dict[SampleKey, float] | None:
        moved = route_deltas(before, scrape(lab.metrics_port), route)
        counted = sum(v for (name, _), v in moved.items() if name.endswith("_count"))
        return moved if counted >= observations else None

    moved = wait_until(settled, 5, message=f"{observations} upstream observation(s) of {route}")
    timing = {k: v for k, v in moved.items() if k[0].endswith("_count")}
    counters = {k: v for k, v in moved.items() if k not in timing}
    assert show(counters) == show({k: v for k, v in want.items() if k[0].endswith("_total")})
    if case.extra is not None:
        case.extra(lab, case, moved)
    found = leaks({"mitmdump output": lab.gateway.output}, [lab.secret, *lab.tokens])
    assert not found, f"credentials printed: {found}"
    assert not JWT.search(lab.gateway.output), "a JWT in mitmdump's output"
    want_timing = {k: v for k, v in want.items() if k[0].endswith("_count")}
    if show(timing) != show(want_timing):
        raise AssertionError(f"upstream timing {show(timing)}, want {show(want_timing)}")
