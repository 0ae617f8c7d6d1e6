"""Host names and ports as a route's ``hosts`` and a client's request give them.

``HostPattern`` is one entry of a route's ``hosts``; ``parse_host_port`` and
``normalize_host`` put a host in the one form patterns compare against. Everything
here is pure: a ``ValueError`` says what is wrong with an input. Config parsing and
routing both build on this module, and it needs neither.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")
# What inet_aton might take for an IPv4 address: digits first, then digits, hex and dots
# (inet_aton itself also accepts trailing junk after a space, which this excludes).
_NUMERIC_V4 = re.compile(r"[0-9][0-9a-fx.]*")


@functools.lru_cache(maxsize=4096)  # asked for every request's host
def normalize_host(host: str) -> str:
    """The one form hosts are compared in: lowercase, no brackets around IPv6, one trailing
    dot dropped, and an IP literal as the address it is, whatever its spelling.

    IPv4 in any form the resolver accepts (``127.1``, ``2130706433``, ``0x7f.0.0.1``,
    ``0177.0.0.1``) becomes dotted-quad, IPv4-mapped IPv6 (``::ffff:127.0.0.1``) the IPv4
    address, other IPv6 its compressed form: a route written ``127.0.0.1`` matches them all.
    A name with an empty label (``localhost..``) stays as it is and so matches nothing.
    """
    if len(host) > 262:  # no host is longer; and the answers are cached
        return host
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.endswith(".") and host != ".":
        host = host[:-1]
    if "%" in host:
        # An IPv6 zone id ("fe80::1%eth0"): ipaddress takes any text after the %, and
        # ipv4_mapped drops it, so "::ffff:127.0.0.1%x" would read as 127.0.0.1. Such a
        # host stays as written and so equals no route's address.
        return host
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            return host
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else str(address)
    if _NUMERIC_V4.fullmatch(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return host
    return host


def _parse_port(text: str) -> int:
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def _check_hostname(host: str) -> str:
    """``host`` (already normalized) if it is an IP literal or a valid DNS name."""
    if "%" in host:
        raise ValueError(f"bad host {host!r}: zone ids are not supported")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or len(host) > 253:
        raise ValueError(f"bad host name {host!r}")
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(f"bad host name {host!r}")
    return host


def parse_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (normalized host, port)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad host {text!r}: unclosed [")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad host {text!r}")
        port = _parse_port(rest[1:]) if rest else None
        if "%" in host:
            raise ValueError(f"bad IPv6 address {host!r}: zone ids are not supported")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as e:
            raise ValueError(f"bad IPv6 address {host!r}") from e
        return normalize_host(host), port
    if text.count(":") > 1:  # a bare IPv6 literal, no port possible
        return _check_hostname(normalize_host(text)), None
    host, sep, port_text = text.partition(":")
    port = _parse_port(port_text) if sep else None
    return _check_hostname(normalize_host(host)), port


@dataclass(frozen=True)
class HostPattern:
    """One entry of a route's ``hosts``: exact, ``*.suffix``, ``host:port`` or ``*``."""

    text: str
    host: str  # "" for "*"; the suffix without "*." for wildcards
    wildcard: bool = False
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        raw = text.strip()
        if raw == "*":
            return cls(text=raw, host="", wildcard=True)
        if any(c.isspace() or ord(c) < 32 for c in raw) or any(c in raw for c in "/?#@"):
            raise ValueError(f"{text!r} is not a host pattern (host, *.suffix, host:port or *)")
        if raw.startswith("*."):
            host, port = parse_host_port(raw[2:])
            if "*" in host:
                raise ValueError(f"{text!r}: only a leading *. is allowed")
            return cls(text=raw, host=host, wildcard=True, port=port)
        if "*" in raw:
            raise ValueError(f"{text!r}: a wildcard must be * or a leading *.")
        try:
            host, port = parse_host_port(raw)
        except ValueError as e:
            raise ValueError(f"{text!r} is not a host pattern: {e}") from e
        return cls(text=raw, host=host, port=port)

    def matches(self, host: str, port: int) -> bool:
        """``host`` must already be normalized (``normalize_host``)."""
        if self.port is not None and port != self.port:
            return False
        if not self.wildcard:
            return host == self.host
        if not self.host:
            return True
        return host.endswith("." + self.host)


@functools.lru_cache(maxsize=1024)  # asked on every plain-http request; parsing is not free
def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: where plain http never leaves the machine."""
    host = normalize_host(host)
    if host == "localhost":
        return True
    if "%" in host:
        return False  # a zone id: not an address the plain-http rule trusts
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
