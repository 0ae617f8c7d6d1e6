"""Response scrubbing (authgw.scrub) on real mitmproxy responses: every form an echo writes
a credential in, every Content-Encoding mitmproxy decodes, streamed bodies cut anywhere."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from urllib.parse import quote

import pytest
from mitmproxy.http import Headers
from mitmproxy.net import encoding
from mitmproxy.test import tflow, tutils

from authgw import scrub
from authgw.config import Route
from authgw.flowlog import FlowRecord
from authgw.flowstate import FlowState
from authgw.tokens import Token

JWT = Token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVlLTAxMjM0NTY3", "hmac")
# A static token or an AWS session token: base64, with the characters escapes change.
ODD = Token("FwoGZXIvYXdzE+bGl/ZSB0b2tlbi1/c2Vzc2lvbg==", "static")
SHOWN = f"<authgw redacted {ODD.fingerprint}>".encode()
ROUTE = Route("api", ())


def state_for(token: Token, route: Route = ROUTE) -> FlowState:
    return FlowState(FlowRecord(route=route.name), route=route, token=token)


def flow_with(body: bytes, headers: dict[str, str] | None = None, **kw: object) -> object:
    resp = tutils.tresp(content=b"", **kw)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    resp.content = body
    return tflow.tflow(resp=resp)


@pytest.mark.parametrize(
    "form",
    [
        ODD.value,
        json.dumps(ODD.value)[1:-1].replace("/", "\\/"),  # PHP's json_encode, Java's
        quote(ODD.value, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(ODD.value, safe="")),
        quote(ODD.value, safe="/"),
        "".join(f"\\u{ord(c):04X}" if not c.isalnum() else c for c in ODD.value),
        ODD.value[:10] + quote(ODD.value[10:20], safe="") + ODD.value[20:],  # mixed
    ],
    ids=["raw", "json", "percent", "percent-lower", "percent-keep-slash", "u-escape", "mixed"],
)
def test_every_form_of_the_credential_is_replaced(form: str) -> None:
    body = b'{"headers": {"Authorization": "Bearer ' + form.encode() + b'"}}'
    assert scrub.text(body, [scrub.secret(ODD.value)]) == (
        b'{"headers": {"Authorization": "Bearer ' + SHOWN + b'"}}'
    )


def test_a_token_outside_the_ascii_range_is_found_in_its_escapes() -> None:
    value = "tok-\u00e9t\u00e9-\U0001f511-0123456789"
    forms = [value, json.dumps(value)[1:-1], quote(value, safe="")]
    secret = scrub.secret(value)
    for form in forms:
        assert scrub.text(form.encode(), [secret]) == secret.replacement, form


def test_a_jwt_needs_no_pattern_and_a_body_without_it_is_the_same_object() -> None:
    secret = scrub.secret(JWT.value)
    assert secret.plain and secret.anchor == JWT.value.encode()
    body = b"x" * 10_000
    assert scrub.text(body, [secret]) is body
    assert not scrub.secret(ODD.value).plain


def test_a_response_is_scrubbed_in_headers_trailers_and_body() -> None:
    f = flow_with(
        b"you sent " + ODD.value.encode(), {"WWW-Authenticate": f'Bearer x="{ODD.value}"'}
    )
    f.response.trailers = Headers(x_echo=ODD.value)  # type: ignore[attr-defined]
    scrub.on_response(f, state_for(ODD))  # type: ignore[arg-type]
    resp = f.response  # type: ignore[attr-defined]
    assert resp.content == b"you sent " + SHOWN
    assert resp.headers["content-length"] == str(len(resp.content))
    assert resp.headers["WWW-Authenticate"] == f'Bearer x="{SHOWN.decode()}"'
    assert resp.trailers["x-echo"] == SHOWN.decode()


@pytest.mark.parametrize("ce", ["gzip", "deflate", "br", "zstd"])
def test_an_encoded_body_is_decoded_scrubbed_and_encoded_again(ce: str) -> None:
    f = flow_with(b"echo: Bearer " + JWT.value.encode(), {"Content-Encoding": ce})
    scrub.on_response(f, state_for(JWT))  # type: ignore[arg-type]
    resp = f.response  # type: ignore[attr-defined]
    assert resp.headers["content-encoding"] == ce
    assert (
        encoding.decode(resp.raw_content, ce)
        == b"echo: Bearer " + scrub.secret(JWT.value).replacement
    )


def test_a_body_that_cannot_be_decoded_is_withheld_with_a_502() -> None:
    f = flow_with(b"")
    f.response.headers["Content-Encoding"] = "x-secret-sauce"  # type: ignore[attr-defined]
    f.response.raw_content = b"Bearer " + JWT.value.encode()  # type: ignore[attr-defined]
    state = state_for(JWT)
    scrub.on_response(f, state)  # type: ignore[arg-type]
    resp = f.response  # type: ignore[attr-defined]
    assert resp.status_code == 502 and resp.headers["X-Authgw-Error"] == "unscrubbable_response"
    assert JWT.value.encode() not in resp.raw_content
    assert state.record.error_class == "unscrubbable_response"


def test_a_response_without_the_credential_is_left_as_it_came() -> None:
    f = flow_with(b"{}" * 1000, {"Content-Encoding": "gzip", "Content-Length": "1"})
    before = f.response.raw_content  # type: ignore[attr-defined]
    headers_before = f.response.headers.fields  # type: ignore[attr-defined]
    scrub.on_response(f, state_for(JWT))  # type: ignore[arg-type]
    assert f.response.raw_content is before  # type: ignore[attr-defined]
    assert f.response.headers.fields is headers_before  # type: ignore[attr-defined]


def test_a_route_with_scrub_responses_false_is_left_alone() -> None:
    route = Route("api", (), scrub_responses=False)
    f = flow_with(JWT.value.encode())
    scrub.on_response(f, state_for(JWT, route))  # type: ignore[arg-type]
    assert f.response.content == JWT.value.encode()  # type: ignore[attr-defined]


def test_a_sigv4_flow_scrubs_its_session_token_and_signature() -> None:
    from botocore.credentials import ReadOnlyCredentials

    state = FlowState(FlowRecord(), route=ROUTE, sigv4=ReadOnlyCredentials("AKID", "s", ODD.value))
    state.signature = "ab" * 32
    assert [s.value for s in scrub.secrets_of(state)] == [ODD.value.encode(), b"ab" * 32]
    assert scrub.secrets_of(FlowState(FlowRecord(), route=ROUTE)) == ()


def run_stream(stream: scrub.Stream, data: bytes, cuts: list[int]) -> bytes:
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        got = stream(data[a:b])
        assert b"" not in got  # an empty chunk would end a chunked body early
        out += got
    out += stream(b"")
    return b"".join(out)


@pytest.mark.parametrize("token", [JWT, ODD], ids=["plain", "escaped"])
def test_a_streamed_body_is_scrubbed_however_it_is_cut(token: Token) -> None:
    form = token.value if token is JWT else quote(token.value, safe="")
    data = b"a" * 50 + form.encode() + b"b" * 20 + token.value.encode() + b"c" * 5
    secrets = [scrub.secret(token.value)]
    for cut in range(len(data) + 1):
        out = run_stream(scrub.Stream(secrets, None, None), data, [cut])
        assert token.value.encode() not in out and b"%2F" not in out, cut
        assert len(out) == len(data), cut  # fitted: the length went out with the headers
        assert out.startswith(b"a" * 50 + b"<authgw redacted") and out.endswith(b"c" * 5)
    byte_by_byte = run_stream(scrub.Stream(secrets, None, None), data, list(range(1, len(data))))
    assert byte_by_byte == run_stream(scrub.Stream(secrets, None, None), data, [])


def test_a_streamed_gzip_body_is_sent_decoded_and_scrubbed() -> None:
    body = b"x" * 5000 + b"Bearer " + JWT.value.encode() + b"y" * 5000
    f = flow_with(b"", {"Content-Encoding": "gzip"})
    resp = f.response  # type: ignore[attr-defined]
    resp.headers["Content-Length"] = "123"
    resp.stream = True
    assert scrub.stream(resp, [scrub.secret(JWT.value)])
    assert "content-encoding" not in resp.headers and "content-length" not in resp.headers
    assert resp.headers["transfer-encoding"] == "chunked"
    packed = gzip.compress(body)
    out = run_stream(resp.stream, packed, list(range(7, len(packed), 7)))
    assert JWT.value.encode() not in out and out.startswith(b"x" * 5000)
    assert out.endswith(b"y" * 5000) and len(out) == len(body)


def test_a_raw_deflate_stream_is_read_as_mitmproxy_reads_it() -> None:
    packer = zlib.compressobj(wbits=-15)
    packed = packer.compress(JWT.value.encode()) + packer.flush()
    f = flow_with(b"", {"Content-Encoding": "deflate"})
    f.response.stream = True  # type: ignore[attr-defined]
    assert scrub.stream(f.response, [scrub.secret(JWT.value)])  # type: ignore[attr-defined]
    out = run_stream(f.response.stream, packed, [3])  # type: ignore[attr-defined]
    assert out.startswith(b"<authgw redacted") and len(out) == len(JWT.value)


def test_a_stream_an_addon_set_is_wrapped_and_its_output_scrubbed() -> None:
    f = flow_with(b"")
    f.response.stream = lambda chunk: [chunk.upper(), chunk]  # type: ignore[attr-defined]
    token = Token("Lower-case-token-0123456789", "static")
    scrub.stream(f.response, [scrub.secret(token.value)])  # type: ignore[attr-defined]
    out = run_stream(f.response.stream, token.value.encode(), [])  # type: ignore[attr-defined]
    assert out.startswith(token.value.upper().encode()) and token.value.encode() not in out


def test_a_streamed_body_in_an_unknown_encoding_is_killed() -> None:
    f = flow_with(b"")
    f.response.headers["Content-Encoding"] = "x-secret-sauce"  # type: ignore[attr-defined]
    f.response.stream = True  # type: ignore[attr-defined]
    state = state_for(JWT)
    scrub.on_headers(f, state, streaming=False)  # type: ignore[arg-type]
    assert f.error is not None and f.error.msg == f.error.KILLED_MESSAGE  # type: ignore[attr-defined]
    assert f.response.stream(b"Bearer " + JWT.value.encode()) == []  # type: ignore[attr-defined]
    assert state.record.error_class == "unscrubbable_response"


def test_a_response_mitmproxy_may_start_streaming_late_is_streamed_from_its_start() -> None:
    f = flow_with(b"")
    f.response.headers["Transfer-Encoding"] = "chunked"  # type: ignore[attr-defined]
    del f.response.headers["content-length"]  # type: ignore[attr-defined]
    scrub.on_headers(f, state_for(JWT), streaming=False)  # type: ignore[arg-type]
    assert not f.response.stream  # type: ignore[attr-defined]
    scrub.on_headers(f, state_for(JWT), streaming=True)  # type: ignore[arg-type]
    assert isinstance(f.response.stream, scrub.Stream)  # type: ignore[attr-defined]
    sized = flow_with(b"12345")
    scrub.on_headers(sized, state_for(JWT), streaming=True)  # type: ignore[arg-type]
    assert not sized.response.stream  # type: ignore[attr-defined]


def test_a_fitted_replacement_keeps_the_length() -> None:
    r = b"<authgw redacted sha256:0123456789ab>"
    assert [len(scrub._fitted(r, n, True)) for n in (1, 2, 3, 20, 37, 80)] == [1, 2, 3, 20, 37, 80]
    assert scrub._fitted(r, 80, True).startswith(r[:-1]) and scrub._fitted(r, 80, True)[-1:] == b">"
    assert scrub._fitted(r, 5, False) == r


@pytest.mark.parametrize("ce", ["rot13", "rot_13"])
def test_an_encoding_whose_decoder_raises_typeerror_is_withheld(ce: str) -> None:
    """mitmproxy's decode re-raises TypeError (a str codec): that must not escape the hook,
    which mitmproxy would answer by sending the response unchecked."""
    f = flow_with(b"")
    f.response.headers["Content-Encoding"] = ce  # type: ignore[attr-defined]
    f.response.raw_content = JWT.value.encode()  # type: ignore[attr-defined]
    scrub.on_response(f, state_for(JWT))  # type: ignore[arg-type]
    assert f.response.status_code == 502  # type: ignore[attr-defined]
    assert JWT.value.encode() not in f.response.raw_content  # type: ignore[attr-defined]


def test_a_tilde_is_found_percent_encoded_and_u_escaped() -> None:
    value = "tok~en-0123456789abcdef"
    secret = scrub.secret(value)
    for form in ("tok%7Een-0123456789abcdef", "tok\\u007een-0123456789abcdef", value):
        assert scrub.text(form.encode(), [secret]) == secret.replacement, form
