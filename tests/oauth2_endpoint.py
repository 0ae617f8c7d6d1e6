"""A minimal OAuth2 token endpoint written from RFC 6749 4.4 and 5, for the tests: not the
project's emulator, so the oauth2 source is also held to the RFC by someone else's reading.

One registered client; `mode` picks a well-formed answer or one of the bad ones a client
must survive. Calls are recorded (client id, how it authenticated, the form) for checks.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

MODES = ("ok", "html", "no_token", "expires_0", "expires_-1", "expires_abc", "hang", "error")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        endpoint = self.server.endpoint
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        client, how = self._client(form)
        endpoint.calls.append({"client_id": client, "auth": how, "form": sorted(form)})
        if self.path != "/token" or form.get("grant_type") != "client_credentials":
            return self._json(400, {"error": "unsupported_grant_type"})
        if client is None:
            return self._json(401, {"error": "invalid_client"}, {"WWW-Authenticate": "Basic"})
        mode = endpoint.mode
        if mode == "hang":
            endpoint.stopping.wait(30)
            return None
        if mode == "html":
            return self._send(200, b"<html><body>Sign in</body></html>", "text/html")
        if mode == "error":
            return self._json(400, {"error": endpoint.error_code, "error_description": "no"})
        endpoint.issued += 1
        body: dict[str, Any] = {"token_type": "Bearer"}
        if mode != "no_token":
            body["access_token"] = f"opaque-{endpoint.issued}-{time.time_ns()}"
        body["expires_in"] = {"expires_0": 0, "expires_-1": -1, "expires_abc": "abc"}.get(
            mode, endpoint.expires_in
        )
        return self._json(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _client(self, form: dict[str, str]) -> tuple[str | None, str]:
        """(client id if authenticated, how): RFC 6749 2.3.1, Basic or the form, not both."""
        endpoint, header = self.server.endpoint, self.headers.get("Authorization", "")
        if header.startswith("Basic ") and "client_secret" not in form:
            pair = base64.b64decode(header[6:]).decode()
            client_id, _, secret = pair.partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
            how = "client_secret_basic"
        elif not header and "client_secret" in form:
            client_id, secret, how = (
                form.get("client_id", ""),
                form["client_secret"],
                "client_secret_post",
            )
        else:
            return None, "none"
        ok = client_id == endpoint.client_id and secret == endpoint.client_secret
        return (client_id if ok else None), how

    def _json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: TokenEndpoint


class TokenEndpoint:
    """`with TokenEndpoint(client_id, client_secret) as ep:` -> `ep.url` is its token URL."""

    def __init__(self, client_id: str, client_secret: str, *, expires_in: int = 300) -> None:
        self.client_id, self.client_secret, self.expires_in = client_id, client_secret, expires_in
        self.mode = "ok"
        self.error_code = "invalid_scope"  # what mode "error" answers
        self.calls: list[dict[str, Any]] = []
        self.issued = 0
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.endpoint = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def __enter__(self) -> TokenEndpoint:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
