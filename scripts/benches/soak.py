"""soak: keep-alive clients through mitmdump for minutes on short-lived tokens: requests,
errors, source calls per token life (sts and hmac routes) and mitmdump's RSS over time."""

from __future__ import annotations

import http.client
import tempfile
import textwrap
import threading
import time
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

WARM_UP = 25.0  # seconds of the run before the warm RSS sample, at most (10% of a short run)
ERROR_PAUSE = 0.1  # after a failed request, so a dead proxy is not a busy loop


def _soak_config(sts_port: int, hmac_port: int, metrics_port: int, life: int) -> str:
    return textwrap.dedent(f"""\
        version: 1
        metrics: "127.0.0.1:{metrics_port}"
        routes:
          - name: sts
            hosts: ["127.0.0.1:{sts_port}"]
            token: {{type: sts, audience: ["https://soak.bench.example"], duration: {life}}}
          - name: hmac
            hosts: ["127.0.0.1:{hmac_port}"]
            token: {{type: hmac, secret: {{env: BENCH_SECRET}}, lifetime: {life}}}
        """)


def _client(proxy_port: int, url: str, deadline: float, tally: list[int]) -> None:
    """GET `url` through the proxy on one keep-alive connection until `deadline`.

    tally[0] counts 200s, tally[1] other answers and exceptions (then a new connection).
    """
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < deadline:
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


def bench_soak(clients: int, minutes: float, life: int) -> list[Row]:
    if clients < 2:
        raise ValueError("soak needs at least 2 clients, one per route")
    seconds = minutes * 60
    warm_up = min(WARM_UP, seconds / 10)
    with (
        upstream() as sts_port,
        upstream() as hmac_port,
        sts_env() as extra,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = child_env(extra)
        metrics_port = free_port()
        config = Path(tmp) / "gateway.yaml"
        config.write_text(_soak_config(sts_port, hmac_port, metrics_port, life))
        gw = mitmdump(gateway_args(config), env, tmp)
        urls = {"sts": f"http://127.0.0.1:{sts_port}/", "hmac": f"http://127.0.0.1:{hmac_port}/"}
        try:
            for url in urls.values():
                until_served(gw.port, url)
            rss_start = status_kib(gw.pid, "VmRSS")
            begin = time.monotonic()
            deadline = begin + seconds
            routes = [("sts", "hmac")[i % 2] for i in range(clients)]
            tallies = [[0, 0] for _ in routes]
            threads = [
                threading.Thread(
                    target=_client, args=(gw.port, urls[route], deadline, tally), daemon=True
                )
                for route, tally in zip(routes, tallies, strict=True)
            ]
            for t in threads:
                t.start()
            time.sleep(max(0.0, begin + warm_up - time.monotonic()))
            rss_warm = status_kib(gw.pid, "VmRSS")
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()) + 60)
            elapsed = time.monotonic() - begin
            rss_end = status_kib(gw.pid, "VmRSS")
            sts_calls = emulator_calls(env["AWS_ENDPOINT_URL_STS"])
            signatures = metric(metrics_port, "authgw_token_fetch_total", route="hmac")
        finally:
            gw.stop()
    served = dict.fromkeys(urls, 0)
    for route, (ok, _) in zip(routes, tallies, strict=True):
        served[route] += ok
    errors = sum(failed for _, failed in tallies)
    lives = elapsed / life
    what = f"soak, {clients} clients x {minutes:g} min, {life} s tokens"
    return [
        (
            f"{what}: requests served",
            f"{sum(served.values())}",
            f"{sum(served.values()) / elapsed:.0f}/s (sts {served['sts']}, hmac {served['hmac']})",
        ),
        (f"{what}: errors", f"{errors}", "non-200 answers and exceptions (target: 0)"),
        (
            f"{what}: STS calls per token life",
            f"{sts_calls / lives:.1f}",
            f"{sts_calls} calls in {elapsed:.0f} s = {lives:.1f} lives, the first fetch included "
            "(target: about 2, a refresh at half life)",
        ),
        (
            f"{what}: HMAC signatures per token life",
            f"{signatures / lives:.1f}",
            f"{signatures:.0f} signatures (authgw_token_fetch_total) in {elapsed:.0f} s "
            "(target: about 2)",
        ),
        (
            f"{what}: mitmdump RSS at start / after warm-up / at end",
            f"{rss_start / 1024:.0f} / {rss_warm / 1024:.0f} / {rss_end / 1024:.0f} MB",
            f"growth after the first {warm_up:.0f} s: {(rss_end - rss_warm) / 1024:+.1f} MB",
        ),
    ]
