"""The emulator's HTTP handler: which path goes to which part.

``POST /`` goes to the STS query protocol (``authgw.emulator.sts``), ``POST
/oauth2/token`` to the OAuth2 token endpoint (``authgw.emulator.oauth2``),
``/.well-known/*`` to discovery and the JWKS (``authgw.emulator.keys``), and
``/_emulator/*`` to the test controls of :class:`StsEmulator`:

- ``/_emulator/faults`` (GET, POST ``{"code", "times", "latency", "message"}``, DELETE)
  and ``/_emulator/calls`` (GET, DELETE) for STS; DELETE of either clears OAuth2's too,
  as ``reset()`` and ``clear_calls()`` do;
- ``/_emulator/oauth2/faults`` (GET, POST ``{"code", "times", "latency", "message",
  "lifetime"}`` where ``code`` is an OAuth2 error code or a bad-answer mode, DELETE) and
  ``/_emulator/oauth2/calls`` (GET, DELETE) for OAuth2 alone.

Any method on ``/_sigv4/...`` checks the request's SigV4 signature
(``authgw.emulator.sigv4``): 200 with an echo of what was signed, or 403 with the AWS
error code (``x-amzn-ErrorType``) and why.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from authgw.emulator.controls import fault_settings, oauth2_fault_settings
from authgw.emulator.oauth2 import OAUTH2_ANSWERS, TOKEN_PATH, OAuth2Service
from authgw.emulator.sigv4 import SIGV4_PATH, SigV4Verifier, echo
from authgw.emulator.sts import StsService

MAX_BODY_BYTES = 1 << 20
MAX_SIGNED_BODY_BYTES = 4 << 20  # the SigV4 echo takes larger bodies


class Controls(Protocol):
    """What the handler asks of the emulator it serves (``StsEmulator`` is one): the
    ``/_emulator/*`` controls and the discovery documents."""

    @property
    def calls(self) -> Sequence[Any]: ...
    @property
    def oauth2_calls(self) -> Sequence[Any]: ...
    def openid_configuration(self) -> dict[str, Any]: ...
    def jwks(self) -> dict[str, Any]: ...
    def faults_state(self) -> dict[str, Any]: ...
    def oauth2_faults_state(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    def clear_calls(self) -> None: ...
    def oauth2_reset(self) -> None: ...
    def clear_oauth2_calls(self) -> None: ...
    def fail_with(
        self, code: str, times: int | None = None, message: str | None = None
    ) -> None: ...

    def set_latency(self, seconds: float) -> None: ...
    def oauth2_fail_with(
        self, code: str, times: int | None = None, message: str | None = None
    ) -> None: ...
    def oauth2_answer_with(self, mode: str, times: int | None = None) -> None: ...
    def set_oauth2_latency(self, seconds: float) -> None: ...
    def set_oauth2_lifetime(self, seconds: int) -> None: ...


class EmulatorServer(ThreadingHTTPServer):
    """The HTTP server of one emulator; its parts are set before it serves."""

    daemon_threads = True
    request_queue_size = 128
    emulator: Controls
    sts: StsService
    oauth2: OAuth2Service
    sigv4: SigV4Verifier

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its own timeout) is not the emulator's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class EmulatorServer6(EmulatorServer):
    address_family = socket.AF_INET6


def _calls_listing(calls: Sequence[Any]) -> dict[str, Any]:
    return {"call_count": len(calls), "calls": [asdict(call) for call in calls]}


class Handler(BaseHTTPRequestHandler):
    server_version = "authgw-sts-emulator"
    # HTTP/1.0: one request per connection, so stop() leaves no idle keep-alive threads.
    protocol_version = "HTTP/1.0"

    @property
    def _server(self) -> EmulatorServer:
        return cast(EmulatorServer, self.server)

    @property
    def emulator(self) -> Controls:
        return self._server.emulator

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log; calls are logged by the emulator."""

    def _send(
        self, status: int, body: str, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload), "application/json")

    def _read_body(self, limit: int = MAX_BODY_BYTES) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= limit:
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "bad body length"})
            return None
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes | None:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                size = -1
            if size < 0 or len(body) + size > limit:
                self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "bad chunking"})
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline(1024)  # the CRLF after the chunk

    @property
    def _path(self) -> str:
        return urlsplit(self.path).path

    def _views(self) -> dict[str, Callable[[], object]]:
        """What GET answers on each path (DELETE clears it first)."""
        emulator = self.emulator
        return {
            "/.well-known/openid-configuration": emulator.openid_configuration,
            "/.well-known/jwks.json": emulator.jwks,
            "/_emulator/calls": lambda: _calls_listing(emulator.calls),
            "/_emulator/faults": emulator.faults_state,
            "/_emulator/oauth2/calls": lambda: _calls_listing(emulator.oauth2_calls),
            "/_emulator/oauth2/faults": emulator.oauth2_faults_state,
        }

    def _sigv4(self) -> None:
        body = self._read_body(MAX_SIGNED_BODY_BYTES)
        if body is None:
            return
        url = f"http://{self.headers.get('Host', '')}{self.path}"
        verdict = self._server.sigv4.check(self.command, url, self.headers.items(), body)
        if verdict.ok:
            payload = echo(verdict, self.command, self.path, body)
            self._send(HTTPStatus.OK, json.dumps(payload), "application/json")
            return
        error = {"__type": verdict.code, "message": verdict.message}
        headers = {"x-amzn-ErrorType": verdict.code}
        self._send(HTTPStatus.FORBIDDEN, json.dumps(error), "application/json", headers)

    def _signed(self) -> bool:
        if self._path.startswith(SIGV4_PATH):
            self._sigv4()
            return True
        return False

    def do_PUT(self) -> None:
        if not self._signed():
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    do_PATCH = do_HEAD = do_PUT

    def do_GET(self) -> None:
        if self._signed():
            return
        view = self._views().get(self._path)
        if view is not None:
            self._send_json(HTTPStatus.OK, view())
        elif self._path == TOKEN_PATH:
            body = {"error": "invalid_request", "error_description": "The token endpoint is POST."}
            headers = {"Allow": "POST"}
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, json.dumps(body), "application/json", headers)
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_DELETE(self) -> None:
        if self._signed():
            return
        emulator = self.emulator
        clear = {
            "/_emulator/faults": emulator.reset,
            "/_emulator/calls": emulator.clear_calls,
            "/_emulator/oauth2/faults": emulator.oauth2_reset,
            "/_emulator/oauth2/calls": emulator.clear_oauth2_calls,
        }.get(self._path)
        if clear is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        clear()
        self._send_json(HTTPStatus.OK, self._views()[self._path]())

    def do_POST(self) -> None:
        if self._signed():
            return
        path = self._path
        if path not in ("/", TOKEN_PATH, "/_emulator/faults", "/_emulator/oauth2/faults"):
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        body = self._read_body()
        if body is None:
            return
        if path == "/":
            query = urlsplit(self.path).query
            status, xml = self._server.sts.answer(query, body, self.headers.get("Authorization"))
            self._send(status, xml, "text/xml")
        elif path == TOKEN_PATH:
            answer = self._server.oauth2.answer(
                self.headers.get("Content-Type"), body, self.headers.get("Authorization")
            )
            self._send(answer.status, answer.body, answer.content_type, answer.headers)
        else:
            self._post_faults(path, body)

    def _post_faults(self, path: str, body: bytes) -> None:
        emulator = self.emulator
        try:
            data = json.loads(body or b"{}")  # json.JSONDecodeError is a ValueError too
            if path == "/_emulator/faults":
                self._set_sts_faults(data)
                state = emulator.faults_state()
            else:
                self._set_oauth2_faults(data)
                state = emulator.oauth2_faults_state()
        except ValueError as e:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        self._send_json(HTTPStatus.OK, state)

    def _set_sts_faults(self, data: object) -> None:
        code, times, latency, message = fault_settings(data)
        if code is not None:
            self.emulator.fail_with(code, times, message)
        if latency is not None:
            self.emulator.set_latency(latency)

    def _set_oauth2_faults(self, data: object) -> None:
        (code, times, latency, message), lifetime = oauth2_fault_settings(data)
        if code is not None and code in OAUTH2_ANSWERS:
            if message is not None:
                raise ValueError("a bad-answer mode takes no message")
            self.emulator.oauth2_answer_with(code, times)
        elif code is not None:
            self.emulator.oauth2_fail_with(code, times, message)
        if latency is not None:
            self.emulator.set_oauth2_latency(latency)
        if lifetime is not None:
            self.emulator.set_oauth2_lifetime(lifetime)
