"""The credential header of a routed request: the token set, what the client sent there
dropped or moved under ``inbound: keep-as:``, every credential masked (``redaction``)."""

from __future__ import annotations

from mitmproxy import http

from authgw.config import Route
from authgw.flowlog import FlowRecord
from authgw.redaction import masked, masked_token
from authgw.tokens import Token


def rewrite_headers(headers: http.Headers, route: Route, token: Token, record: FlowRecord) -> None:
    """The route's header carries the token; what the client sent there is dropped, or
    moved under ``keep-as:`` (whose own copy from the client is dropped: only the moved
    value may be there). One pass over the fields; every credential is masked. A route
    that sets no header (``header: null``, or ``query:`` alone) leaves them as they are."""
    if not route.inject:
        return
    name = route.header.lower().encode()
    keep = route.keep_inbound_as
    keep_name = keep.lower().encode() if keep is not None else None
    fields: list[tuple[bytes, bytes]] = []
    inbound: list[bytes] = []
    for k, v in headers.fields:
        lowered = k.lower()
        if lowered == name:
            inbound.append(v)
        elif lowered != keep_name:
            fields.append((k, v))
    if keep is not None:
        if inbound:
            fields.extend((keep.encode(), masked(bytes(v), route.prefix)) for v in inbound)
            record.headers_set.append(keep)
    elif inbound:
        record.headers_removed.append(route.header)
    fields.append((route.header.encode(), masked_token(route, token)))
    record.headers_set.append(route.header)
    headers.fields = tuple(fields)
