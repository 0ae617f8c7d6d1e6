"""sigv4 routes on a flow: credentials at the decision, the signature at the last word.

``prepare`` runs in the request decision: the client's own copies of the SigV4 headers
are dropped and the credentials taken (in a thread, when botocore must refresh them).
``sign`` runs in the gateway's last-word hook, after every other addon (mitmproxy's
``map_remote``, ``modify_headers`` and ``modify_body`` included) has changed the
request: the query is put in canonical form, botocore signs the method, URL, headers and
body as they will be sent, and the four headers go on (the signature and the session
token masked, as any token). A body mitmproxy streams cannot be hashed: with
``payload: unsigned`` it is signed at the decision as ``UNSIGNED-PAYLOAD``; with
``payload: signed`` it is ``unsignable_body``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from mitmproxy import http

from authgw.flowstate import FlowState
from authgw.httpsyntax import may_stream
from authgw.redaction import Masked, redacted
from authgw.sources.sigv4 import SIGV4_HEADERS, SigV4Signer, canonical_path, canonical_query
from authgw.tokens import TokenUnavailable, fingerprint

SECRET_HEADERS = frozenset({"authorization", "x-amz-security-token"})

logger = logging.getLogger(__name__)


def prepare(
    signer: SigV4Signer, flow: http.HTTPFlow, state: FlowState, *, streaming: bool
) -> Coroutine[Any, Any, None] | None:
    """Drop the client's SigV4 headers and take the credentials; None when done, or a
    coroutine to await when botocore must refresh them first."""
    req, record = flow.request, state.record
    for name in SIGV4_HEADERS:
        if name in req.headers:
            del req.headers[name]
            record.headers_removed.append(name)
    record.token_source = signer.kind
    if signer.needs_refresh():
        return _refreshed(signer, flow, state, streaming)
    _ready(signer, flow, state, signer.credentials(), streaming)
    return None


async def _refreshed(
    signer: SigV4Signer, flow: http.HTTPFlow, state: FlowState, streaming: bool
) -> None:
    _ready(signer, flow, state, await asyncio.to_thread(signer.credentials), streaming)


def _ready(
    signer: SigV4Signer, flow: http.HTTPFlow, state: FlowState, creds: Any, streaming: bool
) -> None:
    state.sigv4 = creds
    record = state.record
    record.kid = fingerprint(creds.access_key)
    record.action = "injected"
    req = flow.request
    if req.stream and signer.config.payload == "signed":
        raise TokenUnavailable(
            "unsignable_body",
            f"route {signer.route}: mitmproxy streams this request's body, which cannot "
            "be hashed before it is sent (payload: unsigned signs such requests)",
        )
    if req.stream or (signer.config.payload == "unsigned" and may_stream(req, None, streaming)):
        # now: the headers leave before the `request` hooks
        sign(signer, flow, state, body_known=False)


def unsigned_stream(flow: http.HTTPFlow, state: FlowState) -> None:
    """The last word on a flow whose body mitmproxy began to stream before it was signed:
    its headers went out without a signature (the upstream refuses it; no credential left
    with it). Say so in the record and the log."""
    record = state.record
    record.action, record.error_class = "token_unavailable", "unsignable_body"
    record.headers_set = []
    logger.warning(
        "authgw: route %s: mitmproxy began to stream this request's body before it was "
        "signed; its headers went out unsigned (payload: unsigned signs such requests)",
        record.route,
    )


def sign(signer: SigV4Signer, flow: http.HTTPFlow, state: FlowState, *, body_known: bool) -> None:
    """Sign the request as it will be sent; replaces any SigV4 header another addon set."""
    creds = state.sigv4
    assert creds is not None
    req = flow.request
    path, sep, query = req.path.partition("?")
    if signer.config.service == "s3" and path.startswith("/"):
        path = canonical_path(path)
    req.path = f"{path}?{canonical_query(query)}" if sep and query else path
    cookies = req.headers.get_all("cookie")
    if len(cookies) > 1:  # as mitmproxy joins HTTP/2 cookie fields for an HTTP/1 upstream
        req.headers["cookie"] = "; ".join(cookies)
    headers: list[tuple[str, str]] = list(req.headers.items(multi=True))  # type: ignore[no-untyped-call]
    host = req.host_header  # what the upstream reads: Host, or HTTP/2's :authority
    if host and not any(k.lower() == "host" for k, _ in headers):
        headers.append(("host", host))
    url = req.url  # scheme, host, port (left out when it is the default), path and query
    body = req.raw_content if body_known else None
    signed = signer.sign(creds, req.method, url, headers, body)
    for name in SIGV4_HEADERS:
        if name in req.headers:
            del req.headers[name]
    fields = list(req.headers.fields)
    set_names = []
    for name, value in signed:
        raw = value.encode()
        if name.lower() in SECRET_HEADERS:
            raw = Masked(raw, redacted(value, ""))
        fields.append((name.encode(), raw))
        set_names.append(name)
    req.headers.fields = tuple(fields)
    state.record.headers_set = set_names
    state.signature = dict(signed).get("Authorization", "").rpartition("Signature=")[2] or None
    state.presigned = True
    state.signed = body_known  # signed before the body was known: again at the last word
