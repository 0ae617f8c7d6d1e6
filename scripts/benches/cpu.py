"""cpu: mitmdump's CPU time per request, plain, with --modify-headers and with the gateway."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benches.common import (
    STATIC,
    Row,
    child_env,
    cpu_per_request,
    drive,
    gateway_args,
    gateway_config,
    mitmdump,
    sts_env,
    upstream,
)


def bench_cpu(requests: int, rounds: int) -> list[Row]:
    rows: list[Row] = []
    with upstream() as port, sts_env() as extra, tempfile.TemporaryDirectory() as tmp:
        env = child_env(extra)
        config = Path(tmp) / "gateway.yaml"
        config.write_text(gateway_config(port))
        variants: dict[str, list[str]] = {
            "plain mitmdump": [],
            "--modify-headers static token": [
                "--modify-headers",
                f"/~q/Authorization/Bearer {STATIC}",
            ],
            "gateway, cached hmac token": gateway_args(config),
        }
        procs = {name: mitmdump(args, env, tmp) for name, args in variants.items()}
        url = f"http://127.0.0.1:{port}/"
        try:
            for proc in procs.values():
                drive(proc.port, url, 200)  # warm up: imports, connections, the cache
            costs = cpu_per_request(
                procs, lambda proxy: drive(proxy, url, requests), requests, rounds
            )
        finally:
            for proc in procs.values():
                proc.stop()
    plain = costs["plain mitmdump"]
    for name, cost in costs.items():
        rows.append(
            (
                f"mitmdump CPU/request, {name}",
                f"{cost * 1e6:.0f} us",
                f"x{cost / plain:.3f} of plain (median of {rounds} turns x {requests})",
            )
        )
    return rows
