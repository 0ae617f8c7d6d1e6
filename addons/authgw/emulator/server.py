"""The emulator's HTTP server: its lifecycle, and which path goes to which part.

``StsEmulator`` binds a loopback port, serves on a daemon thread and sends each
request to the part that answers it: ``POST /`` to the STS query protocol
(``authgw.emulator.sts``), ``/.well-known/*`` to discovery and the JWKS
(``authgw.emulator.keys``), ``/_emulator/*`` to the test controls
(``authgw.emulator.controls``). ``serve()`` runs one in the foreground for
``authgw sts-emulator``.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import authgw.emulator.keys as keys
from authgw.emulator.controls import CallLog, Faults, fault_settings
from authgw.emulator.sts import (
    AWS_ERRORS,
    DEMO_ACCESS_KEY_ID,
    DEMO_REGION,
    DEMO_SECRET_ACCESS_KEY,
    TOKEN_CLAIMS,
    StsService,
)
from authgw.emulator.sts_request import SIGNING_ALGORITHMS, CallRecord

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class StsEmulator:
    """A local STS ``GetWebIdentityToken`` endpoint on its own HTTP server thread.

    Use as ``with StsEmulator() as sts: ...`` or ``start()`` / ``stop()``. ``url``,
    ``issuer`` and ``jwks_url`` are valid once started. Fault and latency controls
    and the call record are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        account: str = "123456789012",
    ) -> None:
        self._host = host
        self._port = port
        self._clock = clock
        self._account = account
        self._stopping = threading.Event()
        self._faults = Faults()
        self._calls: CallLog[CallRecord] = CallLog()
        self._keys: dict[str, keys.SigningKey] = {}
        self._sts: StsService | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> StsEmulator:
        """Generate signing keys, bind, and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("StsEmulator already started")
        self._stopping.clear()
        self._keys = {alg: keys.make_key(alg) for alg in SIGNING_ALGORITHMS}
        server_class = _Server6 if ":" in self._host else _Server
        server = server_class((self._host, self._port), _Handler)
        server.emulator = self
        host, port = server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        # A wildcard bind is reachable on loopback; the issuer must be a URL clients can use.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._sts = StsService(
            issuer=self.issuer,
            account=self._account,
            keys=self._keys,
            clock=self._clock,
            faults=self._faults,
            calls=self._calls,
            stopping=self._stopping,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sts-emulator-{port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("sts emulator listening on %s", self._url)
        return self

    def stop(self) -> None:
        """Stop serving; calls waiting out an injected latency answer at once. Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("sts emulator on %s stopped", self._url)

    def __enter__(self) -> StsEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; boto3's ``endpoint_url``."""
        if self._url is None:
            raise RuntimeError("StsEmulator not started")
        return self._url

    @property
    def issuer(self) -> str:
        """The ``iss`` claim of every token: the emulator's own URL (OIDC discovery)."""
        return self.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    @property
    def account(self) -> str:
        return self._account

    # -- fault injection and call record -------------------------------------------

    def fail_with(self, code: str, times: int | None = None, message: str | None = None) -> None:
        """Answer the next ``times`` GetWebIdentityToken calls (all if None) with ``code``.

        ``code`` must be a key of AWS_ERRORS; the HTTP status is the one STS uses.
        """
        if code not in AWS_ERRORS:
            raise ValueError(f"unknown AWS error code {code!r}; known: {', '.join(AWS_ERRORS)}")
        default = AWS_ERRORS[code].message
        self._faults.fail_with(code, times, message if message is not None else default)

    def set_latency(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each GetWebIdentityToken call."""
        self._faults.set_latency(seconds)

    def hold(self) -> None:
        """Hold every GetWebIdentityToken answer until ``release()`` (tests count who waits)."""
        self._faults.gate.clear()

    def release(self) -> None:
        self._faults.gate.set()

    def set_clock_skew(self, seconds: float) -> None:
        """Issue tokens as if this STS's clock ran ``seconds`` behind: they arrive with that
        much less of their life left (a source whose tokens come back near expiry)."""
        self._faults.set_skew(seconds)

    def reset(self) -> None:
        """Clear injected faults, latency and clock skew (the call record stays)."""
        self._faults.reset()

    def clear_calls(self) -> None:
        self._calls.clear()

    @property
    def calls(self) -> list[CallRecord]:
        """A snapshot of the recorded GetWebIdentityToken calls, oldest first."""
        return self._calls.records

    @property
    def call_count(self) -> int:
        return len(self._calls)

    @property
    def in_flight(self) -> int:
        """GetWebIdentityToken calls being answered right now (e.g. waiting out latency)."""
        return self._calls.in_flight

    def faults_state(self) -> dict[str, Any]:
        """The current fault and latency as JSON-ready data."""
        return self._faults.state()

    # -- discovery --------------------------------------------------------------------

    def openid_configuration(self) -> dict[str, Any]:
        return keys.openid_configuration(
            self.issuer, self.jwks_url, SIGNING_ALGORITHMS, TOKEN_CLAIMS
        )

    def jwks(self) -> dict[str, Any]:
        return keys.jwks(self._keys.values())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its own timeout) is not the emulator's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    emulator: StsEmulator


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "authgw-sts-emulator"
    # HTTP/1.0: one request per connection, so stop() leaves no idle keep-alive threads.
    protocol_version = "HTTP/1.0"

    @property
    def emulator(self) -> StsEmulator:
        return cast(_Server, self.server).emulator

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log; calls are logged by the emulator."""

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload), "application/json")

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "bad body length"})
            return None
        return self.rfile.read(length)

    @property
    def _path(self) -> str:
        return urlsplit(self.path).path

    def do_GET(self) -> None:
        emulator = self.emulator
        path = self._path
        if path == "/.well-known/openid-configuration":
            self._send_json(HTTPStatus.OK, emulator.openid_configuration())
        elif path == "/.well-known/jwks.json":
            self._send_json(HTTPStatus.OK, emulator.jwks())
        elif path == "/_emulator/calls":
            calls = [asdict(call) for call in emulator.calls]
            self._send_json(HTTPStatus.OK, {"call_count": len(calls), "calls": calls})
        elif path == "/_emulator/faults":
            self._send_json(HTTPStatus.OK, emulator.faults_state())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_DELETE(self) -> None:
        path = self._path
        if path == "/_emulator/faults":
            self.emulator.reset()
            self._send_json(HTTPStatus.OK, self.emulator.faults_state())
        elif path == "/_emulator/calls":
            self.emulator.clear_calls()
            self._send_json(HTTPStatus.OK, {"call_count": 0, "calls": []})
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        path = self._path
        if path == "/_emulator/faults":
            self._post_faults()
        elif path == "/":
            self._post_query()
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _post_faults(self) -> None:
        body = self._read_body()
        if body is None:
            return
        emulator = self.emulator
        try:
            code, times, latency, message = fault_settings(json.loads(body or b"{}"))
            if code is not None:
                emulator.fail_with(code, times, message)
            if latency is not None:
                emulator.set_latency(latency)
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        self._send_json(HTTPStatus.OK, emulator.faults_state())

    def _post_query(self) -> None:
        body = self._read_body()
        if body is None:
            return
        sts = self.emulator._sts
        assert sts is not None  # set before the server thread starts
        status, xml = sts.answer(urlsplit(self.path).query, body, self.headers.get("Authorization"))
        self._send(status, xml, "text/xml")


def serve(host: str = "127.0.0.1", port: int = 8090) -> None:
    """Run an emulator in the foreground until Ctrl-C, after printing how to use it."""
    with StsEmulator(host, port) as sts:
        lines = [
            f"authgw sts-emulator listening on {sts.url}",
            f"# issuer {sts.issuer}, JWKS {sts.jwks_url}",
            "# point boto3 / the AWS CLI at it with these environment variables:",
            f"AWS_ENDPOINT_URL_STS={sts.url}",
            f"AWS_REGION={DEMO_REGION}",
            f"AWS_DEFAULT_REGION={DEMO_REGION}",  # what boto3 itself reads
            f"AWS_ACCESS_KEY_ID={DEMO_ACCESS_KEY_ID}",
            f"AWS_SECRET_ACCESS_KEY={DEMO_SECRET_ACCESS_KEY}",
        ]
        print("\n".join(lines), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
