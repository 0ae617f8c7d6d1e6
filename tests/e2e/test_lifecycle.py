"""Built to run for weeks, end to end: what a reload drops is stopped, counts come back to
a fresh load's after many reloads, a failing source holds no request, the flow log
follows logrotate. Every wait is on a count or a log line; nothing sleeps and asserts."""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.loopback import free_port
from tests.e2e.clients import proxy_request, wait_until
from tests.e2e.harness import REPO, Gateway, GatewayFactory
from tests.e2e.helpers import new_secret, read_flowlog, replace_file
from tests.e2e.upstreams import Upstream

pytestmark = pytest.mark.e2e

PROBE = REPO / "scripts" / "probe_addon.py"  # loaded after authgw; answers PROBE_HOST
PROBE_HOST = "authgw-probe.invalid"

# Threads that live for one secret read or one reload build.
TRANSIENT = ("authgw-secret-read", "authgw-reload")


def probe(gateway: Gateway) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        proxy_request(gateway.port, "GET", f"http://{PROBE_HOST}/").body
    )
    doc["threads"] = Counter(t for t in doc["threads"] if not t.startswith(TRANSIENT))
    return doc


def settled(gateway: Gateway) -> dict[str, Any]:
    """The counts once they stop moving (a connection that just closed is still being
    torn down for a moment): two probes in a row that agree."""
    last = probe(gateway)
    for _ in range(50):
        time.sleep(0.1)
        now = probe(gateway)
        if now == last:
            return now
        last = now
    return last


def reloads(gateway: Gateway) -> int:
    return sum("authgw: reloaded" in line for line in gateway.lines)


def reload_to(gateway: Gateway, text: str, timeout: float = 15.0) -> None:
    """Write the config whole and wait until the gateway says it reloaded it."""
    assert gateway.config_path is not None
    before = reloads(gateway)
    replace_file(gateway.config_path, text)
    wait_until(lambda: reloads(gateway) > before, timeout, message="the reload")


def lines_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def counting_command(counter: Path, secret: str) -> str:
    """A secret command that appends a line to `counter` each time it runs."""
    return f"echo run >> {counter}; echo {secret}"


def _config(
    upstream: Upstream,
    metrics: int,
    flowlog: Path,
    commands: dict[str, str],
    refresh: dict[str, int] | None = None,
) -> str:
    """The api route (env secret) and one route per command secret, re-read every
    second unless `refresh` names another interval for it."""
    lines = [
        "version: 1",
        f'metrics: "127.0.0.1:{metrics}"',
        f'flowlog: "{flowlog}"',
        "routes:",
        "  - name: api",
        f'    hosts: ["127.0.0.1:{upstream.port}"]',
        "    token: {type: hmac, secret: {env: AUTHGW_E2E_KEY}}",
    ]
    for name, command in commands.items():
        lines += [
            f"  - name: {name}",
            f'    hosts: ["{name}.test"]',
            f"    token: {{type: hmac, secret: {{cmd: '{command}', "
            f"refresh: {(refresh or {}).get(name, 1)}}}}}",
        ]
    return "\n".join(lines) + "\n"


def test_counts_after_50_reloads_equal_a_fresh_loads(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """Threads (by name), asyncio tasks and open fds after 50 reloads that each replace a
    route with a command secret equal those of the same config loaded fresh."""
    secret = new_secret()
    kept = {"kept": counting_command(tmp_path / "kept.count", secret)}
    metrics, flowlog = free_port(), tmp_path / "flows.jsonl"
    slow = {"kept": 3600}  # not read while counting: a read has a thread and two pipes
    first = _config(upstream, metrics, flowlog, kept, slow)
    gateway = gateway_factory(first, env={"AUTHGW_E2E_KEY": secret}, extra_args=["-s", str(PROBE)])

    def traffic() -> None:
        assert proxy_request(gateway.port, "GET", f"{upstream.url}/x").status == 200

    traffic()
    fresh = settled(gateway)
    for i in range(50):
        command = counting_command(tmp_path / f"dropped-{i}.count", secret)
        reload_to(gateway, _config(upstream, metrics, flowlog, {**kept, f"r{i}": command}, slow))
        traffic()
    reload_to(gateway, first)
    traffic()
    # A dropped route's read under way ends on its own, and a closing connection's task
    # with it: wait until the counts settle, then compare them all.
    with contextlib.suppress(TimeoutError):  # then the asserts below say what differs
        wait_until(lambda: probe(gateway) == fresh, 15, interval=0.2)
    after = probe(gateway)
    assert after["threads"] == fresh["threads"]
    assert after["tasks"] == fresh["tasks"]
    assert after["fds"] == fresh["fds"]


def test_a_dropped_routes_command_never_runs_again(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """Fifteen reloads each replace a route whose secret is a command read every second;
    then a config without it. A kept command, read every second as well, is the clock:
    once it has run three more times, none of the dropped ones has run at all."""
    secret = new_secret()
    metrics, flowlog = free_port(), tmp_path / "flows.jsonl"
    clock = tmp_path / "clock.count"
    kept = {"clock": counting_command(clock, secret)}
    gateway = gateway_factory(
        _config(upstream, metrics, flowlog, kept), env={"AUTHGW_E2E_KEY": secret}
    )
    dropped = [tmp_path / f"dropped-{i}.count" for i in range(15)]
    for i, counter in enumerate(dropped):
        command = counting_command(counter, secret)
        reload_to(gateway, _config(upstream, metrics, flowlog, {**kept, f"r{i}": command}))
    reload_to(gateway, _config(upstream, metrics, flowlog, kept))
    # A read under way when its route was dropped may still finish: count from here.
    # A read of a dropped route started before its drop may still end: one clock read
    # after the last reload, every such read has ended (all take the same time).
    ticks = lines_in(clock)
    wait_until(lambda: lines_in(clock) > ticks, 10, message="a clock read after the reload")
    before = [lines_in(c) for c in dropped]
    ticks = lines_in(clock)
    wait_until(lambda: lines_in(clock) >= ticks + 3, 15, message="three more clock reads")
    assert [lines_in(c) for c in dropped] == before
    assert all(n >= 1 for n in before)  # each did run while its route was there


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_failing_source_holds_no_request(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    """An sts route whose endpoint is down, its failure remembered for 600 s: 240 POSTs of
    512 KiB each are answered 502, and mitmdump's memory stays where it was after the
    first 40 (it grew by 124 MB when each failure kept every request's frames)."""
    closed = free_port()
    config = textwrap.dedent(f"""\
        version: 1
        cache: {{error_backoff: 600}}
        routes:
          - name: down
            hosts: ["127.0.0.1:{upstream.port}"]
            token:
              type: sts
              audience: ["https://down.example"]
              region: us-east-1
              endpoint_url: "http://127.0.0.1:{closed}"
              max_attempts: 1
        """)
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 40}
    gateway = gateway_factory(config, env=env)
    body = os.urandom(512 * 1024)

    def post(n: int) -> None:
        for _ in range(n):
            answer = proxy_request(gateway.port, "POST", f"{upstream.url}/up", body=body)
            assert answer.status == 502

    post(40)
    warm = rss_kib(gateway.process.pid)
    post(200)
    grown = rss_kib(gateway.process.pid) - warm
    assert grown < 24 * 1024, f"RSS grew {grown} KiB over 200 failing requests"
    assert upstream.requests == []


def test_the_flow_log_follows_logrotate(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    secret = new_secret()
    flowlog = tmp_path / "flows.jsonl"
    gateway = gateway_factory(
        _config(upstream, free_port(), flowlog, {}), env={"AUTHGW_E2E_KEY": secret}
    )
    url: Callable[[int], str] = lambda n: f"{upstream.url}/n{n}"  # noqa: E731
    assert proxy_request(gateway.port, "GET", url(1)).status == 200
    wait_until(lambda: lines_in(flowlog) == 1, 10, message="the first record")
    flowlog.rename(tmp_path / "flows.jsonl.1")  # what logrotate does (without copytruncate)
    assert proxy_request(gateway.port, "GET", url(2)).status == 200
    wait_until(lambda: lines_in(flowlog) == 1, 10, message="a record in the new file")
    assert [r["path"] for r in read_flowlog(flowlog)] == ["/n2"]
    assert [r["path"] for r in read_flowlog(tmp_path / "flows.jsonl.1")] == ["/n1"]
