"""The connection guard: ``unmatched: reject`` and ``verify.enforce`` cover every connection.

The request decision sees HTTP flows only. A client can ask for a tunnel (CONNECT) and
then speak something mitmproxy relays as raw bytes: its raw-TCP fallback for data that
does not look like HTTP, ``tcp_hosts``, ``ignore_hosts`` (TLS passthrough), non-HTTP
inside TLS. Such a relay carries no token, but it walks around ``reject`` and ``enforce``.
So a CONNECT to a host no route matches is answered 403 under ``reject`` before a tunnel
opens, and a raw TCP/UDP relay to a host that no route matches (under ``reject``) or
whose route verifies with ``enforce: true`` is replaced by a layer that closes the
connection before a byte is relayed. A relay already open when a reload puts its host
under ``reject`` or ``enforce`` is closed then (``reloaded``), as mitmproxy closes an
idle connection: its client connection's handler is cancelled.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import commands, events, layer, layers

from authgw import routing
from authgw.config import Config, Route
from authgw.metrics import NO_ROUTE, Metrics
from authgw.steps import answer

logger = logging.getLogger(__name__)

# Layers that relay bytes without HTTP (so without the request decision): TCP and UDP
# (raw fallback, tcp_hosts, ignore_hosts, non-HTTP in TLS), raw QUIC (non-h3 QUIC),
# and DNS, which forwards to the server address.
_RELAYS = (layers.TCPLayer, layers.UDPLayer, layers.RawQuicLayer, layers.DNSLayer)


class Refused(layer.Layer):
    """Closes the client connection (and the server's, if open); relays nothing."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            if self.context.server.connected:
                yield commands.CloseConnection(self.context.server)
            yield commands.CloseConnection(self.context.client)
        # Whatever arrives after that (data already in flight, the close) is dropped.


def _guarded(cfg: Config, host: str, port: int) -> tuple[Route | None, str] | None:
    """(route, why) if a connection to host:port must not be relayed raw; else None.
    Whoever the client is: a route of any principal that enforces verify guards it."""
    found = routing.candidates(cfg.routes, host, port)
    if not found:
        return (None, "no route for host") if cfg.unmatched == "reject" else None
    for route in found:
        if route.verify is not None and route.verify.enforce:
            return route, "its route verifies client tokens (enforce)"
    return None


def _guarded_relay(
    cfg: Config, host: str, sni: str | None, port: int
) -> tuple[Route | None, str] | None:
    """``_guarded`` for a relay to host:port, then for the name its bytes are meant for."""
    return _guarded(cfg, host, port) or (_guarded(cfg, sni, port) if sni else None)


def _close(client: connection.Client, why: str) -> bool:
    """Close a client connection as mitmproxy closes an idle one (``on_timeout``: its
    handler task cancelled); False if mitmproxy no longer serves it."""
    addons: Any = ctx.master.addons  # typed in mitmproxy 12, not in 11
    server = addons.get("proxyserver")
    key: Any = client.id
    if client.transport_protocol == "udp":  # as Proxyserver.inject_event keys UDP clients
        key = (client.peername, client.sockname)
    handler = server.connections.get(key) if server is not None else None
    io = handler.transports.get(handler.client) if handler is not None else None
    if io is None or io.handler is None:
        return False
    io.handler.cancel(why)
    return True


class ConnectionGuard:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # The raw relays it let through, by client connection: (host, SNI, port, kind).
        self._relays: weakref.WeakKeyDictionary[
            connection.Client, tuple[str, str | None, int, str]
        ] = weakref.WeakKeyDictionary()

    def connect(self, cfg: Config, flow: http.HTTPFlow) -> None:
        """CONNECT: 403 before a tunnel opens to a host no route matches, under reject."""
        if cfg.unmatched != "reject" or flow.response is not None:
            return
        req = flow.request
        if not routing.candidates(cfg.routes, req.host, req.port):  # a route of anyone's
            answer(flow, 403, "no route for host")
            self._rejected(None)
            logger.info("authgw: CONNECT to a host no route matches; answered 403")

    def next_layer(self, cfg: Config, nextlayer: layer.NextLayer) -> None:
        """Replace a raw TCP/UDP relay to a guarded host by a layer that closes it."""
        if not isinstance(nextlayer.layer, _RELAYS):
            return
        address = nextlayer.context.server.address
        if address is None:
            return
        port = int(address[1])
        sni = nextlayer.context.client.sni
        guarded = _guarded_relay(cfg, str(address[0]), sni, port)
        relay = type(nextlayer.layer).__name__.removesuffix("Layer")
        if guarded is None:
            self._relays[nextlayer.context.client] = (str(address[0]), sni, port, relay)
            return
        route, why = guarded
        nextlayer.layer = Refused(nextlayer.context)
        self._rejected(route)
        logger.warning(
            "authgw: closed a raw %s relay to %s:%s before relaying a byte: %s",
            relay,
            address[0],
            address[1],
            why,
        )

    def reloaded(self, cfg: Config) -> None:
        """A new config is in place: close the open raw relays it guards."""
        for client, (host, sni, port, relay) in list(self._relays.items()):
            if client.timestamp_end is not None:
                self._relays.pop(client, None)
                continue
            guarded = _guarded_relay(cfg, host, sni, port)
            if guarded is not None and _close(client, "authgw: host guarded after a reload"):
                self._relays.pop(client, None)
                self._rejected(guarded[0])
                logger.warning(
                    "authgw: closed an open raw %s relay to %s:%s: after the reload %s",
                    relay,
                    host,
                    port,
                    guarded[1],
                )

    def _rejected(self, route: Route | None) -> None:
        self.metrics.requests.add((route.name if route else NO_ROUTE, "rejected"))


def uninterceptable(cfg: Config, patterns: Iterable[str]) -> list[str]:
    """Route host patterns that an ``ignore_hosts``/``tcp_hosts`` regex keeps mitmproxy
    from intercepting: no token can be injected there."""
    regexes: Sequence[re.Pattern[str]] = [re.compile(p, re.IGNORECASE) for p in patterns]
    found = []
    for route in cfg.routes:
        for pattern in route.hosts:
            sample = ("x." + pattern.host) if pattern.wildcard and pattern.host else pattern.host
            port = pattern.port or 443
            if sample and any(r.search(f"{sample}:{port}") for r in regexes):
                found.append(f"{route.name} ({pattern.text})")
    return found
