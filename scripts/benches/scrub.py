"""scrub: the addon's response hooks on a routed flow, scrubbing on beside scrubbing off.

In this process, through `mitmproxy.test.taddons`: an hmac route's flow is decided
(a cached token), then its response goes through `responseheaders` and `response` as
mitmproxy calls them. The bodies: 2 bytes (what the peers upstream answers), a 4 KB JSON
document, the same gzip-encoded, and 1 MB; each without the credential (the cost every
response pays) and, for the 4 KB ones, with it echoed (the cost of a replacement). The
same route with `scrub_responses: false` is the baseline.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benches.common import Row, gateway_config, run_in_process

from authgw.addon import AuthGateway

_DOC = json.dumps([{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(90)])


def _bodies(token: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    echo = _DOC[:-1] + f', {{"authorization": "Bearer {token}"}}]'
    return {
        "2 B": (b"ok", {}),
        "4 KB JSON": (_DOC.encode(), {}),
        "4 KB JSON, gzip": (gzip.compress(_DOC.encode()), {"Content-Encoding": "gzip"}),
        "1 MB": (os.urandom(1 << 19).hex().encode(), {}),
        "4 KB JSON echoing the token": (echo.encode(), {}),
        "4 KB JSON echoing the token, gzip": (
            gzip.compress(echo.encode()),
            {"Content-Encoding": "gzip"},
        ),
    }


async def _time(
    addon: AuthGateway, make: Callable[[], Any], body: bytes, headers: dict[str, str], calls: int
) -> float:
    from mitmproxy.test import tutils

    flows = []
    for _ in range(calls):
        f = make()
        result = addon.request(f)
        if result is not None:
            await result
        f.response = tutils.tresp(content=b"")
        f.response.headers.update(headers)
        f.response.raw_content = body
        flows.append(f)
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    headers_hook = getattr(addon, "responseheaders", None)  # bound only while streams may be
    for f in flows:
        if headers_hook is not None:
            headers_hook(f)
        addon.response(f)
    spent = time.perf_counter() - start
    gc.enable()
    return spent / calls * 1e6


def bench_scrub(calls: int, rounds: int) -> list[Row]:
    from mitmproxy.test import taddons, tflow, tutils

    calls = min(calls, 2000)  # each flow holds its body: bounded memory
    on_off = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_SECRET"] = "bench-secret-" + "0" * 32
        for name, extra in (("on", ""), ("off", "    scrub_responses: false\n")):
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(gateway_config(8443, hmac_only=True) + extra)
            on_off[name] = path

        async def measure() -> dict[tuple[str, str], float]:
            results: dict[tuple[str, str], float] = {}
            for mode, config in on_off.items():
                addon = AuthGateway()
                with taddons.context(addon) as tctx:
                    tctx.configure(addon, authgw_config=str(config))

                    def make() -> Any:
                        req = tutils.treq(host="127.0.0.1", port=8443, scheme=b"https")
                        return tflow.tflow(req=req)

                    warm = make()
                    await asyncio.sleep(0)
                    pending = addon.request(warm)
                    if pending is not None:
                        await pending
                    token = warm.request.headers.fields[-1][1]  # the Masked value: its bytes
                    token = bytes(token).decode().removeprefix("Bearer ")
                    for label, (body, headers) in _bodies(token).items():
                        n = calls if len(body) < 100_000 else calls // 20
                        times = [await _time(addon, make, body, headers, n) for _ in range(rounds)]
                        results[(label, mode)] = statistics.median(times)
                    addon.done()
            return results

        results = run_in_process(measure())
    rows: list[Row] = []
    for label in _bodies("x"):
        on, off = results[(label, "on")], results[(label, "off")]
        rows.append(
            (
                f"response hooks, {label}",
                f"{on:.1f} us ({on - off:+.1f} us)",
                f"scrub_responses on (beside off: {off:.1f} us); median of {rounds} rounds",
            )
        )
    return rows
