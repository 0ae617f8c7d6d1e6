from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from authgw.cache import CacheKey, TokenCache
from authgw.config import CacheSettings
from authgw.tokens import MissingSecret, Token, TokenUnavailable
from tests.fakes import FakeClock, FakeSource

KEY = CacheKey("route", ("aud",))

# Each test runs with lazy and with eager tasks (mitmproxy on Python 3.12+).
pytestmark = pytest.mark.usefixtures("task_factory")


class CountingObserver:
    def __init__(self) -> None:
        self.hits = self.misses = self.evictions = 0
        self.fetches: list[str | None] = []

    def hit(self, key: CacheKey) -> None:
        self.hits += 1

    def miss(self, key: CacheKey) -> None:
        self.misses += 1

    def evicted(self, key: CacheKey) -> None:
        self.evictions += 1

    def fetched(self, key: CacheKey, error: TokenUnavailable | None, seconds: float) -> None:
        self.fetches.append(None if error is None else error.error_class)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def make(clock: FakeClock, **settings: Any) -> tuple[TokenCache, FakeSource, CountingObserver]:
    observer = CountingObserver()
    cache = TokenCache(CacheSettings(**settings), clock=clock, observer=observer)
    return cache, FakeSource(clock), observer


async def get(cache: TokenCache, source: FakeSource, key: CacheKey = KEY) -> Token:
    return await cache.get(key, lambda: source.fetch(key.audience))


def test_miss_fetches_and_hit_does_not() -> None:
    clock = FakeClock()
    cache, source, observer = make(clock)

    async def scenario() -> None:
        first = await get(cache, source)
        second = await get(cache, source)
        assert first is second and first.value == "token-1"

    run(scenario())
    assert source.calls == 1
    assert (observer.hits, observer.misses, observer.fetches) == (1, 1, [None])


def test_token_is_not_handed_out_below_min_ttl() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, min_ttl=10, refresh_ahead=0)

    async def scenario() -> None:
        await get(cache, source)
        clock.advance(289)  # 11 s left: still usable
        assert (await get(cache, source)).value == "token-1"
        clock.advance(2)  # 9 s left: below min_ttl
        assert (await get(cache, source)).value == "token-2"

    run(scenario())


def test_bounded_least_recently_used_first() -> None:
    clock = FakeClock()
    cache, source, observer = make(clock, max_entries=3)
    keys = [CacheKey("r", (f"aud{i}",)) for i in range(4)]

    async def scenario() -> None:
        for key in keys[:3]:
            await get(cache, source, key)
        await get(cache, source, keys[0])  # keys[1] is now least recently used
        await get(cache, source, keys[3])
        assert len(cache) == 3
        assert {k for k, _ in cache.items()} == {keys[0], keys[2], keys[3]}

    run(scenario())
    assert observer.evictions == 1


def test_many_distinct_keys_never_exceed_max_entries() -> None:
    clock = FakeClock()
    cache, source, observer = make(clock, max_entries=50)

    async def scenario() -> None:
        for i in range(2000):
            await get(cache, source, CacheKey("r", (f"https://h{i}",)))
            assert len(cache) <= 50

    run(scenario())
    assert observer.evictions == 2000 - 50


def test_concurrent_misses_make_one_fetch() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock)

    async def scenario() -> list[Token]:
        source.gate = asyncio.Event()
        waiters = [asyncio.ensure_future(get(cache, source)) for _ in range(100)]
        await asyncio.sleep(0)
        source.gate.set()
        return await asyncio.gather(*waiters)

    tokens = run(scenario())
    assert source.calls == 1
    assert {t.value for t in tokens} == {"token-1"}


def test_every_waiter_gets_the_error() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock)

    async def scenario() -> list[Any]:
        source.gate = asyncio.Event()
        source.errors.append(TokenUnavailable("AccessDenied", "denied"))
        waiters = [asyncio.ensure_future(get(cache, source)) for _ in range(10)]
        await asyncio.sleep(0)
        source.gate.set()
        return await asyncio.gather(*waiters, return_exceptions=True)

    results = run(scenario())
    assert source.calls == 1
    assert all(isinstance(r, TokenUnavailable) and r.error_class == "AccessDenied" for r in results)


def test_a_cancelled_waiter_does_not_cancel_the_fetch_for_others() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock)

    async def scenario() -> Token:
        source.gate = asyncio.Event()
        leaver = asyncio.ensure_future(get(cache, source))
        stayer = asyncio.ensure_future(get(cache, source))
        await asyncio.sleep(0)
        leaver.cancel()
        await asyncio.sleep(0)
        source.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await leaver
        return await stayer

    assert run(scenario()).value == "token-1"
    assert source.calls == 1


def test_refresh_ahead_serves_the_current_token_while_one_fetch_replaces_it() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, refresh_ahead=60, min_ttl=10)

    async def scenario() -> None:
        await get(cache, source)
        clock.advance(250)  # 50 s left: inside refresh_ahead
        source.gate = asyncio.Event()
        # Requests keep getting the current token without waiting on the source.
        for _ in range(20):
            assert (await get(cache, source)).value == "token-1"
            await asyncio.sleep(0)
        assert source.calls == 2  # one background refresh, not twenty
        source.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert (await get(cache, source)).value == "token-2"

    run(scenario())


def test_failed_refresh_keeps_the_current_token_until_min_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, refresh_ahead=60, min_ttl=10, error_backoff=5)

    async def scenario() -> None:
        await get(cache, source)
        clock.advance(250)
        source.errors.append(TokenUnavailable("Throttling", "slow down"))
        assert (await get(cache, source)).value == "token-1"
        for _ in range(5):
            await asyncio.sleep(0)
        assert (await get(cache, source)).value == "token-1"
        assert source.calls == 2  # backoff: no second refresh right away
        clock.advance(41)  # 9 s left: the old token may not be used any more
        assert (await get(cache, source)).value == "token-3"

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert "background refresh failed (Throttling); keeping the current token" in caplog.text


def test_backoff_answers_at_once_then_retries_with_growing_interval() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, error_backoff=4)

    async def attempt() -> str:
        try:
            return (await get(cache, source)).value
        except TokenUnavailable as e:
            return e.error_class

    async def scenario() -> list[tuple[float, int, str]]:
        source.errors.extend(TokenUnavailable("transport", "down") for _ in range(5))
        seen = []
        for _ in range(60):
            seen.append((clock.now, source.calls, await attempt()))
            clock.advance(0.25)
        return seen

    seen = run(scenario())
    start = seen[0][0]
    fetch_times = [
        t - start
        for t, calls, _ in seen
        if calls != next((c for tt, c, _ in seen if tt > t), calls)
    ]
    # intervals 0.5, 1, 2, 4, 4: the source is asked at 0, 0.5, 1.5, 3.5, 7.5, then succeeds
    assert fetch_times[:5] == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert source.calls == 6
    assert seen[-1][2] == "token-6"
    assert all(r == "transport" for _, _, r in seen[:30])


def test_zero_backoff_asks_every_time() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, error_backoff=0)

    async def scenario() -> None:
        source.errors.extend(TokenUnavailable("transport", "down") for _ in range(3))
        for _ in range(3):
            with pytest.raises(TokenUnavailable):
                await get(cache, source)

    run(scenario())
    assert source.calls == 3


def test_a_fetched_token_below_min_ttl_is_refused() -> None:
    clock = FakeClock()
    cache, source, observer = make(clock, min_ttl=10)
    source.lifetime = 5

    async def scenario() -> None:
        with pytest.raises(TokenUnavailable) as info:
            await get(cache, source)
        assert info.value.error_class == "expired"

    run(scenario())
    assert len(cache) == 0 and observer.fetches == ["expired"]


def test_a_source_bug_fails_closed_as_internal() -> None:
    clock = FakeClock()
    cache, _, _ = make(clock)

    async def broken() -> Token:
        raise RuntimeError("boom")

    async def scenario() -> None:
        with pytest.raises(TokenUnavailable) as info:
            await cache.get(KEY, broken)
        assert info.value.error_class == "internal"

    run(scenario())


def test_tokens_without_expiry_stay_until_dropped() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock)
    source.lifetime = None
    other = CacheKey("other", ())

    async def scenario() -> None:
        await get(cache, source)
        await get(cache, source, other)
        clock.advance(10 * 365 * 86400)
        assert (await get(cache, source)).value == "token-1"
        assert cache.drop(KEY) is True
        assert cache.drop(KEY) is False
        assert (await get(cache, source)).value == "token-3"
        assert cache.drop_route("other") == 1
        assert [k for k, _ in cache.items()] == [KEY]
        assert cache.clear() == 1 and len(cache) == 0

    run(scenario())


def test_failures_lists_only_keys_in_their_backoff_window() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, error_backoff=4)

    async def scenario() -> None:
        source.errors.append(TokenUnavailable("transport", "down"))
        with pytest.raises(TokenUnavailable):
            await get(cache, source)

    run(scenario())
    assert cache.failures()[KEY]["retry_in"] == 0.5 and cache.failures()[KEY]["count"] == 1
    clock.advance(0.5)
    assert cache.failures() == {}


def test_a_fetch_that_never_pauses_leaves_nothing_in_flight() -> None:
    """Under eager tasks such a fetch ends inside create_task(); it must not stay the
    in-flight fetch that every later miss awaits (it would hand out its old token)."""
    clock = FakeClock()
    cache, source, _ = make(clock, refresh_ahead=60, min_ttl=10)

    async def scenario() -> list[str]:
        seen = [(await get(cache, source)).value]
        clock.advance(300)  # expired
        seen.append((await get(cache, source)).value)
        cache.drop(KEY)
        seen.append((await get(cache, source)).value)
        for _ in range(2):
            clock.advance(250)  # inside refresh_ahead: a background refresh each time
            await get(cache, source)
            for _ in range(3):
                await asyncio.sleep(0)
            seen.append((await get(cache, source)).value)
        return seen

    assert run(scenario()) == ["token-1", "token-2", "token-3", "token-4", "token-5"]
    assert source.calls == 5


async def _steady_traffic(
    cache: TokenCache, source: FakeSource, clock: FakeClock, seconds: int
) -> None:
    """One request a second for ``seconds``, letting background refreshes finish."""
    for _ in range(seconds):
        await get(cache, source)
        for _ in range(3):
            await asyncio.sleep(0)
        clock.advance(1)


@pytest.mark.parametrize(
    ("lifetime", "settings", "per_life"),
    [
        (60, {}, 2.0),  # refresh_ahead 60 capped at half the life: a call every 30 s
        (61, {}, 61 / 31),  # half of 61 is 30.5: the first request at 31 s refreshes
        (120, {}, 2.0),
        (3600, {}, 3600 / 3540),  # the default margin, 60 s
        (60, {"refresh_ahead": 10}, 60 / 50),
        (60, {"refresh_ahead": 0}, 60 / 50),  # no refresh ahead: min_ttl (10 s) blocks
        (120, {"refresh_ahead": 119, "min_ttl": 1}, 2.0),
    ],
)
def test_source_calls_per_token_life_under_steady_traffic(
    lifetime: int, settings: dict[str, float], per_life: float
) -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, **settings)
    source.lifetime = lifetime
    lives = 10
    run(_steady_traffic(cache, source, clock, lives * lifetime))
    assert source.calls / lives == pytest.approx(per_life, abs=0.11)


def test_a_token_born_near_expiry_is_not_refreshed_on_every_request() -> None:
    """A source whose tokens come back with less life than the margin: the guard holds
    refreshes to one per REFRESH_GUARD seconds, not one per request."""
    clock = FakeClock()
    cache, source, _ = make(clock, refresh_ahead=60, min_ttl=1)
    source.lifetime = 4  # below REFRESH_GUARD: refreshed only when it runs out
    run(_steady_traffic(cache, source, clock, 120))
    assert source.calls <= 120 / 3 + 1


def test_the_margin_is_half_the_life_the_token_states() -> None:
    """``exp - iat`` is the life, whenever the source fetched it."""
    clock = FakeClock()
    cache, _, _ = make(clock, refresh_ahead=60, min_ttl=10)
    calls: list[float] = []

    async def fetch() -> Token:
        calls.append(clock())
        # Issued 40 s before we fetched it, valid for 100 s in all: refresh 50 s ahead.
        return Token("t", "fake", issued_at=clock() - 40, expires_at=clock() + 60)

    async def scenario() -> None:
        for _ in range(15):
            await cache.get(KEY, fetch)
            await asyncio.sleep(0)
            clock.advance(1)

    run(scenario())
    start = calls[0]
    assert [c - start for c in calls] == [0, 10]


def test_a_remembered_failure_holds_no_traceback_and_no_request() -> None:
    """Re-raising one stored error object grew its traceback by every request's frames
    (and kept each request's locals alive): 124 MB of bodies under a failing source."""
    clock = FakeClock()
    cache, source, _ = make(clock, error_backoff=600)

    class Body:
        alive = 0

        def __init__(self) -> None:
            Body.alive += 1

        def __del__(self) -> None:
            Body.alive -= 1

    async def request() -> TokenUnavailable:
        body = Body()  # a request's local: a traceback through this frame would keep it
        try:
            await get(cache, source)
        except TokenUnavailable as e:
            assert body is not None
            return e
        raise AssertionError("no error")

    async def scenario() -> list[TokenUnavailable]:
        source.errors.append(TokenUnavailable("transport", "down"))
        return [await request() for _ in range(20)]

    errors = run(scenario())
    distinct = len({id(e) for e in errors})  # a fresh error for every request
    said = {(e.error_class, str(e)) for e in errors}
    del errors  # (asserted on after, so no assertion's temporaries hold the list)
    gc.collect()
    assert source.calls == 1 and distinct == 20 and said == {("transport", "down")}
    # The first request met the fetch's own error (its traceback ends in that request);
    # none of the 19 that met the remembered one is kept.
    assert Body.alive <= 1
    failure = next(iter(cache._failures.values()))
    assert failure.error().__traceback__ is None and failure.error().__cause__ is None


def test_a_remembered_failure_keeps_its_type() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, error_backoff=600)

    async def twice() -> list[BaseException]:
        source.errors.append(MissingSecret("env var X is not set or empty"))
        results = []
        for _ in range(2):
            try:
                await get(cache, source)
            except TokenUnavailable as e:
                results.append(e)
        return results

    first, second = run(twice())
    assert type(second) is MissingSecret and second.error_class == "missing_secret"
    assert str(second) == str(first) and source.calls == 1


def test_a_fetch_for_a_dropped_generation_answers_its_waiters_but_is_not_kept() -> None:
    """A reload changed the route while its fetch ran: the new settings never get it."""
    clock = FakeClock()
    cache, source, _ = make(clock)
    old, new = KEY._replace(generation=1), KEY._replace(generation=2)

    async def scenario() -> tuple[Token, Token]:
        cache.live({"route": 1})
        source.gate = asyncio.Event()
        waiter = asyncio.ensure_future(get(cache, source, old))
        await asyncio.sleep(0)
        cache.live({"route": 2})  # the reload swaps in generation 2 while the fetch runs
        source.gate.set()
        served_old = await waiter
        assert len(cache) == 0
        return served_old, await get(cache, source, new)

    served_old, served_new = run(scenario())
    assert served_old.value == "token-1" and served_new.value == "token-2"
    assert [k.generation for k, _ in cache.items()] == [2]


def test_live_drops_tokens_and_failures_of_other_generations() -> None:
    clock = FakeClock()
    cache, source, _ = make(clock, error_backoff=600)
    kept, dropped = KEY._replace(generation=1), CacheKey("gone", ("aud",), None, 1)

    async def scenario() -> None:
        await get(cache, source, kept)
        await get(cache, source, dropped)
        source.errors.append(TokenUnavailable("transport", "down"))
        with pytest.raises(TokenUnavailable):
            await get(cache, source, KEY._replace(audience=("other",), generation=1))

    run(scenario())
    cache.live({"route": 1})
    assert [k for k, _ in cache.items()] == [kept] and len(cache.failures()) == 1
    cache.live({"route": 2})
    assert len(cache) == 0 and cache.failures() == {}


def test_close_cancels_every_fetch_and_its_waiters_fail_closed() -> None:
    """A waiter gets a TokenUnavailable (a 502), not the fetch's CancelledError: out of a
    mitmproxy hook that would leave the request hanging."""
    clock = FakeClock()
    cache, source, _ = make(clock)

    async def scenario() -> BaseException | Token:
        source.gate = asyncio.Event()  # never set: the fetch would wait forever
        waiter = asyncio.ensure_future(get(cache, source))
        await asyncio.sleep(0)
        cache.close()
        result = (await asyncio.gather(waiter, return_exceptions=True))[0]
        assert not cache._background
        return result

    error = run(scenario())
    assert isinstance(error, TokenUnavailable) and error.error_class == "internal"
