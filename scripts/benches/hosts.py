"""hosts: many distinct hosts through a `*` route with `audience: dynamic`: the cache's
bound and mitmdump's RSS (upstream mode towards a stand-in proxy: no name is resolved)."""

from __future__ import annotations

import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

from benches.common import (
    SECRET,
    Row,
    Server,
    Upstream,
    child_env,
    drive_each,
    gateway_args,
    metric,
    mitmdump,
    peak_entries_while,
    status_kib,
)
from loopback import free_port


class _AnyHostProxy(Upstream):
    """Stands in for an upstream proxy: answers 200 to every absolute-form request.

    mitmproxy keeps one upstream connection per host a client names; closing them keeps
    100,000 hosts from meaning 100,000 open sockets and threads here.
    """

    close = True


def bench_hosts(hosts: int, max_entries: int) -> list[Row]:
    server = Server(("127.0.0.1", 0), _AnyHostProxy)
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
        env = child_env({"BENCH_SECRET": SECRET})
        metrics_port = free_port()
        gw = mitmdump(
            [
                "--mode",
                f"upstream:http://127.0.0.1:{proxy_port}",
                *gateway_args(config, metrics_port),
            ],
            env,
            tmp,
        )
        try:
            # imports, buffers, first tokens
            drive_each(gw.port, _host_urls(range(1000), prefix="warm"))
            rss_before = status_kib(gw.pid, "VmRSS")
            per_client = hosts // 4
            threads = [
                threading.Thread(
                    target=drive_each,
                    args=(gw.port, _host_urls(range(i * per_client, (i + 1) * per_client))),
                )
                for i in range(4)
            ]
            peak_entries = peak_entries_while(threads, metrics_port)
            evictions = metric(metrics_port, "authgw_token_cache_evictions_total")
            rss_after = status_kib(gw.pid, "VmRSS")
            hwm = status_kib(gw.pid, "VmHWM")
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


def _host_urls(numbers: range, prefix: str = "h") -> Iterator[str]:
    return (f"http://{prefix}{n}.bench.example/" for n in numbers)
