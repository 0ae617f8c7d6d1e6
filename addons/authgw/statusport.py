"""The gateway's own loopback port, served by tornado (which mitmproxy brings, as mitmweb
does), never the proxy port:

    GET /metrics   Prometheus text format
    GET /status    JSON: routes, sources, fingerprints, cached tokens, last errors
    GET /healthz   200 while the gateway serves
    GET /readyz    200 when a config is loaded and no route is broken; else 503 with
                   JSON naming each broken route and its error_class

HEAD works on each. A request whose ``Host`` is not this port's own (an IP literal or
``localhost`` with the port) gets 421 and no document: a DNS-rebinding page cannot read
/status. The socket is bound when the server is made, so a busy or forbidden
address is an error at configure time (mitmdump refuses to start), not a log line later.
tornado parses the requests: a huge request line or header is refused, an idle or slow
client is dropped, and none of it touches the proxy.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from authgw.hosts import parse_host_port
from authgw.metrics import Metrics

logger = logging.getLogger(__name__)

Document = Callable[[], dict[str, Any]]
Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def own_host(host_header: str, port: int) -> bool:
    """Whether a request's ``Host`` names this port the way a client of it would: an IP
    literal or ``localhost``, with the port. A DNS-rebinding page reaches the port under
    its own name (``Host: attacker.example:9464``), which is refused."""
    try:
        host, given = parse_host_port(host_header)
    except ValueError:
        return False
    if given != port:
        return False
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Guarded(RequestHandler):
    """Answers 421 and nothing else to a request whose Host is not this port's own."""

    def initialize(self, port: int) -> None:
        self._port = port

    def prepare(self) -> None:
        if not own_host(self.request.headers.get("Host", ""), self._port):
            self.set_status(421)
            self.set_header("Content-Type", "text/plain")
            self.set_header("Cache-Control", "no-store")
            self.finish(b"misdirected request: the Host is not this status port\n")


class _Handler(_Guarded):
    def initialize(  # type: ignore[override]
        self, port: int, answer: Callable[[], tuple[int, str, bytes]]
    ) -> None:
        super().initialize(port)
        self._answer = answer

    def get(self) -> None:
        try:
            status, content_type, body = self._answer()
        except Exception:  # noqa: BLE001 - a status bug must not take the proxy down
            logger.error("authgw: the status port failed to answer %s", self.request.path)
            status, content_type, body = 500, "text/plain", b"internal error\n"
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.write(body)

    head = get  # tornado sends the headers of a HEAD answer without its body

    def log_exception(self, *args: Any) -> None:
        pass  # tornado's own error pages say enough; its tracebacks would only be noise


def _json(status: int, doc: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(doc, indent=2).encode() + b"\n"


class MetricsServer:
    """/metrics, /status, /healthz and /readyz on ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        status: Document,
        readiness: Readiness | None = None,
    ) -> None:
        self.address = (host, port)
        ready = readiness or (lambda: (True, {"ready": True}))

        def readyz() -> tuple[int, str, bytes]:
            ok, doc = ready()
            return _json(200 if ok else 503, doc)

        answers: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics.text()),
            "/status": lambda: _json(200, status()),
            "/healthz": lambda: (200, "text/plain", b"ok\n"),
            "/readyz": readyz,
        }
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sockets = [sock]
        self.port: int = sock.getsockname()[1]
        self._server: HTTPServer | None = None
        self._app = Application(
            [
                (path, _Handler, {"port": self.port, "answer": answer})
                for path, answer in answers.items()
            ],
            default_handler_class=_NotFound,
            default_handler_args={"port": self.port},
        )

    async def start(self) -> None:
        self._server = HTTPServer(
            self._app,
            max_header_size=16 * 1024,
            max_body_size=4 * 1024,
            idle_connection_timeout=10,
            body_timeout=5,
        )
        self._server.add_sockets(self._sockets)
        logger.info(
            "authgw: metrics and status on http://%s:%d/metrics and /status",
            self.address[0],
            self.port,
        )

    def stop(self) -> None:
        """Stop listening: the port is closed when this returns."""
        if self._server is not None:
            self._server.stop()
        else:
            for sock in self._sockets:
                sock.close()

    async def close(self) -> None:
        """``stop``, and close the connections still open (each within its idle timeout
        otherwise)."""
        self.stop()
        if self._server is not None:
            await self._server.close_all_connections()


class _NotFound(_Guarded):
    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        self.set_status(404)
        self.set_header("Content-Type", "text/plain")
        self.finish(b"/metrics, /status, /healthz or /readyz\n")
