"""Host binding: a token goes only to a host its route names.

The route is chosen by the request's real target, but an upstream server routes by what
the client wrote: the ``Host`` header (HTTP/1) or ``:authority`` (HTTP/2), an
absolute-form request-target, and the TLS SNI, which mitmproxy reuses upstream on a
connection the client opened with CONNECT. On a flow that carries a token, each of them
must be a host the route's ``hosts`` cover; ``foreign_name`` says which one is not.
A missing port stands for the request's port; case and one trailing dot do not matter.
"""

from __future__ import annotations

import functools

from mitmproxy import http

from authgw.config import Route
from authgw.hosts import HostPattern, normalize_host, parse_host_port
from authgw.kinds import kind_of


def _covered(patterns: tuple[HostPattern, ...], text: str, port: int) -> bool:
    if len(text) > 262:  # no host:port is longer; and the answers are cached
        return False
    return _covered_by(patterns, text, port)


@functools.lru_cache(maxsize=4096)  # asked for every request's Host: parsing is not free
def _covered_by(patterns: tuple[HostPattern, ...], text: str, port: int) -> bool:
    try:
        host, named_port = parse_host_port(text)
    except ValueError:
        return False
    named = named_port if named_port is not None else port
    return any(p.matches(host, named) for p in patterns)


@functools.lru_cache(maxsize=4096)
def _only(host: str) -> tuple[HostPattern, ...]:
    """The one host (any port of it) a request goes to, as patterns."""
    try:
        return (HostPattern.parse(host if ":" not in host else f"[{host}]"),)
    except ValueError:
        return ()


def upstream_sni(flow: http.HTTPFlow) -> str | None:
    """The server name the upstream TLS connection is (or will be) opened with.

    mitmproxy reuses the connection the client asked for with CONNECT when the request
    goes to that same address, with the client's SNI; any other target gets a new
    connection named after the request's host.
    """
    req, server = flow.request, flow.server_conn
    if req.scheme != "https":
        return None
    if server.address is not None and tuple(server.address[:2]) == (req.host, req.port):
        return server.sni or flow.client_conn.sni or req.host
    return req.host


def foreign_name(route: Route, flow: http.HTTPFlow) -> str | None:
    """Which name the route does not cover ("Host", ":authority", "request-target", "SNI"),
    or None when the upstream can only see hosts of this route.

    Where the token's audience is made from the host (``audience: dynamic``), "covered"
    is stricter: the very host the request goes to, so a token for a.example.com is not
    sent under the name b.example.com of the same wildcard route.
    """
    req = flow.request
    port = req.port
    hosts = route.hosts
    if route.token is not None and kind_of(route.token).dynamic(route.token):
        hosts = _only(req.host)
    path = req.data.path
    if path[:1] != b"/" and path != b"*":
        # An absolute URL as the path (an HTTP/2 :path, or another addon's doing) goes out
        # as an absolute-form request-target, by which the upstream routes.
        return "request-target"
    for name, value in req.headers.fields:  # not get_all: this runs on every request
        if name.lower() == b"host" and not _covered(hosts, value.decode("latin-1"), port):
            return "Host"
    if req.data.authority and not _covered(hosts, req.authority, port):
        return ":authority" if req.is_http2 or req.is_http3 else "request-target"
    sni = upstream_sni(flow)
    if sni is not None and normalize_host(sni) != normalize_host(req.host):
        if not _covered(hosts, sni, port):
            return "SNI"
    return None


def target(req: http.Request) -> tuple[bytes, str, int]:
    """What a token is chosen for: (scheme, host, port), as mitmproxy keeps them (the
    scheme undecoded: this is compared on every request, never shown)."""
    data = req.data
    return data.scheme, data.host, data.port


def routed_by(flow: http.HTTPFlow) -> tuple[object, ...]:
    """Everything the upstream may route by: the target, the header fields (a tuple that
    mitmproxy replaces on any change, so the same object means no change), the
    request-target's authority and path, and the upstream connection's name. The last word
    compares it with the decision's to skip checking names no addon changed."""
    req, server = flow.request, flow.server_conn
    data = req.data
    return (
        data.scheme,
        data.host,
        data.port,
        data.headers.fields,
        data.authority,
        data.path,
        server.address,
        server.sni,
    )
