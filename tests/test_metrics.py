from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import jwt
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client.parser import text_string_to_metric_families

from authgw.addon import AuthGateway
from authgw.cache import CacheKey
from authgw.metrics import Metrics, upstream_error_type
from authgw.statusport import MetricsServer
from authgw.tokens import TokenUnavailable, fingerprint
from tests.fakes import FakeClock, hook, wire

SECRET = "metrics-test-secret-" + "m" * 40

# Each test runs with lazy and with eager tasks (mitmproxy on Python 3.12+).
pytestmark = pytest.mark.usefixtures("task_factory")


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.text().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_observer_counts_by_route_source_and_error_class() -> None:
    metrics = Metrics()
    key = CacheKey("partner", ("https://a",))
    metrics._sources = {"partner": "sts"}
    metrics.hit(key)
    metrics.miss(key)
    metrics.evicted(key)
    metrics.fetched(key, None, 0.1)
    metrics.fetched(key, TokenUnavailable("AccessDenied", "no"), 0.1)
    got = samples(metrics)
    assert got[("authgw_token_cache_hits_total", (("route", "partner"),))] == 1
    assert got[("authgw_token_cache_misses_total", (("route", "partner"),))] == 1
    assert got[("authgw_token_cache_evictions_total", ())] == 1
    base = (("result", "ok"), ("route", "partner"), ("source", "sts"))
    assert got[("authgw_token_fetch_total", (("error_class", ""), *base))] == 1
    assert (
        got[
            (
                "authgw_token_fetch_total",
                (
                    ("error_class", "AccessDenied"),
                    ("result", "error"),
                    ("route", "partner"),
                    ("source", "sts"),
                ),
            )
        ]
        == 1
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Connection timed out", "timeout"),
        ("TimeoutError", "timeout"),
        ("[Errno 111] Connect call failed ('127.0.0.1', 9)", "connection_refused"),
        ("Connection refused", "connection_refused"),
        ("TLS handshake failed", "tls"),
        ("certificate verify failed", "tls"),
        ("Server disconnected.", "unknown"),
    ],
)
def test_upstream_error_type(message: str, expected: str) -> None:
    assert upstream_error_type(message) == expected


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\n" + textwrap.dedent(body))
    return path


CONFIG = """\
cache: {max_entries: 3}
routes:
  - name: dash
    hosts: ["*"]
    token: {type: hmac, secret: {env: METRICS_SECRET}, audience: dynamic, lifetime: 600}
"""


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_addon_metrics_status_and_commands(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METRICS_SECRET", SECRET)
    clock = FakeClock()
    config = write_config(tmp_path, CONFIG)

    async def main() -> None:
        addon = AuthGateway(clock=clock)
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=str(config))
            tokens = []
            for i in range(10):
                f = tflow.tflow(req=tutils.treq(host=f"h{i}.example", port=443, scheme=b"https"))
                await hook(addon.requestheaders(f))
                await hook(addon.request(f))
                tokens.append(wire(f.request.headers, "Authorization").removeprefix("Bearer "))
                f.response = tutils.tresp(status_code=401 if i == 9 else 200)
                addon.response(f)
            got = samples(addon.metrics)
            assert got[("authgw_token_cache_entries", ())] <= 3
            assert got[("authgw_token_cache_evictions_total", ())] == 7 - 0
            assert (
                got[("authgw_requests_total", (("outcome", "injected"), ("route", "dash")))] == 10
            )
            assert (
                got[
                    (
                        "authgw_upstream_auth_rejections_total",
                        (("route", "dash"), ("status", "401")),
                    )
                ]
                == 1
            )
            # Labels never carry hosts or audiences.
            assert "example" not in addon.metrics.text().decode()

            status = json.loads(tctx.command(addon.status_command))
            text = json.dumps(status)
            assert SECRET not in text and not any(t in text for t in tokens)
            (route,) = status["routes"]
            assert route["secret_fingerprint"] == fingerprint(SECRET)
            assert route["source"] == "hmac" and route["hosts"] == ["*"]
            assert len(status["tokens"]) == 2  # three cached, one dropped on the 401
            for token in status["tokens"]:
                assert token["kid"] == fingerprint(SECRET) and token["seconds_left"] == 600
                assert token["audience"][0].startswith("https://h")

            tctx.command(addon.flush)
            assert json.loads(tctx.command(addon.status_command))["tokens"] == []

            write_config(tmp_path, CONFIG.replace("lifetime: 600", "lifetime: 900"))
            tctx.command(addon.reload)
            await addon.manager.idle()  # built off the event loop
            f = tflow.tflow(req=tutils.treq(host="h1.example", port=443, scheme=b"https"))
            await hook(addon.request(f))
            claims = jwt.decode(
                wire(f.request.headers, "Authorization").removeprefix("Bearer "),
                SECRET,
                algorithms=["HS256"],
                audience="https://h1.example",
                options={"verify_exp": False, "verify_iat": False},
            )
            assert claims["exp"] - claims["iat"] == 900

            config.write_text("version: 1\nroutes: nope\n")
            with pytest.raises(exceptions.CommandError):
                tctx.command(addon.reload)
            assert json.loads(tctx.command(addon.status_command))["routes"][0]["name"] == "dash"
            addon.done()

    run(main())


def test_static_tokens_expiring_soon_are_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    soon = jwt.encode({"exp": int(clock() + 3600)}, "k" * 32, algorithm="HS256")
    gone = jwt.encode({"exp": int(clock() - 60)}, "k" * 32, algorithm="HS256")
    later = jwt.encode({"exp": int(clock() + 5 * 86400)}, "k" * 32, algorithm="HS256")
    monkeypatch.setenv("SOON", soon)
    monkeypatch.setenv("GONE", gone)
    monkeypatch.setenv("LATER", later)
    config = write_config(
        tmp_path,
        """\
        routes:
          - {name: soon, hosts: [a], token: {type: static, value: {env: SOON}}}
          - {name: gone, hosts: [b], token: {type: static, value: {env: GONE}}}
          - {name: later, hosts: [c], token: {type: static, value: {env: LATER}}}
    """,
    )

    async def main() -> None:
        addon = AuthGateway(clock=clock)
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=str(config))
            routes = {r["name"]: r for r in addon.status()["routes"]}
            assert routes["soon"]["flag"] == "expires_within_a_day"
            assert routes["soon"]["token_expires_in"] == 3600
            assert routes["gone"]["flag"] == "expired"
            assert routes["later"]["flag"] is None
            text = json.dumps(routes)
            assert not any(t in text for t in (soon, gone, later))
            addon.done()

    run(main())


def test_metrics_server_serves_metrics_and_status() -> None:
    async def main() -> None:
        metrics = Metrics()
        metrics.requests.add(("r", "injected"))
        server = MetricsServer("127.0.0.1", 0, metrics, lambda: {"routes": ["ok"]})
        await server.start()
        own = f"127.0.0.1:{server.port}"
        asks = [
            ("/metrics", own),
            ("/status", own),
            ("/nope", own),
            ("/status", f"attacker.example:{server.port}"),  # a DNS-rebinding page
            ("/nope", "attacker.example"),
            ("/status", f"localhost:{server.port + 1}"),
            ("/metrics", f"localhost:{server.port}"),
            ("/healthz", f"[::1]:{server.port}"),
        ]
        try:
            answers = {}
            for path, host in asks:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
                )
                answers[path, host] = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                await writer.wait_closed()
        finally:
            await server.close()
        statuses = {ask: answer.split(b" ", 2)[1] for ask, answer in answers.items()}
        assert statuses == dict(
            zip(asks, [b"200", b"200", b"404", b"421", b"421", b"421", b"200", b"200"], strict=True)
        )
        assert b"routes" not in answers["/status", f"attacker.example:{server.port}"]
        answers = {path: answers[path, host] for path, host in asks[:3]}
        assert answers["/metrics"].startswith(b"HTTP/1.1 200 OK")
        assert b'authgw_requests_total{outcome="injected",route="r"} 1.0' in answers["/metrics"]
        assert (
            answers["/status"].split(b"\r\n\r\n", 1)[1].strip()
            == b'{\n  "routes": [\n    "ok"\n  ]\n}'
        )
        assert answers["/nope"].startswith(b"HTTP/1.1 404")

    run(main())


def test_a_busy_metrics_port_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_SECRET", SECRET)
    config = write_config(tmp_path, CONFIG)

    async def main() -> None:
        blocker = MetricsServer("127.0.0.1", 0, Metrics(), dict)
        addon = AuthGateway()
        try:
            with taddons.context(addon) as tctx:
                with pytest.raises(exceptions.OptionsError, match="authgw_metrics: cannot listen"):
                    tctx.configure(
                        addon, authgw_config=str(config), authgw_metrics=f"127.0.0.1:{blocker.port}"
                    )
        finally:
            await blocker.close()
            addon.done()

    run(main())


def test_config_file_changes_are_picked_up_and_broken_ones_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("METRICS_SECRET", SECRET)
    config = write_config(tmp_path, CONFIG)

    async def main() -> None:
        addon = AuthGateway(watch_interval=0.02)
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=str(config))
            write_config(tmp_path, CONFIG.replace("max_entries: 3", "max_entries: 5"))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if addon.status()["cache"]["max_entries"] == 5:
                    break
            assert addon.status()["cache"]["max_entries"] == 5
            write_config(tmp_path, CONFIG.replace("type: hmac", "type: hmac, algorithm: HS1"))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if "is invalid" in caplog.text:
                    break
            assert addon.status()["cache"]["max_entries"] == 5
            addon.done()

    run(main())
    assert (
        "the config file changed: the new config is invalid; the running config stays"
        in caplog.text
    )
    assert "routes[0].token.algorithm: is not one of" in caplog.text


def test_health_readiness_head_keep_alive_and_bad_input() -> None:
    """/healthz, /readyz (503 naming broken routes), HEAD, two requests on one connection,
    and a huge request line refused without an answer from the proxy's side."""

    async def main() -> None:
        broken = {"ready": False, "broken": [{"route": "sts", "error_class": "Throttling"}]}
        state = {"ok": False}
        server = MetricsServer("127.0.0.1", 0, Metrics(), dict, lambda: (state["ok"], broken))
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            answers = []
            for method, path in (("GET", "/healthz"), ("GET", "/readyz"), ("HEAD", "/metrics")):
                host = f"127.0.0.1:{server.port}"
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = b"" if method == "HEAD" else await reader.readexactly(length)
                answers.append((head.split(b"\r\n")[0], body))
            writer.close()
            assert answers[0] == (b"HTTP/1.1 200 OK", b"ok\n")
            assert answers[1][0] == b"HTTP/1.1 503 Service Unavailable"
            assert json.loads(answers[1][1]) == broken
            assert answers[2][0] == b"HTTP/1.1 200 OK"

            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\n\r\n")
            try:
                answer = await asyncio.wait_for(reader.read(), 5)
            except ConnectionError:
                answer = b""
            writer.close()
            assert not answer.startswith(b"HTTP/1.1 200")
        finally:
            await server.close()

    run(main())
