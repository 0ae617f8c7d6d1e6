"""Where a route's credential goes on a request besides its header (``headers.py``).

- ``query: NAME``: the credential is that query parameter (the client's own copies, in
  any spelling of the name, are dropped);
- ``placeholder``: where the client put the route's placeholder, the credential goes
  instead: in header values, inside an ``Authorization: Basic`` credential, in the URL,
  and (``placeholder_in_body``, at the last word, when the body is known) in the body.

Every value that now holds the credential is a ``redaction.Masked``: it goes to the wire
as it is and shows as what the client sent (the placeholder) or as the redaction text;
``redaction.redact`` makes that for good once the upstream has the request.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, unquote_to_bytes

from mitmproxy import http

from authgw.config import Route
from authgw.flowlog import FlowRecord
from authgw.flowstate import FlowState
from authgw.redaction import Masked
from authgw.tokens import Token

MAX_BODY = 1 << 20  # placeholder_in_body: bodies up to 1 MiB


def place(
    req: http.Request, route: Route, token: Token, record: FlowRecord
) -> tuple[tuple[str, str], ...]:
    """The credential in place of the placeholder and in the query parameter. Returns the
    Basic credentials it rewrote, as (sent, what the client sent): their base64 holds the
    credential under a user name the client chose, which scrubbing must know as well."""
    placed: tuple[tuple[str, str], ...] = ()
    if route.placeholder is not None:
        placed = _headers(req, route.placeholder.encode(), token.credential.encode())
        _url(req, route.placeholder.encode(), token.credential.encode())
    if route.query is not None:
        _query(req, route, token)
        record.headers_set.append(f"?{route.query}")
    return placed


def _headers(
    req: http.Request, placeholder: bytes, credential: bytes
) -> tuple[tuple[str, str], ...]:
    fields = []
    basics = []
    changed = False
    for name, value in req.headers.fields:
        raw = bytes(value)
        if placeholder in raw:
            new: bytes | None = raw.replace(placeholder, credential)
        else:
            new = _basic(name, raw, placeholder, credential)
            if new is not None:
                basics.append((new[6:].decode(), raw[6:].strip().decode("latin-1")))
        if new is not None:
            value, changed = Masked(new, raw.decode("utf-8", "surrogateescape")), True
        fields.append((name, value))
    if changed:
        req.headers.fields = tuple(fields)
    return tuple(basics)


def _basic(name: bytes, raw: bytes, placeholder: bytes, credential: bytes) -> bytes | None:
    """An ``Authorization: Basic`` value whose decoded ``user:password`` holds the
    placeholder, with the credential there instead; else None."""
    if name.lower() != b"authorization" or raw[:6].lower() != b"basic ":
        return None
    try:
        pair = base64.b64decode(raw[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if placeholder not in pair:
        return None
    return raw[:6] + base64.b64encode(pair.replace(placeholder, credential))


def _url(req: http.Request, placeholder: bytes, credential: bytes) -> None:
    path = bytes(req.data.path)
    if placeholder in path:
        real = path.replace(placeholder, quote(credential, safe="").encode())
        req.data.path = Masked(real, path.decode("utf-8", "surrogateescape"))


def _query(req: http.Request, route: Route, token: Token) -> None:
    assert route.query is not None
    name = route.query.encode()
    shown_path = req.data.path.decode("utf-8", "surrogateescape")  # a Masked path's shown
    base, _, query = bytes(req.data.path).partition(b"?")
    _, _, shown_query = shown_path.partition("?")
    keep = [p for p in query.split(b"&") if p and _name(p) != name]
    shown = [p for p in shown_query.split("&") if p and _name(p.encode()) != name]
    value = quote(token.credential, safe="")
    seen = route.placeholder or f"<authgw redacted {token.fingerprint}>"
    real = base + b"?" + b"&".join([*keep, name + b"=" + value.encode()])
    text = shown_path.partition("?")[0] + "?" + "&".join([*shown, f"{route.query}={seen}"])
    req.data.path = Masked(real, text)


def _name(pair: bytes) -> bytes:
    """A query pair's name as the upstream reads it (percent-decoded, ``+`` a space)."""
    return unquote_to_bytes(pair.partition(b"=")[0].replace(b"+", b" "))


def body(req: http.Request, route: Route, token: Token, state: FlowState) -> None:
    """``placeholder_in_body``: the credential in place of the placeholder in a body of at
    most 1 MiB that is neither streamed nor encoded; Content-Length follows. What the body
    was is kept for the flow (``redaction.redact``)."""
    if not route.placeholder_in_body or route.placeholder is None or req.stream:
        return
    raw = req.raw_content
    placeholder = route.placeholder.encode()
    if not raw or len(raw) > MAX_BODY or placeholder not in raw:
        return
    if req.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return
    state.body_shown = raw
    req.raw_content = raw.replace(placeholder, token.credential.encode())
    if "content-length" in req.headers:
        req.headers["content-length"] = str(len(req.raw_content or b""))
