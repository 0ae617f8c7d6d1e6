"""A client that controls every header, the SNI and the bytes after CONNECT, against a
real mitmdump: a token reaches only the hosts its route names, and nothing walks around
`unmatched: reject` or `verify.enforce`.

One gateway is shared (`unmatched: reject`): `api` (plain http, a static token),
`tls_api` (https, a static token; its upstream records the SNI it was asked for),
`enforced` and `enforced_tls` (verify routes with `enforce: true`), and an upstream no
route names. Each test checks what the upstream received, not only what the client saw.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authgw.hosts import parse_host_port
from scripts.gencerts import CertPaths
from tests.e2e import clients, conftest
from tests.e2e.clients import Response, proxy_request
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.helpers import (
    bearer_token,
    fingerprint,
    leaks,
    new_secret,
    raw_request,
    replace_file,
)
from tests.e2e.upstreams import Upstream, server_tls_context

pytestmark = pytest.mark.e2e

STATIC = "attack-static-token-" + new_secret()[:24]
VERIFY_SECRET = new_secret()
IP_SPELLINGS = ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "[::ffff:127.0.0.1]"]


@dataclass
class Lab:
    factory: GatewayFactory
    gateway: Gateway
    up: dict[str, Upstream]
    sni: list[str | None] = field(default_factory=list)  # what the TLS upstreams were asked
    # The same config with connection_strategy=lazy: mitmproxy then offers HTTP/2 to the
    # client before it meets the HTTP/1.1 upstream (eager mirrors the upstream's ALPN).
    h2: Gateway | None = None

    @property
    def port(self) -> int:
        return self.gateway.port

    def assert_untouched(self, *names: str) -> None:
        got = {n: self.up[n].count for n in names if self.up[n].count}
        assert not got, f"requests reached {got}"


def _recording_tls(certs: CertPaths, seen: list[str | None]) -> ssl.SSLContext:
    context = server_tls_context(certs)
    context.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,return-value]
    return context


class RawServer:
    """A TCP server on 127.0.0.1 (no HTTP) that hands each connection to ``_handle`` on a
    thread of its own; ``stop`` closes the listening socket."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._sock.close()


class RawRecorder(RawServer):
    """A TLS server that records every byte it receives (no HTTP parsing), for the raw
    relays the proxy must never make."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self._tls = tls
        self.received = bytearray()
        self._lock = threading.Lock()
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self._tls.wrap_socket(conn, server_side=True) as tls:
                while data := tls.recv(65536):
                    with self._lock:
                        self.received += data
        except (OSError, ssl.SSLError):
            pass

    def reset(self) -> None:
        with self._lock:
            self.received.clear()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def start(self) -> RawRecorder:
        return self


def routes_config(up: dict[str, Upstream]) -> str:
    verify = {"secret": {"env": "ATTACK_VERIFY"}, "enforce": True}
    static = {"type": "static", "value": {"env": "ATTACK_STATIC"}}
    routes = [
        {"name": "api", "hosts": [f"127.0.0.1:{up['api'].port}"], "token": static},
        {
            "name": "tls_api",
            "hosts": [f"localhost:{up['tls'].port}", f"127.0.0.1:{up['tls'].port}"],
            "token": static,
        },
        {"name": "enforced", "hosts": [f"127.0.0.1:{up['enforced'].port}"], "verify": verify},
        {
            "name": "enforced_tls",
            "hosts": [f"127.0.0.1:{up['enforced_tls'].port}"],
            "verify": verify,
        },
    ]
    top = {"version": 1, "unmatched": "reject", "upstream_header": "X-Upstream-Host"}
    return json.dumps({**top, "routes": routes})


@pytest.fixture(scope="module")
def lab_(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Lab]:
    seen: list[str | None] = []
    up = {
        "api": Upstream(),
        "tls": Upstream(tls=_recording_tls(certs, seen)),
        "enforced": Upstream(),
        "enforced_tls": RawRecorder(server_tls_context(certs)),  # type: ignore[dict-item]
        "unrouted": Upstream(),
    }
    for server in up.values():
        server.start()
    factory = GatewayFactory(tmp_path_factory.mktemp("attacks"), upstream_ca=certs.ca_cert)
    try:
        env = {"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET}
        gateway = factory.start(routes_config(up), env=env)
        h2 = factory.start(
            routes_config(up), env=env, extra_args=["--set", "connection_strategy=lazy"]
        )
        yield Lab(factory, gateway, up, seen, h2)
    finally:
        factory.stop_all()
        for server in up.values():
            server.stop()


@pytest.fixture
def lab(lab_: Lab, request: pytest.FixtureRequest) -> Lab:
    for server in lab_.up.values():
        server.reset()
    lab_.sni.clear()
    conftest.report_output(request, lab_.factory)
    return lab_


def tunnel(port: int, target: str) -> tuple[socket.socket, bytes]:
    """A CONNECT to `target` through the proxy: (socket, the proxy's answer head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def closed_without_answer(sock: socket.socket) -> bool:
    """True if the peer closes (or resets) without sending a byte."""
    try:
        return sock.recv(4096) == b""
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return True


def curl(lab: Lab, *args: str) -> tuple[int, str]:
    """curl through the gateway, trusting its CA: (HTTP status, stdout)."""
    status, _, body = _curl(lab.gateway, *args)
    return status, body


def curl_h2(lab: Lab, *args: str) -> tuple[int, str]:
    """curl --http2 through the lazy gateway; fails unless HTTP/2 was spoken to it."""
    assert lab.h2 is not None
    status, version, body = _curl(lab.h2, "--http2", *args)
    assert version == "2", f"curl spoke HTTP/{version} to the proxy"
    return status, body


def _curl(gateway: Gateway, *args: str) -> tuple[int, str, str]:
    return clients.curl(gateway.port, gateway.ca_cert_path, *args)


# --------------------------------------------------------------- 1. raw-TCP bypass


def test_raw_bytes_after_connect_never_reach_an_enforce_route(lab: Lab) -> None:
    target = f"127.0.0.1:{lab.up['enforced'].port}"
    sock, head = tunnel(lab.port, target)
    with sock:
        assert b" 200 " in head.split(b"\r\n")[0]  # a routed host: the tunnel opens
        # A leading CRLF makes mitmproxy fall back to raw TCP (rawtcp is on by default).
        sock.sendall(
            f"\r\nGET /forged HTTP/1.1\r\nHost: {target}\r\nX-Orig-Auth: forged\r\n\r\n".encode()
        )
        assert closed_without_answer(sock)
    lab.assert_untouched("enforced")
    lab.gateway.wait_for_output("closed a raw TCP relay")  # the log line may trail the close


def test_non_http_inside_tls_without_alpn_never_reaches_an_enforce_route(lab: Lab) -> None:
    sock, head = tunnel(lab.port, f"127.0.0.1:{lab.up['enforced_tls'].port}")
    context = ssl.create_default_context(cafile=str(lab.gateway.ca_cert_path))
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:  # no ALPN offered
        tls.sendall(b"\r\nGET /forged HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert closed_without_answer(tls)
    lab.assert_untouched("enforced_tls")


def test_connect_to_an_unrouted_host_is_403_before_a_tunnel(lab: Lab) -> None:
    sock, head = tunnel(lab.port, f"127.0.0.1:{lab.up['unrouted'].port}")
    with sock:
        assert head.startswith(b"HTTP/1.1 403")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    lab.assert_untouched("unrouted")


def test_an_ignored_host_is_closed_not_passed_through(
    lab: Lab, gateway_factory: GatewayFactory
) -> None:
    port = lab.up["enforced"].port
    gateway = gateway_factory(
        routes_config(lab.up),
        env={"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET},
        extra_args=["--set", f"ignore_hosts=^127\\.0\\.0\\.1:{port}$"],
    )
    assert "ignore_hosts keeps mitmproxy from intercepting route enforced" in gateway.output
    sock, head = tunnel(gateway.port, f"127.0.0.1:{port}")
    with sock:
        assert b" 200 " in head.split(b"\r\n")[0]
        sock.sendall(f"GET /passthrough HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert closed_without_answer(sock)
    lab.assert_untouched("enforced")


# ------------------------------------------------------ 2. the host the client picks


def assert_421(resp: Response) -> None:
    assert resp.status == 421, resp.text
    assert resp.header("X-Authgw-Error") == "host_mismatch"
    assert STATIC not in resp.text


def test_a_host_header_naming_another_virtual_host_is_421(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.up['api'].port}/vhost"
    assert_421(proxy_request(lab.port, "GET", url, {"Host": "tenant-b.example"}))
    lab.assert_untouched("api")
    ok = proxy_request(lab.port, "GET", url)
    assert ok.status == 200 and bearer_token(lab.up["api"].last.header("Authorization")) == STATIC


@pytest.mark.parametrize(
    "zoned", ["[::ffff:127.0.0.1%tenant-b.example]", "[::ffff:127.0.0.1%25tenant-b.example]"]
)
def test_a_host_with_an_ipv6_zone_id_is_421(lab: Lab, zoned: str) -> None:
    """ipaddress takes any zone text and ipv4_mapped drops it: the Host must not read as
    the route's 127.0.0.1 (the upstream would see the client's name with the token)."""
    port = lab.up["api"].port
    url = f"http://127.0.0.1:{port}/zone"
    assert_421(proxy_request(lab.port, "GET", url, {"Host": f"{zoned}:{port}"}))
    lab.assert_untouched("api")


def test_an_inner_host_header_in_a_tunnel_is_421(lab: Lab) -> None:
    url = f"https://127.0.0.1:{lab.up['tls'].port}/inner"
    ca = lab.gateway.ca_cert_path
    assert_421(proxy_request(lab.port, "GET", url, {"Host": "tenant-b.example"}, ca_file=ca))
    lab.assert_untouched("tls")


def test_http2_authority_naming_another_host_is_421(lab: Lab) -> None:
    url = f"https://localhost:{lab.up['tls'].port}/h2"
    status, body = curl_h2(lab, "-H", "Host: tenant-b.example", url)
    assert status == 421 and "host does not match the route" in body
    lab.assert_untouched("tls")


def test_http2_path_holding_an_absolute_url_is_421(lab: Lab) -> None:
    # mitmproxy would send such a :path upstream as an absolute-form request-target.
    url = f"https://localhost:{lab.up['tls'].port}/h2"
    status, body = curl_h2(lab, "--request-target", "http://tenant-b.example/x", url)
    assert status == 421 and "host does not match the route" in body
    lab.assert_untouched("tls")


def test_http2_and_grpc_style_posts_carry_the_token_to_the_routed_host(
    lab: Lab, tmp_path: Path
) -> None:
    url = f"https://localhost:{lab.up['tls'].port}"
    status, _ = curl_h2(lab, f"{url}/h2-get")
    assert status == 200
    message = tmp_path / "message.bin"
    message.write_bytes(b"\x00\x00\x00\x00\x02hi")  # a gRPC length-prefixed message
    status, _ = curl_h2(
        lab,
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        f"@{message}",
        f"{url}/pkg.Svc/Call",
    )
    assert status == 200
    got = lab.up["tls"].requests
    assert [r.path for r in got] == ["/h2-get", "/pkg.Svc/Call"]
    assert {bearer_token(r.header("Authorization")) for r in got} == {STATIC}
    assert {r.header("Host") for r in got} == {f"localhost:{lab.up['tls'].port}"}
    assert got[1].header("content-type") == "application/grpc"


def test_an_sni_naming_another_host_is_421(lab: Lab) -> None:
    port = lab.up["tls"].port
    sock, head = tunnel(lab.port, f"127.0.0.1:{port}")
    context = ssl.create_default_context(cafile=str(lab.gateway.ca_cert_path))
    context.check_hostname = False  # mitmproxy's certificate names the SNI we chose
    with context.wrap_socket(sock, server_hostname="evil.test") as tls:
        tls.sendall(
            f"GET /sni HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421"), answer[:200]
    assert b"X-Authgw-Error: host_mismatch" in answer
    lab.assert_untouched("tls")


def test_curl_connect_to_another_name_is_421(lab: Lab) -> None:
    port = lab.up["tls"].port
    status, _ = curl(
        lab, "--connect-to", f"evil.test:{port}:127.0.0.1:{port}", f"https://evil.test:{port}/"
    )
    assert status == 421
    lab.assert_untouched("tls")


def test_an_absolute_form_target_in_reverse_mode_is_421(
    lab: Lab, gateway_factory: GatewayFactory
) -> None:
    api = lab.up["api"]
    gateway = gateway_factory(
        routes_config(lab.up),
        env={"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET},
        extra_args=["--mode", f"reverse:http://127.0.0.1:{api.port}"],
    )
    head = f"GET http://evil.example/abs HTTP/1.1\r\nHost: 127.0.0.1:{api.port}".encode()
    assert_421(raw_request(gateway.port, head))
    lab.assert_untouched("api")
    bad = raw_request(gateway.port, b"GET /x HTTP/1.1\r\nHost: h\r\nX-Upstream-Host: localhost..")
    assert bad.status == 400
    ok = raw_request(gateway.port, f"GET /ok HTTP/1.1\r\nHost: 127.0.0.1:{api.port}".encode())
    assert ok.status == 200 and bearer_token(api.last.header("Authorization")) == STATIC


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    host=st.one_of(
        st.sampled_from(["127.0.0.1", "127.1", "localhost", "tenant-b", "127.0.0.1.", "[::1]"]),
        st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    ),
    port=st.sampled_from(["", ":{port}", ":1", ":80"]),
)
def test_whatever_host_a_client_names_the_upstream_sees_the_routed_host_or_nothing(
    lab_: Lab, host: str, port: str
) -> None:
    api = lab_.up["api"]
    api.reset()
    named = host + port.format(port=api.port)
    resp = raw_request(
        lab_.port, f"GET http://127.0.0.1:{api.port}/p HTTP/1.1\r\nHost: {named}".encode()
    )
    if 400 <= resp.status < 500:
        assert api.count == 0
        return
    assert resp.status == 200
    seen, _ = parse_host_port(api.last.header("Host") or "")
    assert seen == "127.0.0.1"  # as an address: 127.1 is 127.0.0.1


# ---------------------------------------------------------- 3. addresses, not text


@pytest.mark.parametrize("spelling", IP_SPELLINGS)
def test_an_ip_literal_in_any_spelling_meets_the_enforce_route(lab: Lab, spelling: str) -> None:
    port = lab.up["enforced"].port
    head = f"GET http://{spelling}:{port}/ip HTTP/1.1\r\nHost: {spelling}:{port}".encode()
    resp = raw_request(lab.port, head)
    assert resp.status == 401, (spelling, resp.status, resp.text)
    lab.assert_untouched("enforced")


# ------------------------------------------------------ 4. config errors and warnings


DUPLICATE = "dup-literal-token-" + new_secret()[:20]


def duplicate_value_config() -> str:
    return (
        "version: 1\nroutes:\n  - name: g\n    hosts: [g.example]\n    token:\n"
        f"      type: static\n      value: {DUPLICATE}-a\n      value: {DUPLICATE}-b\n"
    )


def test_config_errors_quote_no_value_at_start_and_in_check(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    returncode, output = gateway_factory.run_to_exit(duplicate_value_config())
    assert returncode != 0 and "a key appears twice in one mapping" in output
    assert DUPLICATE not in output
    config = tmp_path / "gateway.yaml"
    config.write_text(duplicate_value_config())
    done = subprocess.run(
        [sys.executable, "-m", "authgw.cli", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and DUPLICATE not in done.stdout + done.stderr
    assert "gateway.yaml:" in done.stderr


def test_proxy_debug_is_warned_about(lab: Lab, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(
        routes_config(lab.up),
        env={"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET},
        extra_args=["--set", "proxy_debug=true"],
    )
    assert "proxy_debug is on" in gateway.output


@pytest.mark.parametrize("strategy", ["lazy", "eager"])
def test_the_token_reaches_the_routed_host_with_either_connection_strategy(
    lab: Lab, gateway_factory: GatewayFactory, strategy: str
) -> None:
    gateway = gateway_factory(
        routes_config(lab.up),
        env={"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET},
        extra_args=["--set", f"connection_strategy={strategy}"],
    )
    url = f"https://localhost:{lab.up['tls'].port}/{strategy}"
    resp = proxy_request(gateway.port, "GET", url, ca_file=gateway.ca_cert_path)
    assert resp.status == 200
    assert bearer_token(lab.up["tls"].last.header("Authorization")) == STATIC
    assert lab.sni == ["localhost"]
    sock, head = tunnel(gateway.port, f"127.0.0.1:{lab.up['unrouted'].port}")
    sock.close()
    assert head.startswith(b"HTTP/1.1 403")


def test_a_request_map_remote_sends_elsewhere_after_the_token_is_chosen_is_421(
    lab: Lab, gateway_factory: GatewayFactory
) -> None:
    api, unrouted = lab.up["api"], lab.up["unrouted"]
    gateway = gateway_factory(
        routes_config(lab.up),
        env={"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET},
        extra_args=[
            "--map-remote",
            f"|//127.0.0.1:{api.port}/moved|//127.0.0.1:{unrouted.port}/moved",
        ],
    )
    assert "map_remote runs after authgw chooses a token" in gateway.output
    assert_421(proxy_request(gateway.port, "GET", f"{api.url}/moved"))
    lab.assert_untouched("api", "unrouted")
    assert proxy_request(gateway.port, "GET", f"{api.url}/stays").status == 200


LATE_MOVER = """\
def request(flow):
    if flow.request.path.startswith("/move"):
        flow.request.port = {port}
"""


def test_a_script_reloaded_after_authgw_that_moves_a_request_gets_421(
    lab: Lab, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    # mitmproxy reloads a changed script in a task of its own and tells no other addon:
    # a script after authgw that had no hook at start may re-target requests later.
    api, unrouted = lab.up["api"], lab.up["unrouted"]
    later = tmp_path / "later.py"
    later.write_text("# no hooks yet\n")
    gateway = gateway_factory(
        routes_config(lab.up),
        env={"ATTACK_STATIC": STATIC, "ATTACK_VERIFY": VERIFY_SECRET},
        extra_args=["-s", str(later)],
    )
    assert proxy_request(gateway.port, "GET", f"{api.url}/move").status == 200
    later.write_text(LATE_MOVER.format(port=unrouted.port))
    stat = later.stat()
    os.utime(later, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    deadline = time.monotonic() + 10
    while sum("Loading script" in line and "later.py" in line for line in gateway.lines) < 2:
        assert time.monotonic() < deadline, gateway.output
        time.sleep(0.05)
    assert_421(proxy_request(gateway.port, "GET", f"{api.url}/move"))
    lab.assert_untouched("unrouted")


def test_with_ssl_insecure_a_token_goes_only_where_the_route_allows_it(
    tls_upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """ssl_insecure: mitmproxy checks no upstream certificate, so a token would go to
    whoever answers. Only a route with allow_insecure_tls sends one (the start log names
    the others)."""
    port = tls_upstream.port
    config = (
        "version: 1\nroutes:\n"
        f'  - {{name: strict, hosts: ["localhost:{port}"], '
        "token: {type: static, value: {env: ATTACK_STATIC}}}\n"
        f'  - {{name: lax, hosts: ["127.0.0.1:{port}"], allow_insecure_tls: true, '
        "token: {type: static, value: {env: ATTACK_STATIC}}}\n"
    )
    gateway = gateway_factory(
        config, env={"ATTACK_STATIC": STATIC}, extra_args=["--set", "ssl_insecure=true"]
    )
    assert "route(s) strict send no token to https upstreams" in gateway.output
    ca = gateway.ca_cert_path
    refused = proxy_request(gateway.port, "GET", f"https://localhost:{port}/s", ca_file=ca)
    assert refused.status == 502 and refused.header("X-Authgw-Error") == "insecure_upstream"
    assert tls_upstream.requests == [] and STATIC not in refused.text
    sent = proxy_request(gateway.port, "GET", f"https://127.0.0.1:{port}/l", ca_file=ca)
    assert sent.status == 200
    assert bearer_token(tls_upstream.last.header("Authorization")) == STATIC


class TcpEcho(RawServer):
    """A plain TCP server on 127.0.0.1 that echoes every byte (no HTTP)."""

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass


def test_an_open_raw_relay_is_closed_when_a_reload_guards_its_host(
    gateway_factory: GatewayFactory,
) -> None:
    """A relay opened while its host was allowed (unmatched: passthrough) is closed once
    a reload puts the host under reject; a relay to a host the new config routes stays."""
    stays, goes = TcpEcho(), TcpEcho()
    static = {"type": "static", "value": {"env": "ATTACK_STATIC"}}

    def config(unmatched: str) -> str:
        route = {"name": "stays", "hosts": [f"127.0.0.1:{stays.port}"], "token": static}
        return json.dumps({"version": 1, "unmatched": unmatched, "routes": [route]})

    tcp_hosts = f"^127\\.0\\.0\\.1:({stays.port}|{goes.port})$"
    relays: dict[str, socket.socket] = {}
    try:
        gateway = gateway_factory(
            config("passthrough"),
            env={"ATTACK_STATIC": STATIC},
            extra_args=["--set", f"tcp_hosts={tcp_hosts}"],
        )
        for name, server in (("stays", stays), ("goes", goes)):
            sock, head = tunnel(gateway.port, f"127.0.0.1:{server.port}")
            assert b" 200 " in head.split(b"\r\n")[0]
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            relays[name] = sock
        assert gateway.config_path is not None
        replace_file(gateway.config_path, config("reject"))
        gateway.wait_for_output(r"closed an open raw TCP relay to 127\.0\.0\.1:\d+", timeout=10)
        assert closed_without_answer(relays["goes"])
        relays["stays"].sendall(b"pong")
        assert relays["stays"].recv(16) == b"pong"
        assert f"relay to 127.0.0.1:{stays.port}" not in gateway.output
    finally:
        for sock in relays.values():
            sock.close()
        stays.stop()
        goes.stop()


def test_in_upstream_mode_the_next_hop_is_held_to_the_plain_http_rule(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    """--mode upstream:http://PROXY: the proxy reads the token in clear, so it is the hop
    the loopback exception looks at. 0.0.0.0 is no loopback address, yet Linux connects
    to it locally: were the rule broken, the token would reach the recording proxy."""
    route = {
        "name": "local",
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "token": {"type": "static", "value": {"env": "ATTACK_STATIC"}},
    }
    config = json.dumps({"version": 1, "routes": [route]})
    with Upstream(http10=True) as proxy:  # answers the absolute-form requests a proxy gets
        near = gateway_factory(
            config,
            env={"ATTACK_STATIC": STATIC},
            extra_args=["--mode", f"upstream:http://127.0.0.1:{proxy.port}"],
        )
        assert proxy_request(near.port, "GET", f"{upstream.url}/near").status == 200
        assert fingerprint(bearer_token(proxy.last.header("Authorization"))) == fingerprint(STATIC)
        proxy.clear()
        far = gateway_factory(
            config,
            env={"ATTACK_STATIC": STATIC},
            extra_args=["--mode", f"upstream:http://0.0.0.0:{proxy.port}"],
        )
        refused = proxy_request(far.port, "GET", f"{upstream.url}/far")
        assert refused.status == 502 and refused.header("X-Authgw-Error") == "insecure_upstream"
        assert proxy.count == 0 and upstream.count == 0


LATER_ADDON = """
import logging

def request(flow):
    for name, value in flow.request.headers.fields:
        logging.warning("later addon: %s = %s | %s | %s", name, value, f"{value}", str(value))

def response(flow):
    logging.warning("later addon: response %s %s", flow.response.headers, flow.response.content)
"""


def test_an_addon_after_authgw_that_prints_headers_and_bodies_sees_no_token(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """Header values formatted every way (%s, f-string, str()) in a later script's request
    hook, and the echoing upstream's response in its response hook."""
    later = tmp_path / "later.py"
    later.write_text(LATER_ADDON)
    route = {
        "name": "api",
        "hosts": [f"127.0.0.1:{upstream.port}"],
        "token": {"type": "static", "value": {"env": "ATTACK_STATIC"}},
    }
    gateway = gateway_factory(
        json.dumps({"version": 1, "routes": [route]}),
        env={"ATTACK_STATIC": STATIC},
        extra_args=["-s", str(later)],
    )
    resp = proxy_request(gateway.port, "GET", f"{upstream.url}/echo")
    sent = bearer_token(upstream.last.header("Authorization"))
    assert resp.status == 200 and fingerprint(sent) == fingerprint(STATIC)
    gateway.wait_for_output("later addon: response")
    assert "later addon: b'Authorization'" in gateway.output  # it did print the header
    assert not leaks({"mitmdump output": gateway.output, "answer": resp.text}, [STATIC])
