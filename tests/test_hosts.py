"""Host patterns and host:port parsing (authgw.hosts)."""

from __future__ import annotations

import pytest

from authgw.hosts import HostPattern, normalize_host


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
