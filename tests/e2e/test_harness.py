"""The e2e harness proven against mitmproxy itself, with a no-op stand-in addon.

These tests do not need the authgw addon to work; they pin down the harness and
the mitmproxy 11 behaviour the authgw e2e tests rely on.
"""

from __future__ import annotations

import ipaddress
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from scripts.gencerts import CertPaths, generate, main
from tests.e2e.clients import Response, direct_request, proxy_request, wait_until
from tests.e2e.harness import Gateway, GatewayError, GatewayFactory
from tests.e2e.upstreams import Upstream

CONFIG = "version: 1\nroutes: []\n"  # ignored by the stand-in addon


@pytest.fixture
def noop_script(tmp_path: Path) -> Path:
    script = tmp_path / "noop_addon.py"
    script.write_text(
        "class Noop:\n    def request(self, flow):\n        pass\n\naddons = [Noop()]\n"
    )
    return script


def test_tests_here_are_marked_e2e(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("e2e") is not None


def test_gencerts_writes_a_ca_and_a_server_cert_for_every_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = generate(tmp_path / "out", ["localhost", "127.0.0.1", "[::1]", "Api.Example.com"])
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())

    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "api.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    assert server.not_valid_before_utc < ca.not_valid_after_utc
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days <= 31
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600

    assert main(["--out", str(tmp_path / "cli"), "--host", "127.0.0.1"]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "cli" / "server-key.pem") in printed
    assert "PRIVATE KEY" not in printed


def test_upstream_echoes_records_and_can_be_programmed(upstream: Upstream) -> None:
    echo = direct_request(upstream.port, "POST", "/echo?x=1", {"X-Test": "one"}, b"payload")
    assert echo.status == 200
    assert echo.json()["path"] == "/echo?x=1"
    assert ["X-Test", "one"] in echo.json()["headers"]
    (recorded,) = upstream.requests
    assert (recorded.method, recorded.path, recorded.body) == ("POST", "/echo?x=1", b"payload")
    assert recorded.header("x-test") == "one"
    assert recorded.header("missing") is None

    upstream.respond(418, {"X-Kind": "teapot"}, b"short and stout", path="/tea")
    upstream.respond(503, body="everything else")
    tea = direct_request(upstream.port, "GET", "/tea?cup=1")
    other = direct_request(upstream.port, "GET", "/coffee")
    assert (tea.status, tea.header("x-kind"), tea.body) == (418, "teapot", b"short and stout")
    assert (other.status, other.text) == (503, "everything else")
    assert upstream.count == 3

    upstream.clear()
    assert upstream.count == 0
    upstream.reset()
    assert direct_request(upstream.port, "GET", "/").status == 200


def test_upstream_delay_answers_late_and_stop_interrupts_it() -> None:
    with Upstream() as slow:
        slow.delay(0.4)
        started = time.monotonic()
        assert direct_request(slow.port, "GET", "/slow").status == 200
        assert time.monotonic() - started >= 0.35

        slow.delay(30)
        outcome: list[BaseException | Response] = []

        def call() -> None:
            try:
                outcome.append(direct_request(slow.port, "GET", "/stuck", timeout=20))
            except Exception as e:
                outcome.append(e)

        client = threading.Thread(target=call)
        client.start()
        try:
            slow.wait_for_count(2)  # recorded before the delay starts
            started = time.monotonic()
            slow.stop()
            assert time.monotonic() - started < 5
        finally:
            client.join(25)
        assert len(outcome) == 1 and isinstance(outcome[0], Exception)


def test_plain_http_through_the_proxy_reaches_the_upstream(
    upstream: Upstream, gateway_factory: GatewayFactory, noop_script: Path
) -> None:
    gateway = gateway_factory(CONFIG, script=noop_script)

    response = proxy_request(
        gateway.port,
        "PUT",
        f"{upstream.url}/items/7?draft=1",
        {"X-Request-Id": "abc", "Content-Type": "text/plain"},
        b"hello upstream",
    )

    assert response.status == 200
    (recorded,) = upstream.requests
    assert recorded.method == "PUT"
    assert recorded.path == "/items/7?draft=1"  # mitmproxy forwards origin-form
    assert recorded.header("X-Request-Id") == "abc"
    assert recorded.header("Host") == f"127.0.0.1:{upstream.port}"
    assert recorded.body == b"hello upstream"
    host, port, line = gateway.listening_lines()[0]
    assert (host, port) == ("127.0.0.1", gateway.port)
    assert line.endswith(f"HTTP(S) proxy listening at 127.0.0.1:{gateway.port}.")
    assert gateway.ca_cert_path.is_file()

    gateway.stop()
    assert gateway.returncode is not None
    assert "listening at" in gateway.log_path.read_text()


def test_https_is_intercepted_and_the_upstream_verified(
    tls_upstream: Upstream,
    gateway_factory: GatewayFactory,
    noop_script: Path,
    certs: CertPaths,
) -> None:
    gateway = gateway_factory(CONFIG, script=noop_script)
    url = f"{tls_upstream.url}/secure?q=1"

    response = proxy_request(
        gateway.port, "GET", url, {"Authorization": "Bearer client"}, ca_file=gateway.ca_cert_path
    )

    assert response.status == 200
    (recorded,) = tls_upstream.requests
    assert recorded.path == "/secure?q=1"
    assert recorded.header("authorization") == "Bearer client"
    assert recorded.header("host") == f"127.0.0.1:{tls_upstream.port}"
    # The client saw mitmproxy's certificate, not the upstream's: interception happened.
    with pytest.raises(ssl.SSLCertVerificationError):
        proxy_request(gateway.port, "GET", url, ca_file=certs.ca_cert)
    assert tls_upstream.count == 1


@pytest.mark.parametrize(
    ("keep_host_header", "expected_host"),
    [(False, "upstream"), (True, "api.example.com")],
)
def test_reverse_mode_forwards_to_the_upstream(
    upstream: Upstream,
    gateway_factory: GatewayFactory,
    noop_script: Path,
    keep_host_header: bool,
    expected_host: str,
) -> None:
    extra = ["--mode", f"reverse:{upstream.url}"]
    if keep_host_header:
        extra += ["--set", "keep_host_header=true"]
    gateway = gateway_factory(CONFIG, script=noop_script, extra_args=extra)

    response = direct_request(
        gateway.port, "POST", "/rev?q=1", body=b"x", host_header="api.example.com"
    )

    assert response.status == 200
    recorded = upstream.last
    assert (recorded.path, recorded.body) == ("/rev?q=1", b"x")
    if expected_host == "upstream":
        # Without keep_host_header mitmproxy rewrites Host to the reverse target.
        expected_host = f"127.0.0.1:{upstream.port}"
    assert recorded.header("host") == expected_host
    assert f"reverse proxy to {upstream.url} listening at 127.0.0.1:{gateway.port}." in (
        gateway.output
    )


def test_an_invalid_option_value_makes_mitmdump_exit_non_zero(
    gateway_factory: GatewayFactory, noop_script: Path
) -> None:
    returncode, output = gateway_factory.run_to_exit(
        CONFIG, script=noop_script, extra_args=["--set", "listen_port=notaport"], timeout=15
    )
    assert returncode != 0
    # mitmproxy 11 says "Not an integer: notaport", 12 "...: not an integer: notaport".
    assert "not an integer: notaport" in output.lower()


def test_start_fails_with_the_output_when_an_addon_rejects_its_options(
    tmp_path: Path, gateway_factory: GatewayFactory
) -> None:
    # What an invalid authgw config looks like: OptionsError from configure().
    script = tmp_path / "rejecting_addon.py"
    script.write_text(
        "from mitmproxy import exceptions\n\n"
        "class Rejecting:\n"
        "    def configure(self, updated):\n"
        "        raise exceptions.OptionsError('routes[0].name: invalid')\n\n"
        "addons = [Rejecting()]\n"
    )

    with pytest.raises(GatewayError, match=r"(?s)exited during start-up.*routes\[0\]\.name"):
        gateway_factory(CONFIG, script=script, startup_timeout=15)
    returncode, output = gateway_factory.run_to_exit(CONFIG, script=script, timeout=15)

    assert returncode == 1
    assert "Error logged during startup, exiting..." in output
    # mitmdump logs "listening at" before it notices the error and exits.
    assert "listening at" in output


def test_gateway_context_manager_cleans_up(tmp_path: Path, noop_script: Path) -> None:
    with Gateway(None, tmp_path, script=noop_script) as gateway:
        assert gateway.port > 0
        match = gateway.wait_for_output(r"listening at .*:(\d+)\.")
        assert int(match.group(1)) == gateway.port
    assert gateway.returncode is not None
    wait_until(lambda: gateway.log_path.stat().st_size > 0, 1, message="log file")
