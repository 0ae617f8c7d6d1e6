"""authgw benchmarks: prints one table. Everything runs on loopback and stops by itself.

    python scripts/bench.py                 # every section
    python scripts/bench.py --only hook,cpu # some of them

Sections:
  hook  the addon's `request` hook on a cached token, per source: microseconds per call
  cpu   mitmdump's CPU time per request: plain, with --modify-headers, with the
        gateway (cached token), measured in turns, with ratios to plain
  refresh  STS calls per 10,000 requests over 5 audiences, and the slowest request
        while tokens refresh under steady load with 1 s of STS latency: refresh-ahead
        (authgw) beside refresh on the request path (refresh_ahead: 0), side by side.
        Real boto3 calls to the STS emulator; token time runs 600x faster than the
        wall clock (one clock shared by emulator and cache), so an hour-long token
        lives 6 s and several refreshes fit in a short run.
  cold  200 concurrent requests for a new audience through mitmdump: STS calls
  hosts 100,000 distinct hosts through a `*` route with `audience: dynamic` and
        `max_entries: 1000` (mitmdump in upstream mode towards a local stand-in
        proxy, so no name is ever resolved): peak cache entries, RSS growth
  start mitmdump start-up, to the first answered request: no addon, the gateway
        without an STS route, and with one (boto3 is imported only then)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Run as `python scripts/bench.py`: scripts/ is on sys.path (not the repository root).
from launcher import LOOPBACK_ANY_PORT, MITMDUMP, Mitmdump

from authgw.addon import AuthGateway
from authgw.cli import addon_script
from authgw.emulator import StsEmulator

SECRET = "bench-secret-" + "x" * 40
STATIC = "bench-static-token-0123456789"
Row = tuple[str, str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # socketserver's 5 makes bursts wait out TCP SYN retries


class _Upstream(BaseHTTPRequestHandler):
    """Answers 200 ``ok`` to every request, keeping the connection open."""

    protocol_version = "HTTP/1.1"
    close = False

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        if self.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def upstream() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def sts_env() -> Iterator[dict[str, str]]:
    with StsEmulator() as sts, tempfile.TemporaryDirectory() as tmp:
        yield {
            "AWS_ENDPOINT_URL_STS": sts.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_CONFIG_FILE": f"{tmp}/none",
            "AWS_SHARED_CREDENTIALS_FILE": f"{tmp}/none",
            "AWS_EC2_METADATA_DISABLED": "true",
            "BENCH_SECRET": SECRET,
            "BENCH_STATIC": STATIC,
        }


def gateway_config(port: int) -> str:
    return textwrap.dedent(f"""\
        version: 1
        routes:
          - name: hmac
            hosts: ["127.0.0.1:{port}"]
            token: {{type: hmac, secret: {{env: BENCH_SECRET}}, claims: {{stackmon: dummy}},
                     lifetime: 3600}}
          - name: static
            hosts: ["static.bench:{port}"]
            token: {{type: static, value: {{env: BENCH_STATIC}}}}
          - name: sts
            hosts: ["sts.bench:{port}"]
            token: {{type: sts, audience: dynamic}}
        """)


# -- hook -------------------------------------------------------------------------


async def _hook(result: Any) -> None:
    if result is not None:  # as mitmproxy does: a hook's result is awaited if awaitable
        await result


def bench_hook(calls: int, rounds: int) -> list[Row]:
    from mitmproxy.test import taddons, tflow, tutils

    rows: list[Row] = []
    with sts_env() as env, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(env)
        config = Path(tmp) / "gateway.yaml"
        config.write_text(gateway_config(8443))

        async def measure() -> dict[str, float]:
            addon = AuthGateway()
            results: dict[str, float] = {}
            with taddons.context(addon) as tctx:
                tctx.configure(addon, authgw_config=str(config))
                for source, host in (
                    ("hmac", "127.0.0.1"),
                    ("static", "static.bench"),
                    ("sts", "sts.bench"),
                ):

                    def make(host: str = host) -> Any:
                        return tflow.tflow(req=tutils.treq(host=host, port=8443, scheme=b"https"))

                    warm = make()
                    await _hook(addon.request(warm))  # fill the cache
                    assert warm.response is None, warm.response
                    best = []
                    for _ in range(rounds):
                        flows = [make() for _ in range(calls)]
                        gc.collect()
                        gc.disable()  # as timeit does: the flows made above are not our cost
                        start = time.perf_counter()
                        for f in flows:
                            await _hook(addon.request(f))
                        best.append((time.perf_counter() - start) / calls * 1e6)
                        gc.enable()
                    results[source] = statistics.median(best)
                addon.done()
            return results

        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            results = asyncio.run(measure())
        finally:
            # taddons' master logs through its (now closed) event loop: take it back out.
            root.handlers[:] = handlers
            root.setLevel(level)
        for source, us in results.items():
            rows.append(
                (
                    f"request hook, cached {source} token",
                    f"{us:.1f} us/call",
                    f"median of {rounds} x {calls} calls",
                )
            )
    return rows


# -- cpu --------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mitmdump(args: Sequence[str], env: dict[str, str], cwd: str) -> Mitmdump:
    """A started mitmdump on a free loopback port; its output is kept, not shown."""
    argv = [*MITMDUMP, "--set", "flow_detail=0", *LOOPBACK_ANY_PORT, *args]
    return Mitmdump(argv, env=env, cwd=cwd).start(timeout=30)


def _drive(proxy_port: int, url: str, requests: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
    try:
        for _ in range(requests):
            conn.request("GET", url)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"unexpected {resp.status}")
    finally:
        conn.close()


def bench_cpu(requests: int, rounds: int) -> list[Row]:
    rows: list[Row] = []
    with upstream() as port, sts_env() as extra, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env.update(extra)
        config = Path(tmp) / "gateway.yaml"
        config.write_text(gateway_config(port))
        variants: dict[str, list[str]] = {
            "plain mitmdump": [],
            "--modify-headers static token": [
                "--modify-headers",
                f"/~q/Authorization/Bearer {STATIC}",
            ],
            "gateway, cached hmac token": [
                "-s",
                str(addon_script()),
                "--set",
                f"authgw_config={config}",
            ],
        }
        procs = {name: mitmdump(args, env, tmp) for name, args in variants.items()}
        url = f"http://127.0.0.1:{port}/"
        samples: dict[str, list[float]] = {name: [] for name in variants}
        try:
            for proc in procs.values():
                _drive(proc.port, url, 200)  # warm up: imports, connections, the cache
            for _ in range(rounds):
                for name, proc in procs.items():  # in turns, so drift hits all alike
                    before = _cpu_seconds(proc.pid)
                    _drive(proc.port, url, requests)
                    samples[name].append((_cpu_seconds(proc.pid) - before) / requests)
        finally:
            for proc in procs.values():
                proc.stop()
    plain = statistics.median(samples["plain mitmdump"])
    for name, values in samples.items():
        cost = statistics.median(values)
        rows.append(
            (
                f"mitmdump CPU/request, {name}",
                f"{cost * 1e6:.0f} us",
                f"x{cost / plain:.3f} of plain (median of {rounds} turns x {requests})",
            )
        )
    return rows


# -- refresh ----------------------------------------------------------------------


class FastClock:
    """Wall time that runs ``speed`` times faster from the moment it is made."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.start_wall = time.time()
        self.start_mono = time.monotonic()

    def __call__(self) -> float:
        return self.start_wall + (time.monotonic() - self.start_mono) * self.speed


def _refresh_run(
    refresh_ahead: float, requests: int, audiences: int, seconds: float, latency: float
) -> tuple[int, float, float]:
    from authgw.cache import CacheKey, TokenCache
    from authgw.config import CacheSettings, StsTokenConfig
    from authgw.sources.sts import StsSource

    speed = 600.0
    clock = FastClock(speed)
    with StsEmulator(clock=clock) as sts:
        config = StsTokenConfig(audience="dynamic", duration=3600, endpoint_url=sts.url)
        source = StsSource("bench", config, clock=clock)
        settings = CacheSettings(
            max_entries=100, refresh_ahead=refresh_ahead, min_ttl=10, error_backoff=5
        )
        auds = [(f"https://svc{i}.example",) for i in range(audiences)]

        async def run() -> list[float]:
            cache = TokenCache(settings, clock=clock)
            for aud in auds:  # cold start is not what this measures
                await cache.get(CacheKey("bench", aud), lambda a=aud: source.fetch(a))
            sts.set_latency(latency)
            sts.clear_calls()
            waits: list[float] = []

            async def one(i: int) -> None:
                aud = auds[i % audiences]
                started = time.perf_counter()
                await cache.get(CacheKey("bench", aud), lambda: source.fetch(aud))
                waits.append(time.perf_counter() - started)

            gap = seconds / requests
            tasks = []
            begin = time.perf_counter()
            for i in range(requests):  # steady load: one request every `gap` seconds
                tasks.append(asyncio.ensure_future(one(i)))
                delay = begin + (i + 1) * gap - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
            await asyncio.gather(*tasks)
            await cache.aclose()
            return waits

        waits = asyncio.run(run())
        return sts.call_count, max(waits), statistics.quantiles(waits, n=100)[98]


def bench_refresh(requests: int, seconds: float) -> list[Row]:
    rows: list[Row] = []
    with sts_env() as env:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            for name, ahead in (
                ("refresh-ahead (authgw, 900 s)", 900.0),
                ("refresh on the request path", 0.0),
            ):
                calls, slowest, p99 = _refresh_run(ahead, requests, 5, seconds, 1.0)
                rows.append(
                    (
                        f"STS calls per {requests} requests, 5 audiences, {name}",
                        f"{calls}",
                        f"{seconds:.0f} s wall = {seconds * 600 / 3600:.1f} h of 1 h tokens",
                    )
                )
                rows.append(
                    (
                        f"slowest request, 1 s STS latency, {name}",
                        f"{slowest * 1000:.1f} ms",
                        f"p99 {p99 * 1000:.2f} ms",
                    )
                )
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return rows


# -- cold, hosts, start ------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def bench_cold(concurrency: int) -> list[Row]:
    with upstream() as port, sts_env() as extra, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env.update(extra)
        config = Path(tmp) / "gateway.yaml"
        config.write_text(
            textwrap.dedent(f"""\
            version: 1
            routes:
              - name: sts
                hosts: ["127.0.0.1:{port}"]
                token: {{type: sts, audience: dynamic}}
            """)
        )
        gw = mitmdump(["-s", str(addon_script()), "--set", f"authgw_config={config}"], env, tmp)
        endpoint = env["AWS_ENDPOINT_URL_STS"]
        try:
            calls_before = _emulator_calls(endpoint)
            _post_json(endpoint + "/_emulator/faults", {"latency": 0.3})
            barrier = threading.Barrier(concurrency)
            failures: list[str] = []

            def one() -> None:
                barrier.wait(timeout=30)
                try:
                    _drive(gw.port, f"http://127.0.0.1:{port}/", 1)
                except Exception as e:  # noqa: BLE001 - counted, not raised
                    failures.append(type(e).__name__)

            threads = [threading.Thread(target=one) for _ in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            calls = _emulator_calls(endpoint) - calls_before
        finally:
            gw.stop()
    return [
        (
            f"cold start: {concurrency} concurrent requests, new audience -> STS calls",
            str(calls),
            f"{len(failures)} failed requests (target: 1 call)",
        )
    ]


def _emulator_calls(endpoint: str) -> int:
    conn = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", "/_emulator/calls")
        return int(json.loads(conn.getresponse().read())["call_count"])
    finally:
        conn.close()


def _post_json(url: str, body: dict[str, Any]) -> None:
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request("POST", "/" + path, json.dumps(body), {"Content-Type": "application/json"})
        conn.getresponse().read()
    finally:
        conn.close()


class _AnyHostProxy(_Upstream):
    """Stands in for an upstream proxy: answers 200 to every absolute-form request.

    mitmproxy keeps one upstream connection per host a client names; closing them keeps
    100,000 hosts from meaning 100,000 open sockets and threads here.
    """

    close = True


def bench_hosts(hosts: int, max_entries: int) -> list[Row]:
    server = _Server(("127.0.0.1", 0), _AnyHostProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy_port = server.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(
            textwrap.dedent(f"""\
            version: 1
            cache: {{max_entries: {max_entries}}}
            routes:
              - name: any
                hosts: ["*"]
                allow_http: true
                token: {{type: hmac, secret: {{env: BENCH_SECRET}}, audience: dynamic,
                         lifetime: 3600}}
            """)
        )
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env["BENCH_SECRET"] = SECRET
        metrics_sock = socket.socket()
        metrics_sock.bind(("127.0.0.1", 0))
        metrics_port = metrics_sock.getsockname()[1]
        metrics_sock.close()
        gw = mitmdump(
            [
                "--mode",
                f"upstream:http://127.0.0.1:{proxy_port}",
                "-s",
                str(addon_script()),
                "--set",
                f"authgw_config={config}",
                "--set",
                f"authgw_metrics=127.0.0.1:{metrics_port}",
            ],
            env,
            tmp,
        )
        peak_entries = 0.0
        try:
            _drive_hosts(gw.port, range(1000), prefix="warm")  # imports, buffers, first tokens
            rss_before = _status_kib(gw.pid, "VmRSS")
            per_client = hosts // 4
            threads = [
                threading.Thread(
                    target=_drive_hosts, args=(gw.port, range(i * per_client, (i + 1) * per_client))
                )
                for i in range(4)
            ]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                peak_entries = max(
                    peak_entries, _metric(metrics_port, "authgw_token_cache_entries")
                )
                time.sleep(0.5)
            peak_entries = max(peak_entries, _metric(metrics_port, "authgw_token_cache_entries"))
            evictions = _metric(metrics_port, "authgw_token_cache_evictions_total")
            rss_after = _status_kib(gw.pid, "VmRSS")
            hwm = _status_kib(gw.pid, "VmHWM")
        finally:
            gw.stop()
            server.shutdown()
            server.server_close()
    return [
        (
            f"{hosts} distinct hosts, max_entries {max_entries}: peak cache entries",
            f"{peak_entries:.0f}",
            f"{evictions:.0f} evictions (target: never above {max_entries})",
        ),
        (
            f"{hosts} distinct hosts: RSS growth after warm-up",
            f"{(rss_after - rss_before) / 1024:.1f} MB",
            f"RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MB, peak {hwm / 1024:.0f} MB "
            "(target: growth under 50 MB)",
        ),
    ]


def _drive_hosts(proxy_port: int, numbers: range, prefix: str = "h") -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
    try:
        for n in numbers:
            conn.request("GET", f"http://{prefix}{n}.bench.example/")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"unexpected {resp.status}")
    finally:
        conn.close()


def _until_served(args: list[str], env: dict[str, str], cwd: str, url: str) -> float:
    """Seconds from starting mitmdump to its first answered request through the proxy.

    "listening at" comes before mitmdump has loaded and configured its scripts, so
    start-up is measured to the first request that gets an answer.
    """
    started = time.perf_counter()
    gw = mitmdump(args, env, cwd)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _drive(gw.port, url, 1)
                return time.perf_counter() - started
            except (OSError, RuntimeError, http.client.HTTPException):
                time.sleep(0.005)
        raise RuntimeError("mitmdump never answered")
    finally:
        gw.stop()


def bench_start(rounds: int) -> list[Row]:
    rows: list[Row] = []
    with upstream() as port, sts_env() as extra, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env.update(extra)
        url = f"http://127.0.0.1:{port}/"
        configs = {
            "no STS route": gateway_config(port).split("  - name: sts")[0],
            "with an STS route": gateway_config(port),
        }
        times: dict[str, list[float]] = {"no addon": [], **{name: [] for name in configs}}
        for _ in range(rounds):  # in turns, so drift hits all alike
            times["no addon"].append(_until_served([], env, tmp, url))
            for name, text in configs.items():
                config = Path(tmp) / f"{name.replace(' ', '_')}.yaml"
                config.write_text(text)
                args = ["-s", str(addon_script()), "--set", f"authgw_config={config}"]
                times[name].append(_until_served(args, env, tmp, url))
    for name, values in times.items():
        rows.append(
            (
                f"mitmdump start to first answered request, {name}",
                f"{statistics.median(values) * 1000:.0f} ms",
                f"median of {rounds}",
            )
        )
    return rows


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "hook": lambda a: bench_hook(a.calls, a.rounds),
    "cpu": lambda a: bench_cpu(a.requests, a.rounds),
    "refresh": lambda a: bench_refresh(10_000, a.refresh_seconds),
    "cold": lambda a: bench_cold(200),
    "hosts": lambda a: bench_hosts(a.hosts, 1000),
    "start": lambda a: bench_start(a.rounds),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections ({', '.join(SECTIONS)})",
    )
    parser.add_argument("--calls", type=int, default=20000, help="hook calls per round")
    parser.add_argument("--requests", type=int, default=2000, help="requests per cpu turn")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--hosts", type=int, default=100_000, help="distinct hosts (hosts)")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=30.0,
        help="wall seconds the refresh load runs per variant",
    )
    args = parser.parse_args()
    rows: list[Row] = []
    for name in args.only.split(","):
        rows.extend(SECTIONS[name.strip()](args))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"authgw bench on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        "| "
        + " | ".join(h.ljust(w) for h, w in zip(("what", "result", "how"), widths, strict=True))
        + " |"
    )
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
