"""sigv4 routes through the addon's hooks: signed after every other change, checked by the
emulator's verifier (botocore's signer, from what was sent)."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from authgw.addon import AuthGateway
from authgw.emulator.sigv4 import SigV4Credential, SigV4Verifier
from authgw.sources.sigv4 import canonical_query
from tests.fakes import hook

KEY, SECRET, TOKEN = "AKIDUNITTEST0000", "unit-test-aws-secret-key-0123456789", "session-tok-123"

pytestmark = pytest.mark.usefixtures("task_factory")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def config(tmp_path: Path, service: str = "execute-api", payload: str = "signed") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        version: 1
        routes:
          - name: aws
            hosts: [api.example]
            token: {{type: sigv4, service: {service}, region: eu-west-1, payload: {payload}}}
        """)
    )
    return path


Wire = list[tuple[str, str]]


def on_the_wire(f: http.HTTPFlow) -> Wire:
    """The request's headers as mitmproxy would send them (masked values' real bytes)."""
    return [(k.decode(), bytes(v).decode()) for k, v in f.request.headers.fields]


def values(wire: Wire, name: str) -> list[str]:
    return [v for k, v in wire if k.lower() == name.lower()]


def verify(f: http.HTTPFlow) -> tuple[bool, str, Wire]:
    verifier = SigV4Verifier([SigV4Credential(KEY, SECRET, TOKEN)])
    req, wire = f.request, on_the_wire(f)
    verdict = verifier.check(req.method, req.url, wire, req.raw_content or b"")
    return verdict.ok, f"{verdict.code}: {verdict.message}", wire


class _Later:
    """An addon after the gateway with a request hook: the last word is said after it."""

    def request(self, flow: http.HTTPFlow) -> None:
        pass


def run_flow(
    path: Path,
    f: http.HTTPFlow,
    change: Callable[[http.HTTPFlow], None] | None = None,
    after: Callable[[http.HTTPFlow], None] | None = None,
) -> tuple[bool, str, Wire]:
    """The hooks on ``f`` (``change``: another addon's, before the last word; ``after``:
    one that runs after it), and the verdict on the request as the wire would carry it."""
    verdict: tuple[bool, str, Wire] = (False, "not checked", [])

    async def main() -> None:
        nonlocal verdict
        addon = AuthGateway()
        with taddons.context(addon, _Later()) as tctx:  # ``change`` stands for _Later
            tctx.configure(addon, authgw_config=str(path))
            await hook(addon.requestheaders(f))
            await hook(addon.request(f))
            if change is not None:
                change(f)
            addon.last_word(f)
            if after is not None:
                after(f)
            verdict = verify(f)  # before done(), which leaves placeholders for good
            addon.done()

    asyncio.run(main())
    return verdict


def aws_flow(path: str = "/prod/items?b=2&a=1", body: bytes = b"") -> http.HTTPFlow:
    f = tflow.tflow(
        req=tutils.treq(
            host="api.example",
            port=443,
            scheme=b"https",
            path=path.encode(),
            method=b"POST",
            content=body,
        )
    )
    f.request.headers["Host"] = "api.example"
    f.request.headers["Authorization"] = "Bearer the-clients-own"
    f.request.headers["X-Amz-Date"] = "19990101T000000Z"
    return f


def test_a_request_is_signed_and_the_clients_aws_headers_are_dropped(
    aws_env: None, tmp_path: Path
) -> None:
    f = aws_flow(body=b'{"a": 1}')
    ok, why, wire = run_flow(config(tmp_path), f)
    assert f.response is None
    assert ok, why
    auth = values(wire, "Authorization")
    assert len(auth) == 1 and auth[0].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    assert "/eu-west-1/execute-api/aws4_request" in auth[0]
    assert values(wire, "X-Amz-Security-Token") == [TOKEN]
    assert len(values(wire, "X-Amz-Date")) == 1
    # what shows (mitmweb, -v, other addons) is a placeholder
    assert f.request.headers["Authorization"].startswith("<authgw redacted sha256:")
    assert f.request.headers["X-Amz-Security-Token"].startswith("<authgw redacted sha256:")
    assert f.request.path == "/prod/items?a=1&b=2"  # the canonical query is what is sent


def test_a_change_after_the_last_word_breaks_the_signature(aws_env: None, tmp_path: Path) -> None:
    def late(f: http.HTTPFlow) -> None:
        f.request.content = b'{"a": 2}'  # an addon that runs after the gateway signed

    ok, why, wire = run_flow(config(tmp_path), aws_flow(body=b'{"a": 1}'), after=late)
    assert not ok and why.startswith("XAmzContentSHA256Mismatch")


def test_a_change_before_the_last_word_is_signed(aws_env: None, tmp_path: Path) -> None:
    def tamper(f: http.HTTPFlow) -> None:
        f.request.content = b'{"a": 2}'
        f.request.headers["X-Added-Late"] = "yes"

    f = aws_flow(body=b'{"a": 1}')
    ok, why, wire = run_flow(config(tmp_path), f, tamper)
    assert ok, why
    assert "x-added-late" in values(wire, "Authorization")[0]


def test_s3_signs_the_payload_hash_header(aws_env: None, tmp_path: Path) -> None:
    f = aws_flow("/bucket/key%20name", body=b"object bytes")
    ok, why, wire = run_flow(config(tmp_path, service="s3"), f)
    assert ok, why
    sha = values(wire, "X-Amz-Content-SHA256")
    assert sha == [hashlib.sha256(b"object bytes").hexdigest()]


def test_unsigned_payload(aws_env: None, tmp_path: Path) -> None:
    f = aws_flow(body=b"x" * 10)
    ok, why, wire = run_flow(config(tmp_path, service="s3", payload="unsigned"), f)
    assert ok, why
    assert values(wire, "X-Amz-Content-SHA256") == ["UNSIGNED-PAYLOAD"]


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("b=2&a=1", "a=1&b=2"),
        ("q=a b", "q=a%20b"),
        ("q=a+b", "q=a%20b"),
        ("q=a%2Bb", "q=a%2Bb"),
        ("t=~x", "t=~x"),
        ("k=2&k=1&k=10", "k=1&k=10&k=2"),
        ("u=%C3%BC", "u=%C3%BC"),
        ("u=ü", "u=%C3%BC"),
        ("flag", "flag="),
        ("a=1&&b=", "a=1&b="),
        ("x=%2f", "x=%2F"),
    ],
)
def test_canonical_query(query: str, canonical: str) -> None:
    assert canonical_query(query) == canonical


def test_an_s3_path_is_sent_in_the_form_s3_signs(aws_env: None, tmp_path: Path) -> None:
    f = aws_flow("/bucket/a(b)!*'~+x%20y%2fz", body=b"")
    ok, why, wire = run_flow(config(tmp_path, service="s3"), f)
    assert ok, why
    assert f.request.path == "/bucket/a%28b%29%21%2A%27~%2Bx%20y%2Fz"


def test_repeated_cookies_are_joined_as_they_will_be_sent(aws_env: None, tmp_path: Path) -> None:
    f = aws_flow(body=b"")
    f.request.headers.add("Cookie", "a=1")
    f.request.headers.add("Cookie", "b=2")
    ok, why, wire = run_flow(config(tmp_path), f)
    assert ok, why
    assert values(wire, "cookie") == ["a=1; b=2"]


def test_an_aws_error_that_quotes_the_request_is_scrubbed(aws_env: None, tmp_path: Path) -> None:
    from botocore.credentials import ReadOnlyCredentials

    from authgw import scrub
    from authgw.config import Route
    from authgw.flowlog import FlowRecord
    from authgw.flowstate import FlowState

    f = aws_flow()
    body = f"<CanonicalRequest>x-amz-security-token:{TOKEN}</CanonicalRequest>"
    body += "<SignatureProvided>" + "ab" * 32 + "</SignatureProvided>"
    f.response = tutils.tresp(status_code=403, content=body.encode())
    state = FlowState(FlowRecord(), sigv4=ReadOnlyCredentials(KEY, SECRET, TOKEN))
    state.route, state.signature = Route("aws", ()), "ab" * 32
    scrub.on_response(f, state)
    text = f.response.get_text() or ""
    assert TOKEN not in text and "ab" * 32 not in text
    assert text.count("<authgw redacted sha256:") == 2
