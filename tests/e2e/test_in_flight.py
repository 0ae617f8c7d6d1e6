"""Tokens in flows that are still in flight: mitmweb's flow API while the upstream is slow,
and a WebSocket upgrade, through real mitmweb and mitmdump processes."""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import io
from mitmproxy.version import VERSION

from scripts.launcher import LOOPBACK_ANY_PORT, Mitmdump
from tests.e2e.clients import proxy_request, wait_until
from tests.e2e.harness import ADDON_SCRIPT, GatewayFactory, gateway_env
from tests.e2e.helpers import bearer_token, fingerprint, new_secret
from tests.e2e.upstreams import Upstream

pytestmark = pytest.mark.e2e

STATIC = "in-flight-static-" + new_secret()[:24]
SHOWN = f"Bearer <authgw redacted {fingerprint(STATIC)}>"
MITMWEB = (sys.executable, "-c", "from mitmproxy.tools.main import mitmweb; mitmweb()")
WEB_PASSWORD = "e2e-" + new_secret()[:16]
# mitmweb asks for a password (or a token it prints) from mitmproxy 11.1 on.
WEB_AUTH = tuple(int(x) for x in VERSION.split(".")[:2]) >= (11, 1)


def config(upstream: Upstream) -> str:
    route = {
        "name": "api",
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "token": {"type": "static", "value": {"env": "IN_FLIGHT_STATIC"}},
    }
    return json.dumps({"version": 1, "routes": [route]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proxy_port(line: str) -> list[int] | None:
    marker = "proxy listening at "
    if marker not in line:
        return None
    return [int(line.rsplit(":", 1)[1].rstrip(". \n"))]


@pytest.fixture
def mitmweb(tmp_path: Path, upstream: Upstream) -> Iterator[tuple[Mitmdump, int]]:
    """mitmweb with the gateway: (process, web port)."""
    (tmp_path / "gateway.yaml").write_text(config(upstream), encoding="utf-8")
    web_port = free_port()
    argv = [
        *MITMWEB,
        "-s",
        str(ADDON_SCRIPT),
        "--set",
        f"authgw_config={tmp_path / 'gateway.yaml'}",
        *LOOPBACK_ANY_PORT,
        "--set",
        f"confdir={tmp_path / 'confdir'}",
        "--set",
        "web_open_browser=false",
        "--set",
        f"web_port={web_port}",
        *(["--set", f"web_password={WEB_PASSWORD}"] if WEB_AUTH else []),
    ]
    env = gateway_env({"IN_FLIGHT_STATIC": STATIC})
    with Mitmdump(argv, env=env, cwd=tmp_path) as process:
        process.start(30, ready=proxy_port)
        process.wait_for_output(r"[Ww]eb server listening", timeout=15)
        yield process, web_port


def web_flows(web_port: int) -> list[dict[str, Any]]:
    query = f"?token={WEB_PASSWORD}" if WEB_AUTH else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/flows{query}", timeout=5) as r:
        flows: list[dict[str, Any]] = json.load(r)
        return flows


def test_mitmweb_shows_no_token_while_the_upstream_is_slow(
    mitmweb: tuple[Mitmdump, int], upstream: Upstream
) -> None:
    process, web_port = mitmweb
    upstream.delay(3, "/slow")
    done: dict[str, int] = {}
    client = threading.Thread(
        target=lambda: done.update(
            status=proxy_request(process.port, "GET", f"{upstream.url}/slow").status
        ),
        daemon=True,
    )
    client.start()
    upstream.wait_for_count(1, timeout=10)  # the upstream has it and holds its answer

    flows = web_flows(web_port)
    (in_flight,) = [f for f in flows if f["request"]["path"] == "/slow"]
    assert in_flight.get("response") is None, "the flow is not in flight any more"
    headers = dict(in_flight["request"]["headers"])
    assert headers.get("Authorization") == SHOWN
    assert STATIC not in json.dumps(flows)

    client.join(15)
    assert done.get("status") == 200
    assert bearer_token(upstream.last.header("Authorization")) == STATIC  # the wire had it
    wait_until(lambda: web_flows(web_port)[-1].get("response") is not None, 5)
    assert STATIC not in json.dumps(web_flows(web_port))


def test_a_websocket_upgrade_carries_the_token_and_is_saved_without_it(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.respond(
        101,
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        },
        path="/ws",
    )
    saved = tmp_path / "ws.mitm"
    gateway = gateway_factory(
        config(upstream), env={"IN_FLIGHT_STATIC": STATIC}, extra_args=["-w", str(saved)]
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            f"GET {upstream.url}/ws HTTP/1.1\r\nHost: 127.0.0.1:{upstream.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    assert bearer_token(upstream.last.header("Authorization")) == STATIC
    gateway_factory.stop_all()

    raw = saved.read_bytes()
    assert STATIC.encode() not in raw
    with saved.open("rb") as f:
        (flow,) = list(io.FlowReader(f).stream())
    assert flow.websocket is not None  # type: ignore[attr-defined]
    assert flow.request.headers["Authorization"] == SHOWN  # type: ignore[attr-defined]


def test_flows_saved_with_w_carry_what_the_gateway_did(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    saved = tmp_path / "annotated.mitm"
    elsewhere = {  # plain http to a host that is not loopback: 502 insecure_upstream
        "name": "elsewhere",
        "hosts": ["elsewhere.invalid"],
        "token": {"type": "static", "value": {"env": "IN_FLIGHT_STATIC"}},
    }
    text = json.loads(config(upstream))
    text["routes"].append(elsewhere)
    gateway = gateway_factory(
        json.dumps(text), env={"IN_FLIGHT_STATIC": STATIC}, extra_args=["-w", str(saved)]
    )
    assert proxy_request(gateway.port, "GET", f"{upstream.url}/ok").status == 200
    assert proxy_request(gateway.port, "GET", "http://elsewhere.invalid/x").status == 502
    gateway_factory.stop_all()

    with saved.open("rb") as f:
        flows = {flow.request.path: flow for flow in io.FlowReader(f).stream()}  # type: ignore[attr-defined]
    ok, failed = flows["/ok"], flows["/x"]
    # an opaque token: no kid, no expiry
    assert ok.comment == "injected: static (authgw, route api)" and not ok.marked
    assert failed.comment == "token unavailable: insecure_upstream (authgw, route elsewhere)"
    assert failed.marked
