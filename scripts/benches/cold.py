"""cold: concurrent requests for a new audience through mitmdump, and the STS calls they make."""

from __future__ import annotations

import http.client
import json
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

from benches.common import (
    Row,
    child_env,
    drive,
    emulator_calls,
    gateway_args,
    mitmdump,
    sts_env,
    upstream,
)


def bench_cold(concurrency: int) -> list[Row]:
    with upstream() as port, sts_env() as extra, tempfile.TemporaryDirectory() as tmp:
        env = child_env(extra)
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
        gw = mitmdump(gateway_args(config), env, tmp)
        endpoint = env["AWS_ENDPOINT_URL_STS"]
        try:
            calls_before = emulator_calls(endpoint)
            _post_json(endpoint + "/_emulator/faults", {"latency": 0.3})
            barrier = threading.Barrier(concurrency)
            failures: list[str] = []

            def one() -> None:
                barrier.wait(timeout=30)
                try:
                    drive(gw.port, f"http://127.0.0.1:{port}/", 1)
                except Exception as e:  # noqa: BLE001 - counted, not raised
                    failures.append(type(e).__name__)

            threads = [threading.Thread(target=one) for _ in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            calls = emulator_calls(endpoint) - calls_before
        finally:
            gw.stop()
    return [
        (
            f"cold start: {concurrency} concurrent requests, new audience -> STS calls",
            str(calls),
            f"{len(failures)} failed requests (target: 1 call)",
        )
    ]


def _post_json(url: str, body: dict[str, Any]) -> None:
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request("POST", "/" + path, json.dumps(body), {"Content-Type": "application/json"})
        conn.getresponse().read()
    finally:
        conn.close()
