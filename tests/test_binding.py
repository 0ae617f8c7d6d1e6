"""Host binding (authgw.binding): which name the upstream may route by is not the route's."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from authgw.binding import foreign_name, upstream_sni
from authgw.config import Route, SecretRef, StaticTokenConfig
from authgw.hosts import HostPattern

ROUTE = Route(
    "api",
    (HostPattern.parse("api.example"), HostPattern.parse("127.0.0.1:8443")),
    StaticTokenConfig(value=SecretRef(kind="env", name="X")),
)


def flow(
    host: str = "api.example",
    port: int = 443,
    *,
    host_header: str | None = "api.example",
    authority: str = "",
    client_sni: str | None = None,
    server: tuple[str, int] | None = None,
    server_sni: str | None = None,
    http2: bool = False,
) -> http.HTTPFlow:
    f = tflow.tflow(req=tutils.treq(host=host, port=port, scheme=b"https"))
    f.request.headers.clear()
    if host_header is not None:
        f.request.headers["Host"] = host_header
    f.request.authority = authority
    if http2:
        f.request.http_version = "HTTP/2.0"
    f.client_conn.sni = client_sni
    f.server_conn.address = server or (host, port)
    f.server_conn.sni = server_sni
    return f


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"host_header": None},
        {"host_header": "API.Example."},
        {"host_header": "api.example:443"},
        {"host_header": "api.example:8443"},  # a port the route's any-port pattern covers
        {"client_sni": "api.example"},
        {"client_sni": "api.example", "server_sni": "api.example"},
        {"authority": "api.example", "http2": True, "host_header": None},
        {"host": "127.0.0.1", "port": 8443, "host_header": "127.0.0.1:8443"},
        {"host": "127.0.0.1", "port": 8443, "host_header": "127.1:8443"},
        {"host": "127.0.0.1", "port": 8443, "host_header": "127.0.0.1"},  # port left out
        # a new upstream connection is named after the request's host, whatever the CONNECT
        {"client_sni": "evil.test", "server": ("127.0.0.1", 9999)},
    ],
)
def test_names_the_route_covers_pass(kwargs: dict[str, object]) -> None:
    assert foreign_name(ROUTE, flow(**kwargs)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"host_header": "tenant-b.example"}, "Host"),
        ({"host_header": "api.example.evil"}, "Host"),
        ({"host_header": "api.example.."}, "Host"),
        ({"host_header": "api.example@evil"}, "Host"),
        ({"host": "127.0.0.1", "port": 8443, "host_header": "127.0.0.1:9000"}, "Host"),
        ({"authority": "evil.example"}, "request-target"),
        ({"authority": "evil.example", "http2": True, "host_header": None}, ":authority"),
        ({"client_sni": "evil.test"}, "SNI"),
        ({"server_sni": "evil.test"}, "SNI"),
        (
            {"host": "127.0.0.1", "port": 8443, "host_header": None, "client_sni": "evil.test"},
            "SNI",
        ),
    ],
)
def test_a_name_outside_the_route_is_named(kwargs: dict[str, object], name: str) -> None:
    assert foreign_name(ROUTE, flow(**kwargs)) == name  # type: ignore[arg-type]


def test_two_host_headers_are_each_checked() -> None:
    f = flow()
    f.request.headers.add("Host", "evil.example")
    assert foreign_name(ROUTE, f) == "Host"


def test_plain_http_has_no_sni() -> None:
    f = flow(client_sni="evil.test")
    f.request.scheme = "http"
    assert upstream_sni(f) is None and foreign_name(ROUTE, f) is None


def test_a_dynamic_audience_binds_the_token_to_the_very_host() -> None:
    from authgw.config import HmacTokenConfig

    wildcard = Route(
        "wild",
        (HostPattern.parse("*.example.com"),),
        HmacTokenConfig(secret=SecretRef(kind="env", name="X"), audience="dynamic"),
    )
    assert foreign_name(wildcard, flow("a.example.com", host_header="a.example.com")) is None
    # aud would be https://a.example.com: it must not go out named b.example.com
    assert foreign_name(wildcard, flow("a.example.com", host_header="b.example.com")) == "Host"


def test_an_overlong_host_header_is_not_covered() -> None:
    assert foreign_name(ROUTE, flow(host_header="api.example" + "." * 300)) == "Host"


@pytest.mark.parametrize("path", [b"http://evil.example/x", b"evil.example:443", b"x"])
def test_a_path_that_is_not_origin_form_names_the_request_target(path: bytes) -> None:
    # An HTTP/2 client may send ``:path: http://evil.example/x``; mitmproxy forwards it as
    # an absolute-form request-target, by which an HTTP/1 upstream routes.
    f = flow(http2=True, host_header=None, authority="api.example")
    f.request.data.path = path
    assert foreign_name(ROUTE, f) == "request-target"


@pytest.mark.parametrize("path", [b"/x?y=1", b"*"])
def test_origin_form_and_asterisk_paths_are_covered(path: bytes) -> None:
    f = flow()
    f.request.data.path = path
    assert foreign_name(ROUTE, f) is None
