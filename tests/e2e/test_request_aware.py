"""Tokens that fit the request, end to end: claim templates and one retry on 401,
through a real mitmdump.

One gateway serves the module:
- `debug`: an hmac route whose claims take `${header:X-Debug-User}`, `${host}` and
  `${method}`, with `cache.max_entries: 50`;
- `rotating`/`rotating_plain`: hmac routes whose secret comes from a command
  (`cat FILE`), in front of an upstream that accepts only tokens signed with the secret it
  holds now; `rotating` has `retry_on_401: true`;
- `refusing`: a static token with `retry_on_401` in front of an upstream that answers 401
  to everything.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.e2e import conftest
from tests.e2e.clients import direct_request, proxy_request
from tests.e2e.harness import Gateway, GatewayFactory, start_with_metrics
from tests.e2e.helpers import bearer_token, leaks, new_secret, read_flowlog, wait_for_records
from tests.e2e.test_observability import Scrape, scrape
from tests.e2e.upstreams import Upstream


class KeyHolder(ThreadingHTTPServer):
    """An upstream that accepts an HS256 token only if signed with the secret it holds now:
    200 (echoing the token's claims), else 401. Counts what it saw."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KeyHolderHandler)
        self.secret = ""
        self.seen: list[tuple[str, int]] = []  # (path, status)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def statuses(self, path: str) -> list[int]:
        with self.lock:
            return [status for p, status in self.seen if p == path]


class _KeyHolderHandler(BaseHTTPRequestHandler):
    server: KeyHolder
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, self.server.secret, algorithms=["HS256"])
            status, answer = 200, json.dumps({"claims": claims, "body": body.decode()})
        except jwt.InvalidTokenError:
            status, answer = 401, "bad token"
        with self.server.lock:
            self.server.seen.append((self.path, status))
        data = answer.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST


@dataclass(repr=False)
class Lab:
    gateway: Gateway
    factory: GatewayFactory
    metrics_port: int
    flowlog: Path
    secret_file: Path
    secrets: list[str]
    debug: Upstream
    refusing: Upstream
    holder: KeyHolder
    plain_holder: KeyHolder
    extra: list[str] = field(default_factory=list)

    def scrape(self) -> Scrape:
        return scrape(self.metrics_port)

    def rotate(self) -> str:
        """A new secret, at the upstreams and in the file the command reads."""
        secret = new_secret()
        self.secrets.append(secret)
        self.secret_file.write_text(secret)
        self.holder.secret = self.plain_holder.secret = secret
        return secret


def config(lab_dir: Path, lab: dict[str, Any], flowlog: Path, metrics_port: int) -> str:
    command = f"cat {shlex.quote(str(lab['secret_file']))}"
    kept = {"cmd": command, "refresh": 300, "timeout": 5}

    def hmac(**token: Any) -> dict[str, Any]:
        return {"type": "hmac", "secret": kept, "lifetime": 300, **token}

    routes = [
        {
            "name": "debug",
            "hosts": [f"127.0.0.1:{lab['debug'].port}"],
            "token": {
                "type": "hmac",
                "secret": {"env": "TEMPLATE_SECRET"},
                "lifetime": 300,
                "claims": {
                    "sub": "${header:X-Debug-User}",
                    "host": "${host}",
                    "method": "${method}",
                    "team": "core",
                },
            },
        },
        {
            "name": "rotating",
            "hosts": [f"127.0.0.1:{lab['holder'].port}"],
            "retry_on_401": True,
            "token": hmac(claims={"sub": "svc"}),
        },
        {
            "name": "rotating_plain",
            "hosts": [f"127.0.0.1:{lab['plain_holder'].port}"],
            "token": hmac(claims={"sub": "svc"}),
        },
        {
            "name": "refusing",
            "hosts": [f"127.0.0.1:{lab['refusing'].port}"],
            "retry_on_401": True,
            "token": {"type": "static", "value": {"env": "REFUSED_TOKEN"}},
        },
    ]
    return json.dumps(
        {
            "version": 1,
            "cache": {"max_entries": 50},
            "flowlog": str(flowlog),
            "metrics": f"127.0.0.1:{metrics_port}",
            "routes": routes,
        }
    )


TEMPLATE_SECRET = new_secret()
REFUSED_TOKEN = "refused-" + new_secret()[:32]


@pytest.fixture(scope="module")
def lab_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("request_aware")
    factory = GatewayFactory(tmp)
    flowlog = tmp / "flows.jsonl"
    secret_file = tmp / "rotating.secret"
    holder, plain_holder = KeyHolder(), KeyHolder()
    with Upstream() as debug, Upstream() as refusing:
        refusing.respond(401, {"WWW-Authenticate": "Bearer"}, "no\n")
        holder.thread.start()
        plain_holder.thread.start()
        try:
            parts = {
                "debug": debug,
                "refusing": refusing,
                "holder": holder,
                "plain_holder": plain_holder,
                "secret_file": secret_file,
            }
            first = new_secret()
            secret_file.write_text(first)
            holder.secret = plain_holder.secret = first
            env = {"TEMPLATE_SECRET": TEMPLATE_SECRET, "REFUSED_TOKEN": REFUSED_TOKEN}
            # map_remote moves /mr/ paths: a resend must not be moved twice
            gateway, metrics_port = start_with_metrics(
                factory,
                lambda port: config(tmp, parts, flowlog, port),
                env=env,
                extra_args=lambda port: ["-v", "--map-remote", "|/mr/|/mr/x/"],
            )
            lab = Lab(
                gateway=gateway,
                factory=factory,
                metrics_port=metrics_port,
                flowlog=flowlog,
                secret_file=secret_file,
                secrets=[first],
                debug=debug,
                refusing=refusing,
                holder=holder,
                plain_holder=plain_holder,
            )
            yield lab
            factory.stop_all()
            needles = [TEMPLATE_SECRET, REFUSED_TOKEN, *lab.secrets, *lab.extra]
            texts = {"mitmdump output": gateway.output, "flow log": flowlog.read_text()}
            assert not leaks(texts, needles)
        finally:
            factory.stop_all()
            for server in (holder, plain_holder):
                server.shutdown()
                server.server_close()


@pytest.fixture
def lab(lab_gateway: Lab, request: pytest.FixtureRequest) -> Lab:
    conftest.report_output(request, lab_gateway.factory)
    return lab_gateway


def test_a_templated_claim_carries_the_requests_user_and_its_header_is_removed(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.debug.port}/templated/alice"
    resp = proxy_request(lab.gateway.port, "PUT", url, {"X-Debug-User": "alice"}, b"{}")
    assert resp.status == 200
    got = lab.debug.last
    assert got.header("X-Debug-User") is None
    token = bearer_token(got.header("Authorization"))
    lab.extra.append(token)
    claims = jwt.decode(token, TEMPLATE_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["host"], claims["method"]) == ("alice", "127.0.0.1", "PUT")
    assert claims["team"] == "core"
    [record] = wait_for_records(lab.flowlog, "/templated/alice", 1)
    assert "X-Debug-User" in record["headers_removed"] and record["action"] == "injected"


def test_a_missing_template_input_is_400_and_nothing_is_forwarded(lab: Lab) -> None:
    before = lab.debug.count
    url = f"http://127.0.0.1:{lab.debug.port}/templated/nobody"
    resp = proxy_request(lab.gateway.port, "GET", url)
    assert resp.status == 400
    assert resp.text == "missing claim input X-Debug-User\n"
    assert resp.header("X-Authgw-Error") == "missing_claim_input"
    twice = proxy_request(
        lab.gateway.port, "GET", url, [("X-Debug-User", "a"), ("X-Debug-User", "b")]
    )
    assert (twice.status, twice.text) == (400, "bad claim input X-Debug-User: sent 2 times\n")
    assert lab.debug.count == before


def test_many_templated_users_stay_within_max_entries(lab: Lab) -> None:
    users = 300
    for i in range(users):
        url = f"http://127.0.0.1:{lab.debug.port}/many/{i}"
        resp = proxy_request(lab.gateway.port, "GET", url, {"X-Debug-User": f"user-{i}"})
        assert resp.status == 200, i
    metrics = lab.scrape()
    assert metrics.get("authgw_token_cache_entries") <= 50
    assert metrics.get("authgw_token_cache_evictions_total") >= users - 50
    status = direct_request(lab.metrics_port, "GET", "/status")
    assert status.json()["cache"]["entries"] <= 50


def test_after_a_key_rotation_the_client_sees_the_retry_answer(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.holder.port}"
    assert proxy_request(lab.gateway.port, "POST", f"{url}/warm", body=b"warm").status == 200
    before = lab.scrape()
    lab.rotate()  # the upstream now wants the new secret; the gateway holds a stale token
    resp = proxy_request(lab.gateway.port, "POST", f"{url}/rotated", body=b'{"n": 1}')
    assert resp.status == 200, resp.text
    assert resp.json()["body"] == '{"n": 1}'  # the resend carried the client's body
    assert lab.holder.statuses("/rotated") == [401, 200]
    [record] = wait_for_records(lab.flowlog, "/rotated", 1)
    assert record["retried"] is True and record["status"] == 200
    after = lab.scrape()
    assert after.get("authgw_upstream_retries_total", route="rotating", result="200") == (
        before.get("authgw_upstream_retries_total", route="rotating", result="200") + 1
    )
    assert after.total("authgw_requests_total", route="rotating") == (
        before.total("authgw_requests_total", route="rotating") + 1  # one client request
    )
    fetched = after.total("authgw_token_fetch_total", route="rotating", result="ok")
    assert fetched - before.total("authgw_token_fetch_total", route="rotating", result="ok") == 1


def test_without_retry_on_401_the_client_sees_the_401(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.plain_holder.port}"
    assert proxy_request(lab.gateway.port, "POST", f"{url}/plain-warm").status == 200
    lab.rotate()
    first = proxy_request(lab.gateway.port, "POST", f"{url}/plain-rotated")
    assert first.status == 401
    assert lab.plain_holder.statuses("/plain-rotated") == [401]
    [record] = wait_for_records(lab.flowlog, "/plain-rotated", 1)
    assert record["retried"] is False


def test_a_second_401_goes_to_the_client_and_is_not_retried_again(lab: Lab) -> None:
    lab.refusing.clear()
    url = f"http://127.0.0.1:{lab.refusing.port}/refused"
    resp = proxy_request(lab.gateway.port, "GET", url)
    assert resp.status == 401 and resp.text == "no\n"
    assert lab.refusing.count == 2  # the request and its one resend
    for got in lab.refusing.requests:
        assert bearer_token(got.header("Authorization")) == REFUSED_TOKEN
    [record] = wait_for_records(lab.flowlog, "/refused", 1)
    assert record["retried"] is True and record["status"] == 401
    assert len([r for r in read_flowlog(lab.flowlog) if r["path"] == "/refused"]) == 1
    metrics = lab.scrape()
    assert metrics.get("authgw_upstream_retries_total", route="refusing", result="401") == 1


def test_a_resend_goes_where_the_first_try_went(lab: Lab) -> None:
    lab.refusing.clear()
    url = f"http://127.0.0.1:{lab.refusing.port}/mr/a"
    assert proxy_request(lab.gateway.port, "GET", url).status == 401
    assert [r.path for r in lab.refusing.requests] == ["/mr/x/a", "/mr/x/a"]
