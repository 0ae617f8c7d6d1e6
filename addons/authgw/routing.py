"""First-match routing, the upstream header, audience derivation.

Matching and parsing are pure: a ``ValueError`` says what is wrong with an input, and
the callers turn it into a config error or a 400; ``retarget`` applies the upstream
header to a request, or returns the ``Answer`` that refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mitmproxy import http

from authgw.config import Config, Route, TokenConfig
from authgw.flowlog import FlowRecord
from authgw.hosts import HostPattern, is_loopback, normalize_host, parse_host_port
from authgw.kinds import kind_of
from authgw.steps import NO_ROUTE_FOR_HOST, Answer

# Host parsing lives in authgw.hosts; these names stay importable from here.
__all__ = [
    "HostPattern",
    "RouteTable",
    "candidates",
    "audience_for",
    "dynamic_audience",
    "is_loopback",
    "match",
    "normalize_host",
    "parse_host_port",
    "parse_upstream",
    "principal_of",
]


def match(routes: Sequence[Route], host: str, port: int, principal: str | None) -> Route | None:
    """The first route with a pattern matching ``host:port`` (and, for a route with
    ``principals``, whose list holds ``principal``: None is a client that did not
    authenticate to the proxy), or None."""
    for route in _covering(routes, host, port):
        if not route.principals or principal in route.principals:
            return route
    return None


def candidates(routes: Sequence[Route], host: str, port: int) -> list[Route]:
    """Every route a request to ``host:port`` may be given, whoever the client is: the
    routes with ``principals`` that match it, up to the first that has none (the one
    every other client gets). What the connection guard looks at: a CONNECT or a raw
    relay is not decided for one principal."""
    found = []
    for route in _covering(routes, host, port):
        found.append(route)
        if not route.principals:
            break
    return found


def _covering(routes: Sequence[Route], host: str, port: int) -> Iterator[Route]:
    """The routes with a pattern matching ``host:port``, in order."""
    host = normalize_host(host)
    if ".." in host or host.startswith("."):
        return  # an empty label: malformed, matches no pattern (not even *.suffix)
    for route in routes:
        if any(pattern.matches(host, port) for pattern in route.hosts):
            yield route


class RouteTable:
    """``match`` over one config's routes, remembering the answer per (host, port): a
    client asks for the same few targets on every request. At most ``size`` answers
    are kept (all are forgotten when full), so a client naming endless hosts costs
    memory for ``size`` of them."""

    def __init__(self, routes: Sequence[Route], size: int = 4096) -> None:
        self.routes = tuple(routes)
        self._size = size
        self._answers: dict[tuple[str, int, str | None], Route | None] = {}

    def match(self, host: str, port: int, principal: str | None) -> Route | None:
        key = (host, port, principal)
        try:
            return self._answers[key]
        except KeyError:
            pass
        route = match(self.routes, host, port, principal)
        if len(self._answers) >= self._size:
            self._answers.clear()
        self._answers[key] = route
        return route


def principal_of(flow: http.HTTPFlow) -> str | None:
    """The user name the client authenticated to the proxy with (mitmproxy's own
    ``proxyauth``: ``flow.metadata["proxyauth"]``), or None."""
    auth = flow.metadata.get("proxyauth")
    return str(auth[0]) if isinstance(auth, tuple) and auth else None


def parse_upstream(value: str) -> tuple[str, int | None]:
    """The upstream header's value -> (host, port) or ValueError saying why not.

    Accepts ``host``, ``host:port``, ``[v6]:port`` only: no scheme, path, query,
    userinfo, whitespace or control characters.
    """
    if not value or len(value) > 261:
        raise ValueError("empty or too long")
    if any(ord(c) < 33 or ord(c) > 126 for c in value):
        raise ValueError("whitespace, control or non-ASCII characters")
    for c in "/?#@\\%":
        if c in value:
            raise ValueError(f"{c!r} is not allowed (host or host:port only)")
    return parse_host_port(value)


def dynamic_audience(scheme: str, host: str) -> str:
    """``<scheme>://<host>``, lowercase, without port (the ``audience: dynamic`` value)."""
    host = normalize_host(host)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme.lower()}://{host}"


def audience_for(token: TokenConfig, scheme: str, host: str) -> tuple[str, ...]:
    """The audience set a request's token must carry (empty: no ``aud`` claim), as the
    token's kind says."""
    return kind_of(token).audience(token, scheme, host)


def retarget(
    req: http.Request, cfg: Config, record: FlowRecord, principal: str | None
) -> Answer | None:
    """Point the request at the host its upstream header names, if a route of this
    client's (``principal``) covers it; else the 400/403 to answer."""
    name = cfg.upstream_header
    assert name is not None
    values = req.headers.get_all(name)
    del req.headers[name]
    record.headers_removed.append(name)
    if len(values) != 1:
        return Answer(400, f"bad {name}: sent {len(values)} times")
    try:
        host, port = parse_upstream(values[0])
    except ValueError as e:
        return Answer(400, f"bad {name}: {e}")
    port = port or (443 if cfg.upstream_scheme == "https" else 80)
    if match(cfg.routes, host, port, principal) is None:  # a route of this client's
        return NO_ROUTE_FOR_HOST
    req.scheme = cfg.upstream_scheme
    req.host = host
    req.port = port
    return None
