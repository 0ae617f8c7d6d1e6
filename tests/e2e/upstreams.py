"""End-to-end upstreams: recording HTTP servers on loopback with programmable answers.

    Upstream             a recording server on 127.0.0.1 (or another 127.x address):
                         HTTP/1.1 or, with `http10=True`, HTTP/1.0; plain or TLS
    RecordedRequest      one request as the upstream received it
    Reply                an answer made from the request (`Upstream.respond_from`)
    server_tls_context   the TLS context an https upstream presents

They listen on ports the OS picks.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from scripts.gencerts import CertPaths
from tests.e2e.clients import HeaderLookup, Headers, header_list, wait_until

STOP_TIMEOUT = 10.0
MAX_DELAY = 60.0


@dataclass(frozen=True)
class RecordedRequest(HeaderLookup):
    """One request as the upstream received it (headers in arrival order)."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client_port: int


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    chunks: tuple[bytes, ...] | None = None  # sent chunked, one write per chunk


@dataclass(frozen=True)
class Reply:
    """An answer made from the request: `body`, or `chunks` sent with chunked framing."""

    status: int = 200
    headers: Headers | None = None
    body: bytes = b""
    chunks: list[bytes] | None = None


def server_tls_context(certs: CertPaths) -> ssl.SSLContext:
    """A server-side TLS context presenting the generated server certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    return ctx


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A connection left idle (keep-alive) or stuck mid-request ends after this.
    timeout = 10.0
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silence the access log

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    return None
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        return self.rfile.read(int(length))

    def _serve(self) -> None:
        upstream = self.server.upstream
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            self.send_error(400, "bad body framing")
            self.close_connection = True
            return
        recorded = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=list(self.headers.items()),
            body=body,
            client_port=self.client_address[1],
        )
        upstream._record(recorded)
        answer, delay = upstream._answer_for(self)
        if delay and upstream._stopping.wait(delay):
            self.close_connection = True  # stopped while delaying: drop, do not answer
            return
        make = upstream._made_for(self)
        if make is not None:
            made = make(recorded)
            headers = tuple(header_list(made.headers))
            chunks = tuple(made.chunks) if made.chunks is not None else None
            answer = _Answer(made.status, headers, made.body, chunks)
        self.send_response(answer.status)
        names = {k.lower() for k, _ in answer.headers}
        for k, v in answer.headers:
            self.send_header(k, v)
        bodyless = answer.status < 200 or answer.status in (204, 304)
        if answer.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
        elif not bodyless and "content-length" not in names:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.chunks is not None:
            for chunk in answer.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif self.command != "HEAD" and not bodyless:
            self.wfile.write(answer.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _Http10Handler(_Handler):
    # One request per connection: the gateway opens a new one for every request.
    protocol_version = "HTTP/1.0"


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread
    block_on_close = True
    request_queue_size = 256  # socketserver's 5 makes bursts wait out TCP SYN retries

    def __init__(
        self, upstream: Upstream, host: str, tls: ssl.SSLContext | None, http10: bool
    ) -> None:
        self.upstream = upstream
        self._tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, 0), _Http10Handler if http10 else _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(): a DNS lookup we do not want.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self._tls is not None:
            try:
                # The handshake happens in the handler thread, not in the accept loop.
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except BaseException:
                sock.close()
                raise
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that goes away (or a failed handshake) is not an upstream error

    def abort_connections(self) -> None:
        """Unblock handler threads waiting on their sockets (keep-alive, slow clients)."""
        with self._open_lock:
            for sock in self._open:
                try:
                    # socket.socket's own shutdown: SSLSocket.shutdown would drop its TLS state.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


class Upstream:
    """A recording HTTP/1.1 server on `host` (TLS when given a server context).

    `host` is 127.0.0.1 or another IPv4 loopback address (127.0.0.2 ...), the port is
    the OS's pick. `http10=True` speaks HTTP/1.0: one request per connection.

    By default it answers 200 with a JSON echo
    `{"method", "path", "headers": [[name, value], ...]}`.
    Requests are recorded before any delay, so a delayed request is already visible.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        http10: bool = False,
    ) -> None:
        self.host = host
        self.http10 = http10
        self._tls = tls
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._answers: dict[str | None, _Answer] = {}
        self._makers: dict[str, Callable[[RecordedRequest], Reply]] = {}
        self._delays: dict[str | None, float] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Upstream:
        if self._server is not None:
            raise RuntimeError("upstream already started")
        self._stopping.clear()
        self._server = _Server(self, self.host, self._tls, self.http10)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and join every thread. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # ends delays
        server.shutdown()
        if thread is not None:
            thread.join(STOP_TIMEOUT)
        server.abort_connections()
        server.server_close()  # joins the handler threads
        self._server = None
        self._thread = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("upstream not started")
        return self._server.server_port

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def url(self) -> str:
        """`http://HOST:PORT` or `https://HOST:PORT`, no trailing slash."""
        return f"{self.scheme}://{self.host}:{self.port}"

    # programming

    def respond(
        self,
        status: int,
        headers: Headers | None = None,
        body: bytes | str = b"",
        path: str | None = None,
    ) -> None:
        """Answer `path` (the URL path without query; None = every path) like this."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._answers[path] = _Answer(status, tuple(header_list(headers)), data)

    def respond_from(self, path: str, make: Callable[[RecordedRequest], Reply]) -> None:
        """Answer `path` with what `make` makes of the request (an echo of some shape)."""
        with self._lock:
            self._makers[path] = make

    def delay(self, seconds: float, path: str | None = None) -> None:
        """Wait `seconds` (0..60) before answering `path` (None = every path).

        The wait ends early when the upstream stops; the request then gets no answer.
        """
        if not 0 <= seconds <= MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY:g} seconds")
        with self._lock:
            self._delays[path] = seconds

    def reset(self) -> None:
        """Forget recorded requests, programmed answers and delays."""
        with self._lock:
            self._requests.clear()
            self._answers.clear()
            self._makers.clear()
            self._delays.clear()

    # recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("the upstream has not received any request")
            return self._requests[-1]

    def clear(self) -> None:
        """Forget the recorded requests (programmed answers stay)."""
        with self._lock:
            self._requests.clear()

    def wait_for_count(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least `n` requests were recorded; return the snapshot."""
        wait_until(lambda: self.count >= n, timeout, message=f"{n} upstream request(s)")
        return self.requests

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _made_for(self, handler: _Handler) -> Callable[[RecordedRequest], Reply] | None:
        with self._lock:
            return self._makers.get(urlsplit(handler.path).path)

    def _answer_for(self, handler: _Handler) -> tuple[_Answer, float]:
        path = urlsplit(handler.path).path
        with self._lock:
            answer = self._answers.get(path) or self._answers.get(None)
            delay = self._delays.get(path, self._delays.get(None, 0.0))
        if answer is None:
            echo = {
                "method": handler.command,
                "path": handler.path,
                "headers": [[k, v] for k, v in handler.headers.items()],
            }
            answer = _Answer(
                200, (("Content-Type", "application/json"),), json.dumps(echo).encode()
            )
        return answer, delay
