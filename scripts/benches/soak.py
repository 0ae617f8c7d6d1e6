"""soak: what a gateway left running for weeks meets, compressed into minutes.

Keep-alive clients send traffic throughout, half on an sts route (the STS emulator),
half on an hmac route whose secret is a command (`cat` of a key file). Meanwhile:
the config is rewritten every 30 s (every other version adds a route with a command
secret of its own, the next drops it again), the hmac key file gets a new key every
60 s (the kept secret rotates), STS fails for a phase (50% to 70% of the run), and the
flow log is moved away four times (logrotate). mitmdump's RSS, threads, open file
descriptors and asyncio tasks are sampled at start, every few minutes and at the end
(through scripts/probe_addon.py).
"""

from __future__ import annotations

import http.client
import json
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benches.common import (
    Row,
    child_env,
    emulator_calls,
    gateway_args,
    metric,
    mitmdump,
    status_kib,
    sts_env,
    until_served,
    upstream,
)
from loopback import free_port

ERROR_PAUSE = 0.1  # after a failed request, so a dead proxy is not a busy loop
RELOAD_EVERY = 30.0
ROTATE_EVERY = 60.0
FAILING = (0.5, 0.7)  # STS fails from half the run to 70% of it
LOGROTATIONS = 4
PROBE = Path(__file__).resolve().parents[1] / "probe_addon.py"
TRANSIENT = ("authgw-secret-read", "authgw-reload")  # threads of one read or one build


def _config(tmp: Path, sts: int, hmac: int, metrics: int, life: int, version: int) -> str:
    lines = [
        "version: 1",
        f'metrics: "127.0.0.1:{metrics}"',
        f'flowlog: "{tmp / "flows.jsonl"}"',
        "routes:",
        "  - name: sts",
        f'    hosts: ["127.0.0.1:{sts}"]',
        f'    token: {{type: sts, audience: ["https://soak.bench.example"], duration: {life}}}',
        "  - name: hmac",
        f'    hosts: ["127.0.0.1:{hmac}"]',
        f"    token: {{type: hmac, lifetime: {life}, "
        f"secret: {{cmd: 'cat {tmp / 'hmac.key'}', refresh: 10}}}}",
    ]
    if version % 2:  # a route that the next version drops again, its command with it
        lines += [
            f"  - name: churn_{version}",
            f'    hosts: ["churn-{version}.test"]',
            f"    token: {{type: hmac, secret: {{cmd: 'echo {secrets.token_hex(16)}', "
            "refresh: 5}}",
        ]
    return "\n".join(lines) + "\n"


def _client(proxy_port: int, url: str, stop: threading.Event, tally: list[int]) -> None:
    """GET `url` through the proxy on one keep-alive connection until `stop`.

    tally[0] counts 200s, tally[1] other answers and exceptions (then a new connection).
    """
    conn: http.client.HTTPConnection | None = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
        try:
            conn.request("GET", url)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            tally[1] += 1
            conn.close()
            conn = None
            time.sleep(ERROR_PAUSE)
            continue
        tally[0 if resp.status == 200 else 1] += 1
    if conn is not None:
        conn.close()


@dataclass(frozen=True)
class Sample:
    minute: float
    rss_mb: float
    threads: int
    fds: int
    tasks: int


def _sample(pid: int, proxy_port: int, begin: float) -> Sample:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
    try:
        conn.request("GET", "http://authgw-probe.invalid/")
        doc = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    threads = [t for t in doc["threads"] if not t.startswith(TRANSIENT)]
    return Sample(
        (time.monotonic() - begin) / 60,
        status_kib(pid, "VmRSS") / 1024,
        len(threads),
        doc["fds"],
        doc["tasks"],
    )


def _emulator(endpoint: str, method: str, body: dict[str, object] | None = None) -> None:
    conn = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=10)
    try:
        conn.request(method, "/_emulator/faults", body=json.dumps(body) if body else None)
        conn.getresponse().read()
    finally:
        conn.close()


class _Schedule:
    """Events at fixed offsets from `begin`, run in order by `run_until`."""

    def __init__(self, begin: float) -> None:
        self.begin = begin
        self._events: list[tuple[float, int, Callable[[], None]]] = []

    def every(self, interval: float, until: float, action: Callable[[], None]) -> None:
        at = interval
        while at < until:
            self.at(at, action)
            at += interval

    def at(self, offset: float, action: Callable[[], None]) -> None:
        self._events.append((offset, len(self._events), action))

    def run_until(self, end: float) -> None:
        for offset, _, action in sorted(self._events):
            if offset >= end:
                break
            time.sleep(max(0.0, self.begin + offset - time.monotonic()))
            action()
        time.sleep(max(0.0, self.begin + end - time.monotonic()))


def bench_soak(clients: int, minutes: float, life: int) -> list[Row]:
    if clients < 2:
        raise ValueError("soak needs at least 2 clients, one per route")
    seconds = minutes * 60
    sample_every = max(60.0, round(seconds / 12 / 60) * 60)  # a dozen samples, whole minutes
    with (
        upstream() as sts_port,
        upstream() as hmac_port,
        sts_env() as extra,
        tempfile.TemporaryDirectory() as tmpdir,
    ):
        tmp = Path(tmpdir)
        env = child_env(extra)
        endpoint = env["AWS_ENDPOINT_URL_STS"]
        metrics_port = free_port()
        (tmp / "hmac.key").write_text(secrets.token_hex(32))
        config = tmp / "gateway.yaml"
        version = [0]
        config.write_text(_config(tmp, sts_port, hmac_port, metrics_port, life, 0))
        gw = mitmdump([*gateway_args(config), "-s", str(PROBE)], env, tmpdir)
        urls = {"sts": f"http://127.0.0.1:{sts_port}/", "hmac": f"http://127.0.0.1:{hmac_port}/"}
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            for url in urls.values():
                until_served(gw.port, url)
            begin = time.monotonic()
            samples = [_sample(gw.pid, gw.port, begin)]
            routes = [("sts", "hmac")[i % 2] for i in range(clients)]
            tallies = [[0, 0] for _ in routes]
            threads = [
                threading.Thread(target=_client, args=(gw.port, urls[r], stop, t), daemon=True)
                for r, t in zip(routes, tallies, strict=True)
            ]
            for t in threads:
                t.start()
            marks: dict[str, tuple[int, int]] = {}

            def mark(name: str) -> Callable[[], None]:
                def take() -> None:
                    failed = sum(t[1] for t in tallies)
                    marks[name] = (failed, emulator_calls(endpoint))

                return take

            def reload() -> None:
                version[0] += 1
                text = _config(tmp, sts_port, hmac_port, metrics_port, life, version[0])
                (tmp / "gateway.new").write_text(text)
                (tmp / "gateway.new").replace(config)

            def rotate_key() -> None:
                (tmp / "hmac.new").write_text(secrets.token_hex(32))
                (tmp / "hmac.new").replace(tmp / "hmac.key")

            rotations = [0]

            def logrotate() -> None:
                rotations[0] += 1
                (tmp / "flows.jsonl").replace(tmp / f"flows.jsonl.{rotations[0]}")

            schedule = _Schedule(begin)
            schedule.every(RELOAD_EVERY, seconds, reload)
            schedule.every(ROTATE_EVERY, seconds, rotate_key)
            schedule.every(seconds / (LOGROTATIONS + 1), seconds, logrotate)
            schedule.at(seconds * FAILING[0], mark("failing"))
            schedule.at(
                seconds * FAILING[0],
                lambda: _emulator(endpoint, "POST", {"code": "ServiceUnavailable"}),
            )
            schedule.at(seconds * FAILING[1], lambda: _emulator(endpoint, "DELETE"))
            schedule.at(seconds * FAILING[1], mark("recovered"))
            schedule.every(
                sample_every, seconds, lambda: samples.append(_sample(gw.pid, gw.port, begin))
            )
            schedule.run_until(seconds)
            stop.set()
            for t in threads:
                t.join(60)
            elapsed = time.monotonic() - begin
            samples.append(_sample(gw.pid, gw.port, begin))
            sts_calls = emulator_calls(endpoint)
            signatures = metric(metrics_port, "authgw_token_fetch_total", route="hmac")
            reloads = sum("authgw: reloaded" in line for line in gw.lines)
            logged = [tmp / f"flows.jsonl.{n}" for n in range(1, rotations[0] + 1)]
            rotated_ok = all(p.stat().st_size > 0 for p in [*logged, tmp / "flows.jsonl"])
        finally:
            stop.set()
            gw.stop()
    served = sum(ok for ok, _ in tallies)
    errors = sum(failed for _, failed in tallies)
    failing_errors = marks["recovered"][0] - marks["failing"][0]
    before_calls = marks["failing"][1]
    lives_before = seconds * FAILING[0] / life
    what = f"soak, {clients} clients x {minutes:g} min, {life} s tokens"
    rows: list[Row] = [
        (f"{what}: requests served", f"{served}", f"{served / elapsed:.0f}/s"),
        (
            f"{what}: errors outside the failing phase",
            f"{errors - failing_errors}",
            f"non-200 answers and exceptions (target: 0); {failing_errors} while STS failed "
            f"({FAILING[0]:.0%} to {FAILING[1]:.0%} of the run: the sts route's 502s once "
            "its token ran out)",
        ),
        (
            f"{what}: STS calls per token life before the failing phase",
            f"{before_calls / lives_before:.1f}",
            f"{before_calls} calls in {lives_before:.1f} lives (target: about 2); "
            f"{sts_calls} in the whole run",
        ),
        (
            f"{what}: reloads, key rotations, log rotations",
            f"{reloads} / {int(seconds // ROTATE_EVERY)} / {rotations[0]}",
            "reloads seen in mitmdump's log (one per 30 s); every rotated flow log "
            + ("has records" if rotated_ok else "NOT all have records"),
        ),
        (
            f"{what}: HMAC signatures",
            f"{signatures:.0f}",
            f"about 2 per token life plus one per key rotation ({elapsed / life:.0f} lives)",
        ),
    ]
    for s in samples:
        rows.append(
            (
                f"{what}: at {s.minute:4.1f} min",
                f"{s.rss_mb:.0f} MB",
                f"threads {s.threads}, fds {s.fds}, asyncio tasks {s.tasks}",
            )
        )
    return rows
