"""Small loopback helpers the demo and the benchmarks share."""

from __future__ import annotations

import http.client
import socket


def free_port() -> int:
    """A loopback port free now (for a listener a child process opens itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_text(port: int, path: str) -> str:
    """The body of ``GET path`` from 127.0.0.1:``port`` (a gateway's /metrics, /status)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()
