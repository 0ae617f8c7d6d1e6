"""TokenCache: bounded, expiry-aware, single-flight, refresh-ahead, with error backoff.

The rules a caller may rely on, all per cache key:

- at most ``max_entries`` tokens are held; the least recently used goes first;
- a token with fewer than ``min_ttl`` seconds left is never handed out;
- concurrent misses make one fetch; every waiter gets its token or its error, and a
  waiter that is cancelled (a client that went away) does not cancel the fetch;
- a token with fewer than ``refresh_ahead`` seconds left (at most half its life:
  ``exp - iat``, else ``exp`` minus the time it was fetched) is still handed out while
  one background fetch replaces it; if that fetch fails, the old token is kept
  (until ``min_ttl``) and a warning logged. Whatever the margin, a token is not
  refreshed before it is ``REFRESH_GUARD`` seconds old, so a source that hands out
  tokens already near expiry is not asked on every request;
- a failed fetch is remembered for a growing interval (``error_backoff / 8``,
  doubling, capped at ``error_backoff``); in that window a miss fails at once with
  the remembered error instead of asking the source again. What is remembered is the
  error's class and message: never a traceback, and so never a request's frames;
- a key holds the generation of its route's settings; once the owner says which
  generations are live (``live``), a fetch that ends for another generation (a reload
  changed or dropped the route while it ran) answers its waiters but is not kept, nor
  is its failure;
- ``close`` cancels every fetch; its waiters get ``TokenUnavailable("internal")``, never
  a ``CancelledError`` (a hook that raised one would leave its request hanging).

Like botocore's RefreshableCredentials, the advisory margin (``refresh_ahead``)
refreshes in the background and the mandatory one (``min_ttl``) blocks. All times
are on one injected wall clock, because JWT ``exp`` and STS ``Expiration`` are wall
times. The cache is used from the event loop thread only (cachetools is not
thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from cachetools import LRUCache, TLRUCache

from authgw.config import CacheSettings
from authgw.logs import internal_error
from authgw.tokens import Token, TokenUnavailable, remade

logger = logging.getLogger(__name__)

Fetcher = Callable[[], Awaitable[Token]]

REFRESH_GUARD = 5.0  # seconds: a token younger than this is never refreshed ahead


class CacheKey(NamedTuple):
    """The route plus everything that changes the token.

    ``params`` holds source settings and secret fingerprints, never a secret;
    ``generation`` is the route's settings' generation (its source's: a reload that
    changes the route builds a new source). A tuple: it is made and hashed on every
    request, which a frozen dataclass does in Python.
    """

    route: str
    audience: tuple[str, ...] = ()
    params: Hashable = None
    generation: int = 0


class CacheObserver(Protocol):
    """Receives what metrics need to know; every method must be cheap and not raise."""

    def hit(self, key: CacheKey) -> None: ...
    def miss(self, key: CacheKey) -> None: ...
    def evicted(self, key: CacheKey) -> None: ...
    def fetched(self, key: CacheKey, error: TokenUnavailable | None, seconds: float) -> None: ...


class _NoObserver:
    def hit(self, key: CacheKey) -> None:
        pass

    def miss(self, key: CacheKey) -> None:
        pass

    def evicted(self, key: CacheKey) -> None:
        pass

    def fetched(self, key: CacheKey, error: TokenUnavailable | None, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class _Failure:
    """A remembered failure: the error's type, class and message, nothing it referred to."""

    kind: type[TokenUnavailable]
    error_class: str
    message: str
    count: int
    until: float

    def error(self) -> TokenUnavailable:
        return remade(self.kind, self.error_class, self.message)


@dataclass(frozen=True)
class _Entry:
    token: Token
    refresh_at: float  # when a hit starts the background refresh (inf: never)


class _Store(TLRUCache[CacheKey, _Entry]):
    """TLRUCache that reports LRU evictions (not expiries) to a callback."""

    def __init__(
        self,
        maxsize: int,
        ttu: Callable[[CacheKey, _Entry, float], float],
        timer: Callable[[], float],
        on_evict: Callable[[CacheKey], None],
    ) -> None:
        super().__init__(maxsize, ttu, timer)
        self._on_evict = on_evict

    def popitem(self) -> tuple[CacheKey, _Entry]:
        key, value = super().popitem()
        self._on_evict(key)
        return key, value


class TokenCache:
    def __init__(
        self,
        settings: CacheSettings,
        *,
        clock: Callable[[], float] = time.time,
        observer: CacheObserver | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._observer: CacheObserver = observer or _NoObserver()
        self._tokens = _Store(settings.max_entries, self._ttu, clock, self._observer.evicted)
        self._inflight: dict[CacheKey, asyncio.Task[Token]] = {}
        self._failures: LRUCache[CacheKey, _Failure] = LRUCache(settings.max_entries)
        self._background: set[asyncio.Task[Token]] = set()
        self._warned_short: set[str] = set()
        self._live: dict[str, int] | None = None  # route -> generation; None: keep all

    def _ttu(self, key: CacheKey, entry: _Entry, now: float) -> float:
        expires_at = entry.token.expires_at
        return float("inf") if expires_at is None else expires_at - self.settings.min_ttl

    def _entry(self, key: CacheKey, token: Token, fetched_at: float) -> _Entry:
        """The token with the time its refresh starts: ``refresh_ahead`` before expiry, at
        most half its life, and never before it is REFRESH_GUARD seconds old."""
        if token.expires_at is None:
            return _Entry(token, float("inf"))
        born = token.issued_at if token.issued_at is not None else fetched_at
        life = token.expires_at - min(born, fetched_at)
        margin = min(self.settings.refresh_ahead, life / 2)
        if life < self.settings.min_ttl + self.settings.refresh_ahead:
            self._note_short(key, life)
        return _Entry(token, max(token.expires_at - margin, fetched_at + REFRESH_GUARD))

    def _note_short(self, key: CacheKey, life: float) -> None:
        if key.route in self._warned_short:
            return
        self._warned_short.add(key.route)
        logger.info(
            "route %s: the source hands out tokens of %d s, shorter than min_ttl + "
            "refresh_ahead (%g s); each is refreshed at most half its life ahead",
            key.route,
            int(life),
            self.settings.min_ttl + self.settings.refresh_ahead,
        )

    def peek(self, key: CacheKey, fetch: Fetcher) -> Token | None:
        """The cached token for ``key`` if it is usable, without waiting; None on a miss.

        A hit counts as one and starts the refresh-ahead as ``get`` does, so a caller can
        serve hits synchronously and ``await get`` only on a miss.
        """
        try:
            entry = self._tokens[key]  # not .get(): that is `in` and then [], two lookups
        except KeyError:
            return None
        self._observer.hit(key)
        if self._clock() >= entry.refresh_at:
            self._refresh_in_background(key, fetch)
        return entry.token

    async def get(self, key: CacheKey, fetch: Fetcher) -> Token:
        """A usable token for ``key``, fetching with ``fetch`` if need be.

        Raises ``TokenUnavailable`` when the fetch fails or a failure is remembered.
        """
        token = self.peek(key, fetch)
        if token is not None:
            return token
        self._observer.miss(key)
        task = self._inflight.get(key)
        if task is None:
            failure = self._backing_off(key)
            if failure is not None:
                raise failure.error()
            task = self._start_fetch(key, fetch)
        # shield: a waiter's cancellation must not cancel the fetch the others wait on.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # The fetch was cancelled (``close``), not this waiter: a CancelledError out
                # of a mitmproxy hook would leave the request hanging. Fail closed instead.
                raise TokenUnavailable(
                    "internal", "the token cache was closed (reload or shutdown) while fetching"
                ) from None
            raise

    def _backing_off(self, key: CacheKey) -> _Failure | None:
        """The failure remembered for ``key`` while its backoff window lasts."""
        failure = self._failures.get(key)
        return failure if failure is not None and self._clock() < failure.until else None

    def _refresh_in_background(self, key: CacheKey, fetch: Fetcher) -> None:
        if key in self._inflight or self._backing_off(key) is not None:
            return
        task = self._start_fetch(key, fetch)
        task.add_done_callback(lambda t: self._refresh_done(key, t))

    def _refresh_done(self, key: CacheKey, task: asyncio.Task[Token]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        current = self._tokens.get(key)
        left = current.token.seconds_left(self._clock()) if current is not None else None
        logger.warning(
            "route %s: background refresh failed (%s); keeping the current token (%s s left)",
            key.route,
            getattr(error, "error_class", "internal"),
            "?" if left is None else int(left),
        )

    def _start_fetch(self, key: CacheKey, fetch: Fetcher) -> asyncio.Task[Token]:
        task = asyncio.get_running_loop().create_task(self._fetch(key, fetch))
        # With eager tasks (mitmproxy on Python 3.12+) a fetch that never pauses has
        # finished inside create_task(): it must not be left in _inflight, where every
        # later miss would await it and get its old token.
        if not task.done():
            self._inflight[key] = task
        self._background.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Token]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a fetch nobody waits for must not warn

    async def _fetch(self, key: CacheKey, fetch: Fetcher) -> Token:
        started = self._clock()
        try:
            try:
                token = await fetch()
            except TokenUnavailable:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # A bug in a source must still fail closed and be remembered, not crash.
                internal_error(
                    logger, "route %s: token source raised %s", key.route, type(e).__name__
                )
                raise TokenUnavailable(
                    "internal", f"token source raised {type(e).__name__}"
                ) from None
            left = token.seconds_left(self._clock())
            if left is not None and left < self.settings.min_ttl:
                raise TokenUnavailable(
                    "expired",
                    f"the source gave a token with {max(0, int(left))} s left, "
                    f"below min_ttl ({self.settings.min_ttl:g} s)",
                )
        except TokenUnavailable as e:
            retry_in = self._remember_failure(key, e) if self._is_live(key) else 0.0
            logger.warning(
                "route %s: token fetch failed (%s): %s; next try in %.2f s",
                key.route,
                e.error_class,
                str(e),  # not the error: a kept log record would keep its traceback
                retry_in,
            )
            self._observer.fetched(key, e, self._clock() - started)
            raise
        finally:
            # Only this fetch's own entry: an eager task runs this before it is stored.
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
        self._failures.pop(key, None)
        if self._is_live(key):
            self._tokens[key] = self._entry(key, token, started)
        self._observer.fetched(key, None, self._clock() - started)
        return token

    def _is_live(self, key: CacheKey) -> bool:
        """Whether ``key``'s generation is one of the owner's (any, until it says)."""
        return self._live is None or self._live.get(key.route) == key.generation

    def _remember_failure(self, key: CacheKey, error: TokenUnavailable) -> float:
        """Remember ``error`` for ``key``; the seconds until the source is asked again."""
        backoff = self.settings.error_backoff
        if backoff <= 0:
            return 0.0
        previous = self._failures.get(key)
        count = previous.count + 1 if previous is not None else 1
        interval = min(backoff, backoff / 8 * float(2 ** min(count - 1, 16)))
        self._failures[key] = _Failure(
            type(error), error.error_class, str(error), count, self._clock() + interval
        )
        return interval

    # -- inspection and invalidation ------------------------------------------

    def drop(self, key: CacheKey) -> bool:
        """Forget the token for ``key`` (e.g. the upstream rejected it)."""
        return self._tokens.pop(key, None) is not None

    def live(self, generations: dict[str, int]) -> None:
        """The routes and their settings' generations from now on: a token or failure of
        any other is dropped, and a fetch still running for one is not kept."""
        self._live = dict(generations)
        for store in (self._tokens, self._failures):
            stale = [k for k in list(store.keys()) if generations.get(k.route) != k.generation]
            for k in stale:
                store.pop(k, None)

    def drop_route(self, route: str) -> int:
        keys = [k for k in list(self._tokens.keys()) if k.route == route]
        for k in keys:
            self._tokens.pop(k, None)
        for k in [k for k in list(self._failures.keys()) if k.route == route]:
            self._failures.pop(k, None)
        return len(keys)

    def clear(self) -> int:
        n = len(self)
        self._tokens.clear()
        self._failures.clear()
        return n

    def __len__(self) -> int:
        self._tokens.expire()
        return len(self._tokens)

    def items(self) -> Iterator[tuple[CacheKey, Token]]:
        """A snapshot of (key, token) pairs that are still usable."""
        self._tokens.expire()
        return iter([(k, v.token) for k, v in self._tokens.items()])

    def failures(self) -> dict[CacheKey, dict[str, Any]]:
        """Keys in their backoff window now: requests for them get the error at once."""
        now = self._clock()
        return {
            k: {
                "error_class": f.error_class,
                "message": f.message,
                "retry_in": round(f.until - now, 3),
                "count": f.count,
            }
            for k, f in list(self._failures.items())
            if now < f.until
        }

    def close(self) -> None:
        """Cancel every fetch under way (the gateway stops or drops its config)."""
        for task in list(self._background):
            task.cancel()

    async def aclose(self) -> None:
        """``close``, and wait for the fetches to end."""
        pending = list(self._background)
        self.close()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
