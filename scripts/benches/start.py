"""start: mitmdump start-up to the first answered request, without and with the gateway."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benches.common import (
    Row,
    child_env,
    gateway_args,
    gateway_config,
    mitmdump,
    sts_env,
    until_served,
    upstream,
)


def _until_served(args: list[str], env: dict[str, str], cwd: str, url: str) -> float:
    """Seconds from starting mitmdump to its first answered request through the proxy.

    "listening at" comes before mitmdump has loaded and configured its scripts, so
    start-up is measured to the first request that gets an answer.
    """
    started = time.perf_counter()
    gw = mitmdump(args, env, cwd)
    try:
        until_served(gw.port, url)
        return time.perf_counter() - started
    finally:
        gw.stop()


def bench_start(rounds: int) -> list[Row]:
    rows: list[Row] = []
    with upstream() as port, sts_env() as extra, tempfile.TemporaryDirectory() as tmp:
        env = child_env(extra)
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
                args = gateway_args(config)
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
