"""What a request decision returns, as values the hooks carry out (no exception for a
4xx): ``Answer`` (the gateway answers the request itself) and ``Later`` (what the rest
of the decision waits for); ``answer`` writes a response on a flow."""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from authgw.cache import CacheKey, Fetcher
from authgw.config import Route


@dataclass(frozen=True)
class Answer:
    """The gateway answers the request itself (400/401/403/421): a value the decision
    returns, carried out by ``Decider.answer``; ``error_class`` goes in X-Authgw-Error."""

    status: int
    body: str
    action: str = "rejected"
    error_class: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Later:
    """What the rest of a decision waits for: the client's token checked (a verify
    route), a token fetched (``plan``), or sigv4 credentials refreshed (``pending``)."""

    route: Route
    plan: tuple[CacheKey, Fetcher] | None = None
    pending: Coroutine[Any, Any, None] | None = None


HOST_MISMATCH = Answer(421, "host does not match the route", error_class="host_mismatch")
NO_ROUTE_FOR_HOST = Answer(403, "no route for host")


def answer(
    flow: http.HTTPFlow, status: int, body: str, headers: dict[str, str] | None = None
) -> None:
    flow.response = http.Response.make(
        status,
        (body + "\n").encode(),
        {"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
    )
