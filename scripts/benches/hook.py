"""hook: the addon's `request` hook on a cached token, per source, in this process."""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benches.common import Row, gateway_config, run_in_process, sts_env

from authgw.addon import AuthGateway


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

        results = run_in_process(measure())
        for source, us in results.items():
            rows.append(
                (
                    f"request hook, cached {source} token",
                    f"{us:.1f} us/call",
                    f"median of {rounds} x {calls} calls",
                )
            )
    return rows
