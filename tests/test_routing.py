"""First-match routing, the upstream header, audience derivation (authgw.routing)."""

from __future__ import annotations

import pytest
from mitmproxy.test import tutils

from authgw import routing
from authgw.config import HmacTokenConfig, Route, SecretRef, StaticTokenConfig, StsTokenConfig
from authgw.flowlog import FlowRecord
from authgw.hosts import HostPattern
from tests.configs import parse


def _route(name: str, *hosts: str) -> Route:
    return Route(
        name=name,
        hosts=tuple(HostPattern.parse(h) for h in hosts),
        token=StaticTokenConfig(value=SecretRef(kind="env", name="X")),
    )


def test_first_match_wins() -> None:
    routes = [
        _route("specific", "api.example.com"),
        _route("wild", "*.example.com"),
        _route("all", "*"),
    ]
    assert routing.match(routes, "api.example.com", 443, None).name == "specific"  # type: ignore[union-attr]
    assert routing.match(routes, "web.example.com", 443, None).name == "wild"  # type: ignore[union-attr]
    assert routing.match(routes, "other.org", 443, None).name == "all"  # type: ignore[union-attr]
    assert routing.match(routes[:2], "other.org", 443, None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("svc.example.com", ("svc.example.com", None)),
        ("svc.example.com:8443", ("svc.example.com", 8443)),
        ("SVC.Example.com", ("svc.example.com", None)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_parse_upstream_accepts(value: str, expected: tuple[str, int | None]) -> None:
    assert routing.parse_upstream(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "svc.example.com/path",
        "svc.example.com?q=1",
        "user@svc.example.com",
        "user:pw@svc.example.com",
        "svc example.com",
        " svc.example.com",
        "svc.example.com\t",
        "svc.example.com\r\nX-Evil: 1",
        "svc\x00.example.com",
        "svc.example.com:0",
        "svc.example.com:65536",
        "svc.example.com:8a",
        "svc.example.com:",
        "https://svc",
        "-svc.example.com",
        "svc..example.com",
        "a" * 64 + ".com",
        "svc.example.com#frag",
        "[::1",
        "[::1]x",
        "svc%2eexample.com",
        "svc\\example.com",
        "ex\u00e4mple.com",
    ],
)
def test_parse_upstream_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        routing.parse_upstream(value)


@pytest.mark.parametrize(
    ("scheme", "host", "expected"),
    [
        ("https", "API.Example.com", "https://api.example.com"),
        ("http", "127.0.0.1", "http://127.0.0.1"),
        ("https", "::1", "https://[::1]"),
    ],
)
def test_dynamic_audience(scheme: str, host: str, expected: str) -> None:
    assert routing.dynamic_audience(scheme, host) == expected


def test_audience_for_each_source() -> None:
    secret = SecretRef(kind="env", name="S")
    assert routing.audience_for(HmacTokenConfig(secret=secret), "https", "a.b") == ()
    assert routing.audience_for(HmacTokenConfig(secret=secret, audience="svc"), "https", "a.b") == (
        "svc",
    )
    assert routing.audience_for(
        HmacTokenConfig(secret=secret, audience="dynamic"), "https", "A.b"
    ) == ("https://a.b",)
    assert routing.audience_for(StsTokenConfig(audience=("x", "y")), "https", "a") == ("x", "y")
    assert routing.audience_for(StsTokenConfig(audience="dynamic"), "http", "a:b::1") == (
        "http://[a:b::1]",
    )
    assert routing.audience_for(StaticTokenConfig(value=secret), "https", "a") == ()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert routing.is_loopback(host) is expected


def test_the_upstream_header_retargets_only_to_a_route_of_the_clients_principal() -> None:
    cfg = parse(
        "version: 1\nupstream_header: X-Upstream-Host\nroutes:\n"
        "  - {name: a, hosts: [agents.example], principals: [alice],"
        " token: {type: static, value: x}}\n"
    )
    for principal, refused in (("alice", False), (None, True), ("bob", True)):
        req = tutils.treq(headers=((b"X-Upstream-Host", b"agents.example"),))
        answer = routing.retarget(req, cfg, FlowRecord(), principal)
        assert (answer is not None) is refused, principal
        assert (req.host == "agents.example") is not refused
