"""End-to-end clients: requests to loopback servers and through the proxy, and polling.

    proxy_request     a request through the proxy (absolute-form http, CONNECT for https)
    direct_request    a plain http request to 127.0.0.1:PORT (reverse mode, upstreams)
    Response          what either returns: status, headers in order, body
    curl              curl through the proxy, trusting its CA: status, HTTP version, body
    wait_until        bounded polling

Clients connect to loopback only and never consult environment proxy settings.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    *,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy and return that.

    Raises TimeoutError naming `message` after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


def header_list(headers: Headers | None) -> list[tuple[str, str]]:
    """`headers` as (name, value) pairs in order; [] for None."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


class HeaderLookup:
    """Header access by name for a message holding `headers` (pairs in arrival order)."""

    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in order."""
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


@dataclass(frozen=True)
class Response(HeaderLookup):
    """A complete response (body read, connection closed)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: Headers | None,
    body: bytes | str | None,
) -> Response:
    """Send one request with exactly these headers (duplicates kept) and read the answer."""
    try:
        pairs = header_list(headers)
        names = {k.lower() for k, _ in pairs}
        data = body.encode() if isinstance(body, str) else body
        conn.putrequest(
            method,
            target,
            skip_host="host" in names,
            skip_accept_encoding="accept-encoding" in names,
        )
        for k, v in pairs:
            conn.putheader(k, v)
        if data is not None and not names & {"content-length", "transfer-encoding"}:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        payload = resp.read()
        return Response(resp.status, resp.reason, resp.getheaders(), payload)
    finally:
        conn.close()


def client_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context trusting `ca_file` (or the system store if None)."""
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_file))


def proxy_request(
    proxy_port: int,
    method: str,
    url: str,
    headers: Headers | None = None,
    body: bytes | str | None = None,
    *,
    ca_file: Path | None = None,
    timeout: float = 10.0,
) -> Response:
    """Send `method url` through the proxy at 127.0.0.1:`proxy_port`.

    http: absolute-form request line. https: CONNECT host:port, then TLS verified
    against `ca_file` (mitmproxy's CA when it intercepts), then an origin-form request.
    Environment proxy settings are never consulted. A failed CONNECT raises OSError;
    an untrusted certificate raises ssl.SSLCertVerificationError.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.hostname is None:
        raise ValueError(f"URL without a host: {url!r}")
    conn: http.client.HTTPConnection
    if scheme == "http":
        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
        target = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))
    elif scheme == "https":
        if ":" in parts.hostname:
            # Python 3.11's CONNECT line does not bracket IPv6 literals.
            raise ValueError("https through the proxy to an IPv6 literal is not supported")
        conn = http.client.HTTPSConnection(
            "127.0.0.1", proxy_port, timeout=timeout, context=client_tls_context(ca_file)
        )
        conn.set_tunnel(parts.hostname, parts.port or 443)
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    else:
        raise ValueError(f"unsupported URL scheme: {url!r}")
    return _exchange(conn, method, target, headers, body)


def direct_request(
    port: int,
    method: str,
    path: str,
    headers: Headers | None = None,
    body: bytes | str | None = None,
    *,
    host_header: str | None = None,
    timeout: float = 10.0,
) -> Response:
    """Send a plain http request to 127.0.0.1:`port` (reverse proxy, upstream).

    The Host header is `host_header` if given, else 127.0.0.1:PORT (or one in `headers`).
    """
    pairs = header_list(headers)
    if host_header is not None:
        pairs = [(k, v) for k, v in pairs if k.lower() != "host"]
        pairs.insert(0, ("Host", host_header))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return _exchange(conn, method, path, pairs, body)


def curl(proxy_port: int, ca_file: Path, *args: str) -> tuple[int, str, str]:
    """curl through the proxy at 127.0.0.1:`proxy_port`, trusting `ca_file` (mitmproxy's
    CA): (HTTP status, the HTTP version curl spoke to the proxy, body)."""
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-x",
            f"http://127.0.0.1:{proxy_port}",
            "--cacert",
            str(ca_file),
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, _, last = done.stdout.rpartition("\n")
    version, _, status = last.partition(" ")
    return int(status or 0), version, body
