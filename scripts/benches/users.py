"""users: many distinct users through one route with a claim template
(`sub: ${header:X-Debug-User}`) and `max_entries: 100`: the cache's bound and mitmdump's
RSS. Each user renders claims of their own, hence a token and a cache entry of their own."""

from __future__ import annotations

import tempfile
import textwrap
import threading
import time
from pathlib import Path

from benches.common import (
    SECRET,
    Row,
    child_env,
    exchange,
    gateway_args,
    metric,
    mitmdump,
    peak_entries_while,
    status_kib,
    upstream,
)
from loopback import free_port


def _drive_users(proxy_port: int, url: str, users: range) -> None:
    """One keep-alive connection; a GET per user, each with its own X-Debug-User."""
    exchange(proxy_port, (("GET", url, {"X-Debug-User": f"user-{n}"}, None) for n in users))


def bench_users(users: int, max_entries: int) -> list[Row]:
    with upstream() as up_port, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(
            textwrap.dedent(f"""\
            version: 1
            cache: {{max_entries: {max_entries}}}
            routes:
              - name: debug
                hosts: ["127.0.0.1:{up_port}"]
                token:
                  type: hmac
                  secret: {{env: BENCH_SECRET}}
                  lifetime: 3600
                  claims: {{sub: "${{header:X-Debug-User}}", host: "${{host}}"}}
            """)
        )
        metrics_port = free_port()
        gw = mitmdump(
            gateway_args(config, metrics_port),
            child_env({"BENCH_SECRET": SECRET}),
            tmp,
        )
        url = f"http://127.0.0.1:{up_port}/"
        try:
            _drive_users(gw.port, url, range(-1000, 0))  # warm-up: imports, buffers
            rss_before = status_kib(gw.pid, "VmRSS")
            per = users // 4
            threads = [
                threading.Thread(
                    target=_drive_users, args=(gw.port, url, range(i * per, (i + 1) * per))
                )
                for i in range(4)
            ]
            started = time.monotonic()
            peak = peak_entries_while(threads, metrics_port)
            seconds = time.monotonic() - started
            evictions = metric(metrics_port, "authgw_token_cache_evictions_total")
            misses = metric(metrics_port, "authgw_token_cache_misses_total", route="debug")
            rss_after = status_kib(gw.pid, "VmRSS")
            hwm = status_kib(gw.pid, "VmHWM")
        finally:
            gw.stop()
    return [
        (
            f"{users} templated users, max_entries {max_entries}: peak cache entries",
            f"{peak:.0f}",
            f"{evictions:.0f} evictions, {misses:.0f} misses (a token per user), "
            f"{users / seconds:.0f} req/s (target: never above {max_entries})",
        ),
        (
            f"{users} templated users: RSS growth after warm-up",
            f"{(rss_after - rss_before) / 1024:.1f} MB",
            f"RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MB, peak {hwm / 1024:.0f} MB",
        ),
    ]
