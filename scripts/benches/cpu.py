"""cpu: mitmdump's CPU time per request, plain, with --modify-headers and with the gateway."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from benches.common import (
    STATIC,
    Row,
    child_env,
    drive,
    gateway_config,
    mitmdump,
    sts_env,
    upstream,
)

from authgw.cli import addon_script


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
                drive(proc.port, url, 200)  # warm up: imports, connections, the cache
            for _ in range(rounds):
                for name, proc in procs.items():  # in turns, so drift hits all alike
                    before = _cpu_seconds(proc.pid)
                    drive(proc.port, url, requests)
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
