"""End-to-end harness: a recording upstream, a real mitmdump, and proxy-aware clients.

Everything listens on and connects to loopback only, on ports the OS picks.

    Upstream          recording HTTP/1.1 server (plain or TLS), programmable answers
    Gateway           one `mitmdump -s addons/auth_gateway.py` process
    GatewayFactory    starts gateways for one test and stops them all afterwards
    proxy_request     a request through the proxy (absolute-form http, CONNECT for https)
    direct_request    a plain http request to 127.0.0.1:PORT (reverse mode, upstreams)
    wait_until        bounded polling

conftest.py wraps these as fixtures; this module has no pytest dependency.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from scripts.gencerts import CertPaths

REPO = Path(__file__).resolve().parents[2]
ADDON_SCRIPT = REPO / "addons" / "auth_gateway.py"

# Removed (whatever their case) from the environment a gateway inherits.
PROXY_ENV_VARS = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"})

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
MAX_DELAY = 60.0

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


def _header_list(headers: Headers | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def _find_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


# --------------------------------------------------------------------------- upstream


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the upstream received it (headers in arrival order)."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client_port: int

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return _find_header(self.headers, name)

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in order."""
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


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
        upstream._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers=list(self.headers.items()),
                body=body,
                client_port=self.client_address[1],
            )
        )
        answer, delay = upstream._answer_for(self)
        if delay and upstream._stopping.wait(delay):
            self.close_connection = True  # stopped while delaying: drop, do not answer
            return
        self.send_response(answer.status)
        names = {k.lower() for k, _ in answer.headers}
        for k, v in answer.headers:
            self.send_header(k, v)
        bodyless = answer.status < 200 or answer.status in (204, 304)
        if not bodyless and "content-length" not in names:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD" and not bodyless:
            self.wfile.write(answer.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread
    block_on_close = True
    request_queue_size = 256  # socketserver's 5 makes bursts wait out TCP SYN retries

    def __init__(self, upstream: Upstream, tls: ssl.SSLContext | None) -> None:
        self.upstream = upstream
        self._tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

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
    """A recording HTTP/1.1 server on 127.0.0.1 (TLS when given a server context).

    By default it answers 200 with a JSON echo
    `{"method", "path", "headers": [[name, value], ...], "body_length"}`.
    Requests are recorded before any delay, so a delayed request is already visible.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._answers: dict[str | None, _Answer] = {}
        self._delays: dict[str | None, float] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Upstream:
        if self._server is not None:
            raise RuntimeError("upstream already started")
        self._stopping.clear()
        self._server = _Server(self, self._tls)
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        """`http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, no trailing slash."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

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
            self._answers[path] = _Answer(status, tuple(_header_list(headers)), data)

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


# --------------------------------------------------------------------------- gateway


class GatewayError(RuntimeError):
    """mitmdump did not start (or did not exit when expected); the message has its output."""


READY_MARKER = "authgw-e2e-harness: ready"

# mitmdump logs "... listening at ..." *before* its start-up error check, and exits
# right after it when an addon logged an error (e.g. OptionsError from configure).
# This stand-in addon announces readiness only once that check has passed.
_READY_ADDON = f"""\
import asyncio
import json

from mitmproxy import ctx


class HarnessReady:
    def running(self):
        asyncio.get_running_loop().call_later(0.2, self.announce)

    def announce(self):
        errorcheck = ctx.master.addons.get("errorcheck")
        if getattr(getattr(errorcheck, "logger", None), "has_errored", None):
            return  # mitmdump is exiting
        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = [list(a[:2]) for a in proxyserver.listen_addrs()] if proxyserver else []
        print({READY_MARKER!r} + " " + json.dumps(addrs), flush=True)


addons = [HarnessReady()]
"""

_LISTENING = re.compile(r"listening at \[?([0-9A-Fa-f.:]+?)\]?:(\d+)")


def gateway_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A copy of os.environ without proxy variables, with `overrides` on top.

    An override of None removes the variable; explicit overrides may set proxy variables.
    """
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_ENV_VARS}
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the harness as they are written
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class Gateway:
    """One mitmdump process with the authgw addon (or another `script`, or none).

    Files live in a fresh directory under `tmp_dir` (also the process's cwd):
    `gateway.yaml` (the config, if any), `mitmdump.log` (all output), `confdir/`
    (mitmproxy's CA, created on first start), `harness_ready.py`.
    """

    def __init__(
        self,
        config_text: str | None,
        tmp_dir: Path,
        *,
        upstream_ca: Path | None = None,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-", dir=tmp_dir))
        self.confdir = self.dir / "confdir"
        self.log_path = self.dir / "mitmdump.log"
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = self.dir / "gateway.yaml"
            self.config_path.write_text(config_text, encoding="utf-8")
        self._ready_script = self.dir / "harness_ready.py"
        self._ready_script.write_text(_READY_ADDON, encoding="utf-8")
        self.upstream_ca = upstream_ca
        self.env = gateway_env(env)
        self.extra_args = list(extra_args)
        self.script = script
        self.startup_timeout = startup_timeout

        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._eof = False
        self._ports: list[int] = []

    def command(self) -> list[str]:
        """The argv mitmdump is started with."""
        cmd = [sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()"]
        if self.script is not None:
            cmd += ["-s", str(self.script)]
        cmd += ["-s", str(self._ready_script)]
        if self.config_path is not None:
            cmd += ["--set", f"authgw_config={self.config_path}"]
        cmd += ["--listen-host", "127.0.0.1", "--listen-port", "0"]
        cmd += ["--set", f"confdir={self.confdir}"]
        if self.upstream_ca is not None:
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={self.upstream_ca}"]
        return cmd + self.extra_args

    # lifecycle

    def _spawn(self) -> subprocess.Popen[str]:
        if self._proc is not None:
            raise RuntimeError("gateway already started")
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
            cwd=self.dir,
        )
        self._proc = proc
        self._reader = threading.Thread(
            target=self._read_output, args=(proc,), name=f"mitmdump-{proc.pid}", daemon=True
        )
        self._reader.start()
        return proc

    def _read_output(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        try:
            with self.log_path.open("a", encoding="utf-8") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    with self._cond:
                        self._lines.append(line.rstrip("\r\n"))
                        self._cond.notify_all()
        except (OSError, ValueError):
            pass  # the pipe was closed under us by stop(); nothing left to read
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def start(self) -> Gateway:
        """Start mitmdump and wait until it listens and passed its start-up checks.

        Raises GatewayError with everything mitmdump printed if it exits first or
        `startup_timeout` passes.
        """
        proc = self._spawn()
        deadline = time.monotonic() + self.startup_timeout
        failure: str | None = None
        with self._cond:
            while True:
                ports = self._ready_ports()
                if ports is not None:
                    break
                if self._eof or proc.poll() is not None:
                    failure = "mitmdump exited during start-up"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    failure = f"mitmdump did not start within {self.startup_timeout:g}s"
                    break
                self._cond.wait(min(remaining, 0.1))
        if failure is None and not ports:
            failure = "mitmdump started without a listening address"
        if failure is not None:
            self.stop()
            raise GatewayError(
                f"{failure} (exit code {proc.returncode})\n"
                f"command: {self.command()}\n--- output ---\n{self.output}"
            )
        self._ports = ports or []
        return self

    def _ready_ports(self) -> list[int] | None:
        for line in self._lines:
            if line.startswith(READY_MARKER):
                addrs = json.loads(line[len(READY_MARKER) :])
                return [int(port) for _host, port in addrs]
        return None

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL; join the output reader. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()

    def run_until_exit(self, timeout: float = STARTUP_TIMEOUT) -> tuple[int, str]:
        """Start mitmdump and wait for it to exit on its own: (returncode, output).

        Raises GatewayError (and kills it) if it is still running after `timeout`.
        """
        proc = self._spawn()
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise GatewayError(
                f"mitmdump did not exit within {timeout:g}s\n--- output ---\n{self.output}"
            ) from None
        self.stop()
        return returncode, self.output

    @classmethod
    def run_to_exit(
        cls,
        config_text: str | None,
        tmp_dir: Path,
        *,
        upstream_ca: Path | None = None,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        timeout: float = STARTUP_TIMEOUT,
    ) -> tuple[int, str]:
        """Run a mitmdump expected to refuse to start: (returncode, output)."""
        gateway = cls(
            config_text,
            tmp_dir,
            upstream_ca=upstream_ca,
            env=env,
            extra_args=extra_args,
            script=script,
        )
        return gateway.run_until_exit(timeout)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # state

    @property
    def port(self) -> int:
        """The first port mitmdump listens on."""
        if not self._ports:
            raise RuntimeError("gateway not started")
        return self._ports[0]

    @property
    def ports(self) -> list[int]:
        """Every port mitmdump listens on (one per --mode)."""
        return list(self._ports)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def output(self) -> str:
        """Everything mitmdump printed so far (stdout and stderr, interleaved)."""
        with self._cond:
            return "\n".join(self._lines)

    @property
    def ca_cert_path(self) -> Path:
        """mitmproxy's CA certificate (no key): what a client trusts for interception."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def wait_for_output(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait for a line of output matching regex `pattern` (searched); return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if m := regex.search(line):
                        return m
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    why = "mitmdump exited" if self._eof else f"waited {timeout:g}s"
                    raise TimeoutError(
                        f"no output line matching {pattern!r} ({why})"
                        f"\n--- output ---\n{chr(10).join(self._lines)}"
                    )
                self._cond.wait(min(remaining, 0.1))

    def listening_lines(self) -> list[tuple[str, int, str]]:
        """(host, port, line) for each "... listening at HOST:PORT." log line so far."""
        found = []
        for line in self.lines:
            if m := _LISTENING.search(line):
                found.append((m.group(1), int(m.group(2)), line))
        return found


class GatewayFactory:
    """Starts gateways sharing a tmp dir and upstream CA; `stop_all()` stops them all."""

    def __init__(self, tmp_dir: Path, *, upstream_ca: Path | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.upstream_ca = upstream_ca
        self.gateways: list[Gateway] = []

    def start(
        self,
        config_text: str | None,
        *,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> Gateway:
        """Start a gateway and wait until it is ready (GatewayError if it is not)."""
        gateway = Gateway(
            config_text,
            self.tmp_dir,
            upstream_ca=self.upstream_ca,
            env=env,
            extra_args=extra_args,
            script=script,
            startup_timeout=startup_timeout,
        )
        self.gateways.append(gateway)
        return gateway.start()

    __call__ = start

    def run_to_exit(
        self,
        config_text: str | None,
        *,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        timeout: float = STARTUP_TIMEOUT,
    ) -> tuple[int, str]:
        """Run a gateway expected to refuse to start: (returncode, output)."""
        return Gateway.run_to_exit(
            config_text,
            self.tmp_dir,
            upstream_ca=self.upstream_ca,
            env=env,
            extra_args=extra_args,
            script=script,
            timeout=timeout,
        )

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for gateway in reversed(self.gateways):
            try:
                gateway.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class Response:
    """A complete response (body read, connection closed)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return _find_header(self.headers, name)

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
        header_list = _header_list(headers)
        names = {k.lower() for k, _ in header_list}
        data = body.encode() if isinstance(body, str) else body
        conn.putrequest(
            method,
            target,
            skip_host="host" in names,
            skip_accept_encoding="accept-encoding" in names,
        )
        for k, v in header_list:
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
    header_list = _header_list(headers)
    if host_header is not None:
        header_list = [(k, v) for k, v in header_list if k.lower() != "host"]
        header_list.insert(0, ("Host", host_header))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return _exchange(conn, method, path, header_list, body)
