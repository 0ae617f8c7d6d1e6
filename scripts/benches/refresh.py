"""refresh: STS calls and the slowest request while tokens refresh under steady load,
refresh-ahead beside refresh on the request path, on a clock 600x the wall clock."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from benches.common import Row, sts_env

from authgw.emulator import StsEmulator


class FastClock:
    """Wall time that runs ``speed`` times faster from the moment it is made."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.start_wall = time.time()
        self.start_mono = time.monotonic()

    def __call__(self) -> float:
        return self.start_wall + (time.monotonic() - self.start_mono) * self.speed


def _refresh_run(
    refresh_ahead: float, requests: int, audiences: int, seconds: float, latency: float
) -> tuple[int, float, float]:
    from authgw.cache import CacheKey, TokenCache
    from authgw.config import CacheSettings, StsTokenConfig
    from authgw.sources.sts import StsSource

    speed = 600.0
    clock = FastClock(speed)
    with StsEmulator(clock=clock) as sts:
        config = StsTokenConfig(audience="dynamic", duration=3600, endpoint_url=sts.url)
        source = StsSource("bench", config, clock=clock)
        settings = CacheSettings(
            max_entries=100, refresh_ahead=refresh_ahead, min_ttl=10, error_backoff=5
        )
        auds = [(f"https://svc{i}.example",) for i in range(audiences)]

        async def run() -> list[float]:
            cache = TokenCache(settings, clock=clock)
            for aud in auds:  # cold start is not what this measures
                await cache.get(CacheKey("bench", aud), lambda a=aud: source.fetch(a))
            sts.set_latency(latency)
            sts.clear_calls()
            waits: list[float] = []

            async def one(i: int) -> None:
                aud = auds[i % audiences]
                started = time.perf_counter()
                await cache.get(CacheKey("bench", aud), lambda: source.fetch(aud))
                waits.append(time.perf_counter() - started)

            gap = seconds / requests
            tasks = []
            begin = time.perf_counter()
            for i in range(requests):  # steady load: one request every `gap` seconds
                tasks.append(asyncio.ensure_future(one(i)))
                delay = begin + (i + 1) * gap - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
            await asyncio.gather(*tasks)
            await cache.aclose()
            return waits

        waits = asyncio.run(run())
        return sts.call_count, max(waits), statistics.quantiles(waits, n=100)[98]


def bench_refresh(requests: int, seconds: float) -> list[Row]:
    rows: list[Row] = []
    with sts_env() as env:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            for name, ahead in (
                ("refresh-ahead (authgw, 900 s)", 900.0),
                ("refresh on the request path", 0.0),
            ):
                calls, slowest, p99 = _refresh_run(ahead, requests, 5, seconds, 1.0)
                rows.append(
                    (
                        f"STS calls per {requests} requests, 5 audiences, {name}",
                        f"{calls}",
                        f"{seconds:.0f} s wall = {seconds * 600 / 3600:.1f} h of 1 h tokens",
                    )
                )
                rows.append(
                    (
                        f"slowest request, 1 s STS latency, {name}",
                        f"{slowest * 1000:.1f} ms",
                        f"p99 {p99 * 1000:.2f} ms",
                    )
                )
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return rows
