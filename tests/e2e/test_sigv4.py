"""sigv4 routes through a real mitmdump: each request is signed by the gateway, and the
upstream recomputes the signature with botocore from exactly what it received
(`authgw.emulator.sigv4.SigV4Verifier`, the emulator's own verifier).

One gateway serves most cases: a plain-http upstream (`execute-api`), an https one on
`localhost` (`execute-api`, for HTTP/2), and an s3 route. Session credentials come from
the gateway's environment (`AWS_SESSION_TOKEN`); one test runs a gateway with long-term
keys. The tamper tests load a script that changes request bodies after every other
addon, once after authgw (the signature breaks) and once before it (it holds).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import io

from authgw.emulator import StsEmulator
from authgw.emulator.sigv4 import SigV4Credential, SigV4Verdict, SigV4Verifier
from scripts.gencerts import CertPaths
from tests.e2e import clients, conftest
from tests.e2e.clients import proxy_request
from tests.e2e.harness import ADDON_SCRIPT, Gateway, GatewayFactory
from tests.e2e.helpers import leaks, new_secret, wait_for_records
from tests.e2e.upstreams import RecordedRequest, Upstream, server_tls_context

KEY = "AKIDE2E" + new_secret()[:13].upper()
SECRET = new_secret()
TOKEN = "e2e-session-" + new_secret()
REGION = "eu-central-1"
E2E = Path(__file__).resolve().parent


def aws_env(token: str | None = TOKEN) -> dict[str, str | None]:
    return {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": token,
        "AWS_REGION": REGION,
        "AWS_PROFILE": None,
        "AWS_CONFIG_FILE": "/nonexistent/authgw-e2e",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/authgw-e2e",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def verify(got: RecordedRequest, scheme: str, token: str | None = TOKEN) -> SigV4Verdict:
    """The upstream's check: botocore's signature over what it received."""
    verifier = SigV4Verifier([SigV4Credential(KEY, SECRET, token)])
    host = got.header("Host") or ""
    return verifier.check(got.method, f"{scheme}://{host}{got.path}", got.headers, got.body)


@dataclass(repr=False)
class Lab:
    factory: GatewayFactory
    gateway: Gateway
    plain: Upstream
    tls: Upstream
    s3: Upstream
    flowlog: Path
    saved: Path  # -w
    signatures: list[str] = field(default_factory=list)

    def curl(self, *args: str) -> tuple[int, str, str]:
        """curl through the gateway, trusting its CA: (status, HTTP version, body)."""
        return clients.curl(self.gateway.port, self.gateway.ca_cert_path, *args)


def config(routes: list[dict[str, Any]], flowlog: Path | None = None) -> str:
    top: dict[str, Any] = {"version": 1, "routes": routes}
    if flowlog is not None:
        top["flowlog"] = str(flowlog)
    return json.dumps(top)


def sigv4_route(name: str, host: str, service: str = "execute-api", **token: Any) -> dict[str, Any]:
    return {
        "name": name,
        "hosts": [host],
        "token": {"type": "sigv4", "service": service, **token},
    }


@pytest.fixture(scope="module")
def lab_gateway(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("sigv4")
    factory = GatewayFactory(tmp, upstream_ca=certs.ca_cert)
    flowlog = tmp / "flows.jsonl"
    saved = tmp / "flows.mitm"
    with (
        Upstream() as plain,
        Upstream(tls=server_tls_context(certs)) as tls,
        Upstream() as s3,
    ):
        for upstream in (plain, tls, s3):
            upstream.respond(200, {"Content-Type": "text/plain"}, "ok\n")
        routes = [
            sigv4_route("api", f"127.0.0.1:{plain.port}"),
            sigv4_route("api_tls", f"localhost:{tls.port}"),
            sigv4_route("bucket", f"127.0.0.1:{s3.port}", service="s3"),
        ]
        try:
            # lazy: mitmproxy offers HTTP/2 to the client before it meets the HTTP/1.1
            # upstream (eager mirrors the upstream's ALPN: HTTP/1.1 on both sides).
            gateway = factory.start(
                config(routes, flowlog),
                env=aws_env(),
                extra_args=["--set", "connection_strategy=lazy", "-w", str(saved)],
            )
            lab = Lab(factory, gateway, plain, tls, s3, flowlog, saved)
            yield lab
            factory.stop_all()
            texts = {"mitmdump output": gateway.output, "flow log": flowlog.read_text()}
            assert not leaks(texts, [SECRET, TOKEN, *lab.signatures])
            assert_saved_flows_hold_no_credential(lab)
        finally:
            factory.stop_all()


@pytest.fixture
def lab(lab_gateway: Lab, request: pytest.FixtureRequest) -> Lab:
    conftest.report_output(request, lab_gateway.factory)
    for upstream in (lab_gateway.plain, lab_gateway.tls, lab_gateway.s3):
        upstream.clear()
    return lab_gateway


def test_a_query_that_needs_canonical_encoding_verifies(lab: Lab) -> None:
    query = "q=a b&plus=1+2&lit=%2B&t=~tilde&k=2&k=1&u=%C3%BCber&flag"
    url = f"http://127.0.0.1:{lab.plain.port}/prod/items?{query.replace(' ', '%20')}"
    resp = proxy_request(lab.gateway.port, "GET", url, {"Authorization": "Bearer client"})
    assert resp.status == 200
    got = lab.plain.last
    verdict = verify(got, "http")
    assert verdict.ok, verdict
    assert got.path == ("/prod/items?flag=&k=1&k=2&lit=%2B&plus=1%202&q=a%20b&t=~tilde&u=%C3%BCber")
    assert (got.header("Authorization") or "").startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    assert f"/{REGION}/execute-api/aws4_request" in (got.header("Authorization") or "")


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", json.dumps({"order": 1, "items": ["ü", "x"]}).encode()),
        ("POST", b""),
        ("GET", b""),
        ("PUT", bytes(range(256)) * 4096),  # 1 MiB
    ],
    ids=["json", "empty-post", "empty-get", "1mb"],
)
def test_bodies_verify(lab: Lab, method: str, body: bytes) -> None:
    url = f"http://127.0.0.1:{lab.plain.port}/prod/body"
    headers = {"Content-Type": "application/json"} if body else {}
    resp = proxy_request(lab.gateway.port, method, url, headers, body or None, timeout=30)
    assert resp.status == 200
    got = lab.plain.last
    assert got.body == body
    verdict = verify(got, "http")
    assert verdict.ok, verdict
    assert got.header("X-Amz-Content-Sha256") == hashlib.sha256(body).hexdigest()
    assert "x-amz-content-sha256" in verdict.signed_headers


def test_session_credentials_send_a_signed_security_token(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.plain.port}/prod/session"
    headers = {"X-Amz-Security-Token": "forged", "X-Amz-Date": "20000101T000000Z"}
    assert proxy_request(lab.gateway.port, "GET", url, headers).status == 200
    got = lab.plain.last
    assert got.header_values("X-Amz-Security-Token") == [TOKEN]
    assert len(got.header_values("X-Amz-Date")) == 1
    verdict = verify(got, "http")
    assert verdict.ok, verdict
    assert "x-amz-security-token" in verdict.signed_headers
    [record] = wait_for_records(lab.flowlog, "/prod/session", 1)
    assert record["token_source"] == "sigv4" and record["kid"].startswith("sha256:")
    assert record["kid"] != KEY and set(record["headers_removed"]) >= {
        "X-Amz-Date",
        "X-Amz-Security-Token",
    }


def test_s3_signs_the_content_sha256_and_the_path_as_sent(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.s3.port}/my-bucket/photos/a%20b~c.jpg"
    resp = proxy_request(lab.gateway.port, "PUT", url, {}, b"jpeg bytes")
    assert resp.status == 200
    got = lab.s3.last
    assert got.header("X-Amz-Content-Sha256") == hashlib.sha256(b"jpeg bytes").hexdigest()
    verdict = verify(got, "http")
    assert verdict.ok, verdict
    assert verdict.service == "s3"


def test_http2_through_tls_verifies(lab: Lab) -> None:
    url = f"https://localhost:{lab.tls.port}/prod/h2?b=2&a=1"
    status, version, _ = lab.curl("--http2", "-X", "POST", "--data-binary", '{"h2": 1}', url)
    assert (status, version) == (200, "2")
    got = lab.tls.last
    verdict = verify(got, "https")
    assert verdict.ok, verdict
    assert got.path == "/prod/h2?a=1&b=2"


def test_a_body_changed_after_signing_is_refused_by_the_verifier(lab: Lab) -> None:
    # A check of the check: the recorded request, changed, no longer verifies.
    url = f"http://127.0.0.1:{lab.plain.port}/prod/tamper-check"
    assert proxy_request(lab.gateway.port, "POST", url, {}, b"original").status == 200
    got = lab.plain.last
    changed = RecordedRequest(got.method, got.path, got.headers, b"changed", got.client_port)
    assert verify(got, "http").ok
    assert verify(changed, "http").code == "XAmzContentSHA256Mismatch"


TAMPER = textwrap.dedent('''\
    """A test addon that changes request bodies after every addon already loaded: it adds
    itself to the end of mitmproxy's chain when its script loads, as authgw does."""
    from mitmproxy import ctx


    class LateTamper:
        name = "e2e_late_tamper"

        def request(self, flow):
            if flow.request.headers.get("X-Tamper") == "yes":
                flow.request.content = b"tampered"


    class Loader:
        def load(self, loader):
            ctx.master.addons.add(LateTamper())


    addons = [Loader()]
    ''')


@pytest.fixture
def emulator() -> Iterator[StsEmulator]:
    with StsEmulator(sigv4_credentials=[SigV4Credential(KEY, SECRET, TOKEN)]) as sts:
        yield sts


@pytest.mark.parametrize("order", ["tamper-after-authgw", "tamper-before-authgw"])
def test_a_late_change_is_signed_in_either_load_order(
    gateway_factory: GatewayFactory, tmp_path: Path, emulator: StsEmulator, order: str
) -> None:
    # authgw arranges its last word once mitmproxy runs, when every script has loaded:
    # an addon that puts itself at the end of the chain is signed in either order.
    tamper = tmp_path / "late_tamper.py"
    tamper.write_text(TAMPER)
    host = emulator.url.removeprefix("http://")
    cfg = config([sigv4_route("echo", host)])
    if order == "tamper-after-authgw":
        gateway = gateway_factory(cfg, env=aws_env(), extra_args=["-s", str(tamper)])
    else:
        gateway = gateway_factory(
            cfg, env=aws_env(), script=tamper, extra_args=["-s", str(ADDON_SCRIPT)]
        )
    url = f"{emulator.sigv4_url}/orders"
    resp = proxy_request(gateway.port, "POST", url, {"X-Tamper": "yes"}, b"original")
    assert resp.status == 200, resp.text
    echoed = resp.json()
    assert echoed["verified"] is True
    assert echoed["body_sha256"] == hashlib.sha256(b"tampered").hexdigest()


def test_long_term_keys_send_no_security_token(
    gateway_factory: GatewayFactory, emulator: StsEmulator
) -> None:
    emulator.sigv4.add(SigV4Credential(KEY, SECRET, None))
    host = emulator.url.removeprefix("http://")
    gateway = gateway_factory(config([sigv4_route("echo", host)]), env=aws_env(token=None))
    resp = proxy_request(gateway.port, "GET", f"{emulator.sigv4_url}/whoami?x=1")
    assert resp.status == 200, resp.text
    assert "x-amz-security-token" not in resp.json()["signed_headers"]


def test_flows_show_placeholders_not_the_signature(lab: Lab) -> None:
    url = f"http://127.0.0.1:{lab.plain.port}/prod/shown"
    assert proxy_request(lab.gateway.port, "GET", url).status == 200
    got = lab.plain.last
    signature = (got.header("Authorization") or "").rpartition("Signature=")[2]
    assert len(signature) == 64
    lab.signatures.append(signature)  # the -w file is checked when the gateway stops
    assert signature not in lab.gateway.output and TOKEN not in lab.gateway.output


def assert_saved_flows_hold_no_credential(lab: Lab) -> None:
    """Every flow mitmdump saved (-w): placeholders where the signature and token were."""
    with open(lab.saved, "rb") as f:
        requests = [fl.request for fl in io.FlowReader(f).stream()]
    assert requests
    needles = [TOKEN.encode(), *(s.encode() for s in lab.signatures)]
    for request in requests:
        raw = b"\n".join(k + b": " + v for k, v in request.headers.fields)
        assert not [n for n in needles if n in raw], request.path
        assert request.headers.get("Authorization", "<authgw").startswith("<authgw redacted")


def test_a_streamed_body_is_signed_unsigned_or_refused(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    flowlog = tmp_path / "streamed.jsonl"
    with Upstream() as unsigned, Upstream() as signed:
        for upstream in (unsigned, signed):
            upstream.respond(200, {"Content-Type": "text/plain"}, "ok\n")
        routes = [
            sigv4_route("streamed", f"127.0.0.1:{unsigned.port}", service="s3", payload="unsigned"),
            sigv4_route("hashed", f"127.0.0.1:{signed.port}"),
        ]
        gateway = gateway_factory(
            config(routes, flowlog),
            env=aws_env(),
            extra_args=["--set", "stream_large_bodies=1k"],
        )
        body = b"s" * 100_000
        url = f"http://127.0.0.1:{unsigned.port}/upload"
        assert proxy_request(gateway.port, "PUT", url, {}, body).status == 200
        got = unsigned.last
        assert got.body == body and got.header("X-Amz-Content-Sha256") == "UNSIGNED-PAYLOAD"
        verdict = verify(got, "http")
        assert verdict.ok, verdict
        try:
            resp = proxy_request(
                gateway.port, "PUT", f"http://127.0.0.1:{signed.port}/upload", {}, body
            )
            answered: int | None = resp.status
        except (ConnectionError, OSError, http.client.HTTPException):
            answered = None  # mitmproxy cannot answer a request whose body it streams
        assert answered in (None, 502)
        assert signed.count == 0  # nothing unsigned reached the upstream
        records = wait_for_records(flowlog, "/upload", 2)
        assert {r["route"]: r["error_class"] for r in records} == {
            "streamed": None,
            "hashed": "unsignable_body",
        }


def test_an_error_that_quotes_the_session_token_reaches_the_client_scrubbed(lab: Lab) -> None:
    quoted = f"<Error><CanonicalRequest>x-amz-security-token:{TOKEN}</CanonicalRequest></Error>"
    lab.plain.respond(403, {"Content-Type": "application/xml"}, quoted, path="/prod/denied")
    url = f"http://127.0.0.1:{lab.plain.port}/prod/denied"
    resp = proxy_request(lab.gateway.port, "GET", url)
    assert resp.status == 403
    assert TOKEN not in resp.text and "<authgw redacted sha256:" in resp.text


def test_http2_cookie_fields_are_signed_as_they_are_sent(lab: Lab) -> None:
    url = f"https://localhost:{lab.tls.port}/prod/cookies"
    status, version, _ = lab.curl("--http2", "-H", "Cookie: a=1", "-H", "Cookie: b=2", url)
    assert (status, version) == (200, "2")
    got = lab.tls.last
    assert got.header_values("Cookie") == ["a=1; b=2"]
    verdict = verify(got, "https")
    assert verdict.ok, verdict
