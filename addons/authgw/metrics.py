"""Prometheus metrics and the status document, served on their own loopback port.

Label values are bounded by the config, never by traffic: route names, source kinds,
error classes, outcomes and status codes; never a host or an audience. The server
runs on mitmproxy's event loop, so ``/status`` reads the cache from the thread that
owns it.

The port itself is ``statusport.py``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest

from authgw.cache import CacheKey, TokenCache
from authgw.config import Config
from authgw.kinds import kind_of
from authgw.tally import Tally, TallyHistogram
from authgw.tokens import TokenUnavailable

logger = logging.getLogger(__name__)

NO_ROUTE = "-"  # the route label of requests no route matched
DAY = 86_400.0


class Metrics:
    """The gateway's metrics, in a registry of their own (not prometheus_client's global)."""

    def __init__(self) -> None:
        # `*_created` series double what a scrape shows and no dashboard here uses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.token_fetch = Counter(
            "authgw_token_fetch",
            "Token fetches from a source, by result and error class",
            ["route", "source", "result", "error_class"],
            registry=r,
        )
        self.cache_hits = Tally(
            "authgw_token_cache_hits", "Requests served a cached token", ["route"], registry=r
        )
        self.cache_misses = Counter(
            "authgw_token_cache_misses",
            "Requests that found no usable cached token",
            ["route"],
            registry=r,
        )
        self.cache_entries = Gauge(
            "authgw_token_cache_entries", "Tokens in the cache now", registry=r
        )
        self.cache_evictions = Counter(
            "authgw_token_cache_evictions", "Tokens evicted to keep the cache bound", registry=r
        )
        self.leaks_blocked = Counter(
            "authgw_leaks_blocked",
            "Requests that carried a route's credential somewhere the route does not go",
            ["route"],
            registry=r,
        )
        self.requests = Tally(
            "authgw_requests",
            "Requests by route and what the gateway did",
            ["route", "outcome"],
            registry=r,
        )
        self.upstream_duration = TallyHistogram(
            "authgw_upstream_request_duration_seconds",
            "From forwarding the request to the end of the response (or the error)",
            ["route", "error_type"],
            registry=r,
        )
        self.auth_rejections = Counter(
            "authgw_upstream_auth_rejections",
            "Upstream 401/403 answers to injected tokens",
            ["route", "status"],
            registry=r,
        )
        self.retries = Counter(
            "authgw_upstream_retries",
            "Requests resent once after an upstream 401 (retry_on_401), by the second answer",
            ["route", "result"],
            registry=r,
        )
        self.verify = Counter(
            "authgw_verify",
            "Client tokens checked on verify routes, by verdict",
            ["route", "result", "reason"],
            registry=r,
        )
        self._sources: Mapping[str, str] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._cache_size: Callable[[], int] = lambda: 0
        self.cache_entries.set_function(lambda: float(self._cache_size()))

    def bind(self, sources: Mapping[str, str], cache: TokenCache) -> None:
        """Follow a (new) runtime: route -> source kind, and the cache to measure."""
        self._sources = dict(sources)
        self._cache_size = cache.__len__

    # CacheObserver
    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: ``labels()`` costs microseconds per call,
        and the hot path asks for the same few children on every request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def hit(self, key: CacheKey) -> None:
        self.cache_hits.add((key.route,))

    def miss(self, key: CacheKey) -> None:
        self.child(self.cache_misses, key.route).inc()

    def evicted(self, key: CacheKey) -> None:
        self.cache_evictions.inc()

    def fetched(self, key: CacheKey, error: TokenUnavailable | None, seconds: float) -> None:
        source = self._sources.get(key.route, "unknown")
        if error is None:
            self.token_fetch.labels(key.route, source, "ok", "").inc()
        else:
            self.token_fetch.labels(key.route, source, "error", error.error_class).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)


def upstream_error_type(message: str) -> str:
    """timeout, connection_refused, tls or unknown, from a flow's error message."""
    text = message.lower()
    if "timed out" in text or "timeout" in text or "errno 110" in text:
        return "timeout"
    # mitmproxy says "[Errno 111] Connect call failed ('127.0.0.1', 9)" for ECONNREFUSED.
    if "refused" in text or "errno 111" in text or "connect call failed" in text:
        return "connection_refused"
    if "tls" in text or "ssl" in text or "certificate" in text:
        return "tls"
    return "unknown"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def status_document(
    config: Config,
    sources: Mapping[str, Any],
    verifiers: Mapping[str, Any],
    cache: TokenCache,
    last_errors: Mapping[str, Mapping[str, Any]],
    now: float,
) -> dict[str, Any]:
    """What ``/status`` and ``authgw.status`` show: fingerprints and expiries, never a secret."""
    routes = []
    for route in config.routes:
        info = dict(sources[route.name].describe()) if route.name in sources else {}
        if route.name in verifiers:
            info["verify"] = verifiers[route.name].describe()
        expires_at = info.pop("expires_at", None)
        if expires_at is not None:
            left = expires_at - now
            info["token_expires_at"] = _iso(expires_at)
            info["token_expires_in"] = round(left)
            info["flag"] = (
                "expired" if left <= 0 else "expires_within_a_day" if left < DAY else None
            )
        routes.append(
            {
                "name": route.name,
                "hosts": [p.text for p in route.hosts],
                "header": route.header,
                **info,
                "last_error": last_errors.get(route.name),
            }
        )
    tokens = []
    for key, token in cache.items():
        left = token.seconds_left(now)
        tokens.append(
            {
                "route": key.route,
                "audience": list(key.audience),
                "source": token.source,
                "kid": token.kid,
                "fingerprint": token.fingerprint,
                "expires_at": _iso(token.expires_at),
                "seconds_left": None if left is None else round(left),
            }
        )
    failures = [
        {"route": key.route, "audience": list(key.audience), **failure}
        for key, failure in cache.failures().items()
    ]
    return {
        "now": _iso(now),
        "routes": routes,
        "cache": {"entries": len(tokens), "max_entries": config.cache.max_entries},
        "tokens": sorted(tokens, key=lambda t: (t["route"], t["audience"])),
        "backoff": failures,
        "unmatched_errors": last_errors.get(NO_ROUTE),
    }


def readiness_document(
    config: Config,
    sources: Mapping[str, Any],
    cache: TokenCache,
    last_errors: Mapping[str, Mapping[str, Any]],
) -> tuple[bool, dict[str, Any]]:
    """(ready, the /readyz document): no route is broken. A route is broken when its
    last fetch failed and it holds no usable token, or its secret (kept elsewhere) has
    never been read."""
    usable = {key.route for key, _ in cache.items()}
    broken = {
        name: error["error_class"]
        for name, error in last_errors.items()
        if name != NO_ROUTE and name not in usable
    }
    for route in config.routes:
        secret = getattr(sources.get(route.name), "secret", None)
        optional = route.token is not None and kind_of(route.token).optional(route.token)
        if secret is not None and not optional and secret.fingerprint_or_none() is None:
            broken.setdefault(route.name, "missing_secret")
    doc = {
        "ready": not broken,
        "broken": [{"route": n, "error_class": c} for n, c in sorted(broken.items())],
    }
    return not broken, doc
