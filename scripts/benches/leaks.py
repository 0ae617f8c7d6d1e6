"""leaks: the leak check's cost per request, by how many secrets the gateway holds.

In this process, through `mitmproxy.test.taddons`: a config of N static routes (each
with its own secret and placeholder) and a request to a host none of them covers, which
carries none of the secrets, with a body of 1 KiB and 1 MiB; the addon's two request
hooks (`requestheaders`, `request`: the head and the body are searched), with
`leak_check: block` beside `leak_check: off`.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benches.common import Row, run_in_process

from authgw.addon import AuthGateway

SECRETS = (1, 100, 1000)
BODIES = {"1 KiB": 1 << 10, "1 MiB": 1 << 20}


def _config(n: int, mode: str) -> str:
    routes = "".join(
        f"  - {{name: r{i}, hosts: [h{i}.example], placeholder: ph-bench-{i:06d}-placeholder, "
        f"token: {{type: static, value: {{env: BENCH_LEAK_{i}}}}}}}\n"
        for i in range(n)
    )
    return f"version: 1\nleak_check: {mode}\nroutes:\n{routes}"


async def _time(addon: AuthGateway, body: bytes, calls: int) -> float:
    from mitmproxy.test import tflow, tutils

    flows = []
    for _ in range(calls):
        req = tutils.treq(host="elsewhere.example", port=443, scheme=b"https", content=body)
        flows.append(tflow.tflow(req=req))
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    for f in flows:
        for hook in (addon.requestheaders, addon.request):
            result: Any = hook(f)
            if result is not None:
                await result
    spent = time.perf_counter() - start
    gc.enable()
    assert all(f.response is None for f in flows), "a request without a secret was refused"
    return spent / calls * 1e6


def bench_leaks(rounds: int) -> list[Row]:
    from mitmproxy.test import taddons

    for i in range(max(SECRETS)):
        os.environ[f"BENCH_LEAK_{i}"] = f"bench-leak-secret-{i:06d}-" + "x" * 24
    body_of = {name: (b"q=1&" + b"a" * size)[:size] for name, size in BODIES.items()}

    async def measure() -> dict[tuple[int, str, str], float]:
        results: dict[tuple[int, str, str], float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for n in SECRETS:
                for mode in ("block", "off"):
                    path = Path(tmp) / f"{n}-{mode}.yaml"
                    path.write_text(_config(n, mode))
                    addon = AuthGateway()
                    with taddons.context(addon) as tctx:
                        tctx.configure(addon, authgw_config=str(path))
                        for name, body in body_of.items():
                            calls = 200 if len(body) > 100_000 else 2000
                            times = [await _time(addon, body, calls) for _ in range(rounds)]
                            results[(n, name, mode)] = statistics.median(times)
                        addon.done()
        return results

    results = run_in_process(measure())
    rows: list[Row] = []
    for n in SECRETS:
        for name in BODIES:
            on, off = results[(n, name, "block")], results[(n, name, "off")]
            rows.append(
                (
                    f"request hooks, {n} secrets held, {name} body",
                    f"{on:.1f} us ({on - off:+.1f} us)",
                    f"leak_check: block (beside off: {off:.1f} us); median of {rounds} rounds",
                )
            )
    return rows
