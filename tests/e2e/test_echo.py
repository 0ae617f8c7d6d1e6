"""An upstream that echoes what it got: nothing the gateway added comes back.

One mitmdump (flow_detail=3, `-w`, stream_large_bodies=16k) in front of echoing
upstreams on loopback: an hmac route (a JWT: every character stands for itself), a
static route whose token holds ``/``, ``+`` and ``=`` (the characters an echo escapes),
an https static route reached with curl over HTTP/2, and a route with
``scrub_responses: false``. Each upstream answers with the Authorization it got, in the
shapes echoes use: JSON (also with ``\\/``), gzip, percent-encoded, a response header, a
401 challenge quoting it, a chunked body mitmproxy starts streaming late, a sized body
it streams from the start, and a streamed gzip body. The client, the `-w` file and
mitmdump's output must hold none of the tokens.
"""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from mitmproxy import io

from scripts.gencerts import CertPaths
from tests.e2e import clients, conftest
from tests.e2e.clients import proxy_request
from tests.e2e.harness import Gateway, GatewayFactory
from tests.e2e.helpers import bearer_token, fingerprint
from tests.e2e.upstreams import RecordedRequest, Reply, Upstream, server_tls_context

STATIC = "st/At+ic=" + secrets.token_urlsafe(24)
RAW = "raw-" + secrets.token_urlsafe(24)
HMAC_SECRET = secrets.token_hex(32)
FILLER = b"." * 999 + b"\n"


def sent(req: RecordedRequest) -> str:
    return bearer_token(req.header("Authorization"))


def echo_json(req: RecordedRequest) -> bytes:
    return json.dumps({"headers": dict(req.headers)}).encode()


SHAPES = {
    "/json": lambda r: Reply(body=echo_json(r)),
    "/json-slash": lambda r: Reply(body=echo_json(r).replace(b"/", b"\\/")),
    "/gzip": lambda r: Reply(
        headers={"Content-Encoding": "gzip"}, body=gzip.compress(echo_json(r))
    ),
    "/percent": lambda r: Reply(body=b"auth=" + quote(sent(r), safe="").encode()),
    "/header": lambda r: Reply(headers={"X-Echo": f"Bearer {sent(r)}"}, body=b"ok"),
    "/challenge": lambda r: Reply(
        401,
        {"WWW-Authenticate": f'Bearer error="invalid_token", token="{sent(r)}"'},
        b"no",
    ),
    # chunked: mitmproxy buffers it, then streams once it has more than 16k
    "/late-stream": lambda r: Reply(chunks=[FILLER] * 40 + [sent(r).encode()] + [FILLER] * 40),
    # sized above 16k: streamed from its first byte
    "/stream": lambda r: Reply(body=FILLER * 20 + sent(r).encode() + FILLER * 20),
    "/stream-gzip": lambda r: Reply(
        headers={"Content-Encoding": "gzip"},
        chunks=[gzip.compress(FILLER * 40 + sent(r).encode() + FILLER * 40)],
    ),
}


@dataclass
class Echo:
    factory: GatewayFactory
    gateway: Gateway
    up: dict[str, Upstream]
    saved: Path

    def get(self, route: str, path: str) -> tuple[int, dict[str, str], bytes, str]:
        """GET `path` on the route's upstream: (status, headers, body, the token it got)."""
        up = self.up[route]
        up.clear()
        resp = proxy_request(
            self.gateway.port, "GET", f"{up.url}{path}", ca_file=self.gateway.ca_cert_path
        )
        return resp.status, {k.lower(): v for k, v in resp.headers}, resp.body, sent(up.last)


def config(up: dict[str, Upstream]) -> str:
    static = {"type": "static", "value": {"env": "ECHO_STATIC"}}
    hmac = {"type": "hmac", "secret": {"env": "ECHO_HMAC"}, "claims": {"sub": "echo"}}
    raw = {"type": "static", "value": {"env": "ECHO_RAW"}}
    routes = [
        {"name": "signed", "hosts": [f"127.0.0.1:{up['signed'].port}"], "token": hmac},
        {"name": "static", "hosts": [f"127.0.0.2:{up['static'].port}"], "token": static},
        {"name": "tls", "hosts": [f"localhost:{up['tls'].port}"], "token": static},
        {
            "name": "raw",
            "hosts": [f"127.0.0.3:{up['raw'].port}"],
            "token": raw,
            "scrub_responses": False,
        },
    ]
    return json.dumps({"version": 1, "routes": routes})


@pytest.fixture(scope="module")
def echo_(tmp_path_factory: pytest.TempPathFactory, certs: CertPaths) -> Iterator[Echo]:
    up = {
        "signed": Upstream(),
        "static": Upstream(host="127.0.0.2"),
        "tls": Upstream(tls=server_tls_context(certs)),
        "raw": Upstream(host="127.0.0.3"),
    }
    for server in up.values():
        server.start()
        for path, make in SHAPES.items():
            server.respond_from(path, make)
    tmp = tmp_path_factory.mktemp("echo")
    factory = GatewayFactory(tmp, upstream_ca=certs.ca_cert)
    saved = tmp / "flows.mitm"
    try:
        env = {"ECHO_STATIC": STATIC, "ECHO_HMAC": HMAC_SECRET, "ECHO_RAW": RAW}
        args = ["--set", "flow_detail=3", "--set", "stream_large_bodies=16k", "-w", str(saved)]
        args += ["--set", "connection_strategy=lazy"]  # the client may speak HTTP/2
        yield Echo(factory, factory.start(config(up), env=env, extra_args=args), up, saved)
    finally:
        factory.stop_all()
        for server in up.values():
            server.stop()


@pytest.fixture
def echo(echo_: Echo, request: pytest.FixtureRequest) -> Echo:
    conftest.report_output(request, echo_.factory)
    return echo_


def shown(token: str) -> bytes:
    return f"<authgw redacted {fingerprint(token)}>".encode()


def check(text: bytes | str, *, absent: tuple[str, ...], shown_for: str | None = None) -> None:
    """Fail (naming fingerprints, never a value) if ``text`` holds a token in ``absent``
    or, given ``shown_for``, lacks that token's redaction."""
    data = text.encode() if isinstance(text, str) else text
    found = [fingerprint(t) for t in absent if t.encode() in data]
    if found:
        pytest.fail(f"token(s) {found} came back")
    if shown_for is not None and shown(shown_for) not in data:
        pytest.fail(f"no redaction of {fingerprint(shown_for)} where the echo had it")


@pytest.mark.parametrize("route", ["signed", "static"])
@pytest.mark.parametrize("path", ["/json", "/json-slash", "/gzip", "/percent"])
def test_an_echoed_token_reaches_the_client_as_its_redaction(
    echo: Echo, route: str, path: str
) -> None:
    status, headers, body, token = echo.get(route, path)
    assert status == 200 and token != ""  # the upstream got the token ...
    if headers.get("content-encoding") == "gzip":  # encoded again after it was scrubbed
        body = gzip.decompress(body)
    # ... and the client its redaction, where the echo had it
    check(body, absent=(token, quote(token, safe="")), shown_for=token)
    if path != "/percent":
        json.loads(body)  # still the upstream's JSON


@pytest.mark.parametrize("route", ["signed", "static"])
def test_an_echo_in_a_header_or_a_challenge_is_scrubbed(echo: Echo, route: str) -> None:
    status, headers, _, token = echo.get(route, "/header")
    assert status == 200
    check(headers["x-echo"], absent=(token,), shown_for=token)
    status, headers, _, token = echo.get(route, "/challenge")
    assert status == 401
    check(headers["www-authenticate"], absent=(token,), shown_for=token)
    line = echo.gateway.wait_for_output(rf"route {route}: upstream answered 401.*")
    check(line.group(), absent=(token,), shown_for=token)


@pytest.mark.parametrize("path", ["/late-stream", "/stream", "/stream-gzip"])
def test_a_streamed_echo_is_scrubbed_chunk_by_chunk(echo: Echo, path: str) -> None:
    status, headers, body, token = echo.get("static", path)
    assert status == 200
    check(body, absent=(token,))
    assert body.startswith(FILLER) and body.endswith(FILLER) and b"<authgw redacted" in body
    fillers = {"/late-stream": 80, "/stream": 40, "/stream-gzip": 80}[path]
    assert len(body) == fillers * len(FILLER) + len(token)  # fitted to what it replaced
    assert "content-encoding" not in headers


def test_over_http2_the_echo_is_scrubbed(echo: Echo) -> None:
    up = echo.up["tls"]
    for path in ("/json", "/gzip", "/late-stream"):
        status, version, body = clients.curl(
            echo.gateway.port,
            echo.gateway.ca_cert_path,
            "--http2",
            "--compressed",
            f"https://localhost:{up.port}{path}",
        )
        assert (status, version) == (200, "2")
        check(body, absent=(STATIC,))
        assert fingerprint(STATIC) in body


def test_a_route_with_scrub_responses_false_gets_the_echo_as_is(echo: Echo) -> None:
    status, _, body, token = echo.get("raw", "/json")
    assert status == 200 and token == RAW and RAW.encode() in body
    echo.get("raw", "/challenge")  # the diagnostic line quotes it redacted all the same
    line = echo.gateway.wait_for_output(r"route raw: upstream answered 401.*")
    check(line.group(), absent=(RAW,), shown_for=RAW)


def test_the_saved_flows_and_mitmdumps_output_hold_no_token(echo: Echo) -> None:
    for route in ("signed", "static"):
        for path in SHAPES:
            echo.get(route, path)
    echo.gateway.stop()  # -w writes what is left at shutdown
    tokens = {STATIC, *(sent(r) for r in echo.up["signed"].requests)}
    assert len(tokens) >= 2
    with echo.saved.open("rb") as f:
        flows = list(io.FlowReader(f).stream())
    assert len(flows) >= 2 * len(SHAPES)
    raw = echo.saved.read_bytes()
    for flow in flows:
        resp = flow.response  # type: ignore[attr-defined]
        texts = [raw, repr(flow.get_state()).encode()]
        if resp is not None and resp.raw_content:
            texts.append(resp.get_content(strict=False) or b"")
        for text in texts:
            check(text, absent=tuple(tokens))
    check(echo.gateway.output, absent=tuple(tokens))
