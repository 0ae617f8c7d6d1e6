"""What the bench sections share: loopback upstreams, the STS emulator's environment,
the gateway config, a mitmdump on a free port, a keep-alive client, /proc and /metrics."""

from __future__ import annotations

import asyncio
import http.client
import itertools
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
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from launcher import LOOPBACK_ANY_PORT, MITMDUMP, Mitmdump
from loopback import get_text

from authgw.cli import addon_script
from authgw.emulator import StsEmulator

T = TypeVar("T")

SECRET = "bench-secret-" + "x" * 40
STATIC = "bench-static-token-0123456789"
Row = tuple[str, str, str]  # what, result, how: one line of the printed table


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # socketserver's 5 makes bursts wait out TCP SYN retries

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a proxy that hung up
            super().handle_error(request, client_address)


class Upstream(BaseHTTPRequestHandler):
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
def upstream(handler: type[BaseHTTPRequestHandler] = Upstream) -> Iterator[int]:
    """The port of an `Upstream` (or `handler`) on 127.0.0.1, served on a thread until the
    block ends."""
    server = Server(("127.0.0.1", 0), handler)
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
    """Environment for boto3 (in this process or a child) to reach a fresh in-process
    StsEmulator, and no other AWS configuration; plus the bench's secrets."""
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


def run_in_process(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` for a section that drives the addon through
    ``mitmproxy.test.taddons``, whose master logs through its (then closed) event loop:
    the root logger's handlers and level are put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return asyncio.run(coro)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without *_PROXY variables (loopback only), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(extra)
    return env


def gateway_config(port: int, *, hmac_only: bool = False) -> str:
    """The bench's routes to the upstream on `port`: an hmac route on 127.0.0.1, and
    (unless `hmac_only`, which keeps boto3 out of the gateway) a static and an sts one."""
    hmac = textwrap.dedent(f"""\
        version: 1
        routes:
          - name: hmac
            hosts: ["127.0.0.1:{port}"]
            token: {{type: hmac, secret: {{env: BENCH_SECRET}}, claims: {{stackmon: dummy}},
                     lifetime: 3600}}
        """)
    if hmac_only:
        return hmac
    others = textwrap.dedent(f"""\
        - name: static
          hosts: ["static.bench:{port}"]
          token: {{type: static, value: {{env: BENCH_STATIC}}}}
        - name: sts
          hosts: ["sts.bench:{port}"]
          token: {{type: sts, audience: dynamic}}
        """)
    return hmac + textwrap.indent(others, "  ")


def mitmdump(args: Sequence[str], env: dict[str, str], cwd: str) -> Mitmdump:
    """A started mitmdump on a free loopback port; its output is kept, not shown."""
    argv = [*MITMDUMP, "--set", "flow_detail=0", *LOOPBACK_ANY_PORT, *args]
    return Mitmdump(argv, env=env, cwd=cwd).start(timeout=30)


def drive(proxy_port: int, url: str, requests: int) -> None:
    """`requests` GETs of `url` through the proxy on one connection; RuntimeError on a non-200."""
    drive_each(proxy_port, itertools.repeat(url, requests))


def drive_each(proxy_port: int, urls: Iterable[str]) -> None:
    """A GET of each of `urls` through the proxy on one connection; RuntimeError on a non-200."""
    exchange(proxy_port, (("GET", url, {}, None) for url in urls))


# One request for `exchange`: method, URL, headers, body.
BenchRequest = tuple[str, str, Mapping[str, str], bytes | None]


def exchange(proxy_port: int, requests: Iterable[BenchRequest]) -> None:
    """Each of `requests` through the proxy on one keep-alive connection; RuntimeError on a
    non-200."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
    try:
        for method, url, headers, body in requests:
            conn.request(method, url, body=body, headers=dict(headers))
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"unexpected {resp.status}")
    finally:
        conn.close()


def gateway_args(config: Path, metrics_port: int | None = None) -> list[str]:
    """mitmdump's arguments for the gateway on `config` (and its metrics port)."""
    args = ["-s", str(addon_script()), "--set", f"authgw_config={config}"]
    if metrics_port is not None:
        args += ["--set", f"authgw_metrics=127.0.0.1:{metrics_port}"]
    return args


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(
    procs: Mapping[str, Mitmdump], run: Callable[[int], None], requests: int, rounds: int
) -> dict[str, float]:
    """Median CPU seconds per request of each mitmdump, `run(port)` sending `requests`
    requests, in turns so that drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in procs}
    for _ in range(rounds):
        for name, proc in procs.items():
            before = cpu_seconds(proc.pid)
            run(proc.port)
            samples[name].append((cpu_seconds(proc.pid) - before) / requests)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_entries_while(threads: Sequence[threading.Thread], metrics_port: int) -> float:
    """Start `threads`, and the most cache entries /metrics showed (every 0.5 s) until
    they end."""
    for t in threads:
        t.start()
    peak = 0.0
    while any(t.is_alive() for t in threads):
        peak = max(peak, metric(metrics_port, "authgw_token_cache_entries"))
        time.sleep(0.5)
    return max(peak, metric(metrics_port, "authgw_token_cache_entries"))


def until_served(proxy_port: int, url: str, timeout: float = 30) -> None:
    """Return once a GET of `url` through the proxy is answered 200.

    "listening at" comes before mitmdump has loaded and configured its scripts.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            drive(proxy_port, url, 1)
            return
        except (OSError, RuntimeError, http.client.HTTPException):
            time.sleep(0.005)
    raise RuntimeError("mitmdump never answered")


def status_kib(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status, e.g. VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of the /metrics samples called `name` whose labels include `labels`; 0 if none."""
    text = get_text(port, "/metrics")
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series != name and not series.startswith(name + "{"):
            continue
        if all(label in series for label in wanted):
            total += float(value)
    return total


def emulator_calls(endpoint: str) -> int:
    """GetWebIdentityToken calls the emulator at `endpoint` has recorded."""
    conn = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=10)
    try:
        conn.request("GET", "/_emulator/calls")
        return int(json.loads(conn.getresponse().read())["call_count"])
    finally:
        conn.close()
