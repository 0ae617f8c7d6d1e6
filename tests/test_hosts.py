"""Host patterns and host:port parsing (authgw.hosts)."""

from __future__ import annotations

import pytest

from authgw.hosts import HostPattern, is_loopback, normalize_host, parse_host_port


@pytest.mark.parametrize(
    ("pattern", "host", "port", "expected"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "EXAMPLE.com", 8080, True),
        ("example.com", "example.com.", 443, True),
        ("example.com", "api.example.com", 443, False),
        ("example.com", "example.com.evil", 443, False),
        ("*.example.com", "api.example.com", 443, True),
        ("*.example.com", "a.b.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "evilexample.com", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("*.example.com:8443", "x.example.com", 8443, True),
        ("*.example.com:8443", "x.example.com", 443, False),
        ("*", "anything.at.all", 1, True),
        ("127.0.0.1", "127.0.0.1", 80, True),
        ("127.0.0.1", "127.0.0.10", 80, False),
        ("[::1]:8443", "::1", 8443, True),
        ("[::1]:8443", "[::1]", 8443, True),
        ("::1", "::1", 1, True),
        ("localhost:8443", "localhost", 8443, True),
    ],
)
def test_host_pattern_matches(pattern: str, host: str, port: int, expected: bool) -> None:
    assert HostPattern.parse(pattern).matches(normalize_host(host), port) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "exa mple.com",
        "http://example.com",
        "example.com/path",
        "user@example.com",
        "ex*ample.com",
        "*example.com",
        "a.*.example.com",
        "example.com:0",
        "example.com:99999",
        "example.com:http",
        "-bad-.example.com",
        "[::1",
        "[nothost]:80",
        "a..b",
    ],
)
def test_host_pattern_rejects(pattern: str) -> None:
    with pytest.raises(ValueError):
        HostPattern.parse(pattern)


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "0x7f000001",
        "[::ffff:127.0.0.1]",
        "::ffff:7f00:1",
        "127.0.0.1.",
    ],
)
def test_an_ipv4_address_matches_in_any_spelling_the_resolver_takes(spelling: str) -> None:
    assert normalize_host(spelling) == "127.0.0.1"
    assert HostPattern.parse("127.0.0.1").matches(normalize_host(spelling), 80)


@pytest.mark.parametrize("text", ["localhost..", "a..b", "..", "127.0.0.1..", "x.example.com.."])
def test_a_name_with_an_empty_label_is_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)
    assert not HostPattern.parse("localhost").matches(normalize_host(text), 80)


def test_names_that_only_look_numeric_stay_names() -> None:
    assert normalize_host("1password.com") == "1password.com"
    assert normalize_host("127.0.0.1 x") == "127.0.0.1 x"  # inet_aton would take this
    assert normalize_host("[0:0::1]") == "::1"


@pytest.mark.parametrize(
    "spelling", ["[::ffff:127.0.0.1%tenant-b.example]", "::ffff:127.0.0.1%25eth0", "::1%lo"]
)
def test_an_ipv6_zone_id_equals_no_address(spelling: str) -> None:
    """ipaddress takes any zone text and ipv4_mapped drops it: it must not read as the
    address a route names, nor as loopback for the plain-http rule."""
    host = normalize_host(spelling)
    assert "%" in host
    assert not HostPattern.parse("127.0.0.1").matches(host, 80)
    assert not HostPattern.parse("[::1]").matches(host, 80)
    assert not is_loopback(spelling)
    with pytest.raises(ValueError, match="zone ids are not supported"):
        parse_host_port(spelling if spelling.startswith("[") else f"[{spelling}]")
