"""Redaction: the credentials in a routed flow never show, in flight or after.

Two steps, both on the credential headers of a routed flow (the injected token, and
the client's own token on verify routes or moved by ``inbound: keep-as:``):

- ``mask``, as soon as the decision is made: each value becomes a ``Masked`` header
  value. mitmproxy writes header values to the wire as the bytes they are (HTTP/1
  ``Headers.__bytes__``, HTTP/2 via the h2 library), but everything that *shows* a
  flow decodes them first (``Headers.items``/``get``/``get_all`` -> ``bytes.decode``):
  mitmweb's flow list and API, the console, ``-v``, other addons. A ``Masked`` value
  decodes to ``<authgw redacted sha256:...>``.
- ``redact``, once the upstream has the request (its response headers came, or it
  failed, or mitmproxy shuts down): the values become that placeholder for good, so
  flows written by ``-w`` (which stores raw bytes) never hold a token.
"""

from __future__ import annotations

from functools import lru_cache

from mitmproxy import http

from authgw.config import Route
from authgw.flowstate import FlowState
from authgw.kinds import kind_of
from authgw.tokens import Token, fingerprint, split_prefix


class Masked(bytes):
    """A header value sent as its bytes that reads as ``shown`` wherever it is decoded."""

    shown: str

    def __new__(cls, value: bytes, shown: str) -> Masked:
        self = super().__new__(cls, value)
        self.shown = shown
        return self

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.shown

    def __radd__(self, other: bytes) -> bytes:
        # The console escapes a value as b'"' + value: show the placeholder there too.
        # (The HTTP/1 writer and hpack join the buffer: the wire keeps the token.)
        return bytes(other) + self.shown.encode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return repr(self.shown.encode())

    # str() of bytes is their repr, in C: without these, str(v), f"{v}", "%s" % v and
    # format(v) in another addon would show the token.
    def __str__(self) -> str:
        return repr(self)

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)


def redacted(value: str, prefix: str) -> str:
    """``Bearer <authgw redacted sha256:...>`` for ``Bearer <token>``."""
    sent, token = split_prefix(value, prefix)
    return f"{sent}<authgw redacted {fingerprint(token)}>"


def masked_token(route: Route, token: Token) -> Masked:
    """The route's header value for ``token``, masked."""
    return _masked_token(route.prefix, token.value, token.fingerprint)


@lru_cache(maxsize=1024)  # made for every request; its tokens are in the cache anyway
def _masked_token(prefix: str, value: str, fingerprint: str) -> Masked:
    raw = (prefix + value).encode("utf-8", "surrogateescape")
    return Masked(raw, f"{prefix}<authgw redacted {fingerprint}>")


def masked(value: bytes, prefix: str) -> Masked:
    """A client's credential header value, masked."""
    return Masked(value, redacted(value.decode("utf-8", "surrogateescape"), prefix))


def _names(route: Route) -> frozenset[bytes]:
    """The route's credential header names, lowercase."""
    kind = frozenset() if route.token is None else kind_of(route.token).credential_headers
    return _names_of(route.header, route.keep_inbound_as, kind)


@lru_cache(maxsize=256)  # asked for every routed flow; a Route hashes all its fields
def _names_of(header: str, keep_as: str | None, kind: frozenset[bytes]) -> frozenset[bytes]:
    names = {header.lower().encode(), *kind}  # sigv4: X-Amz-Security-Token
    if keep_as is not None:
        names.add(keep_as.lower().encode())
    return frozenset(names)


def mask(headers: http.Headers, route: Route) -> None:
    """Make the route's credential headers read as placeholders; the wire keeps them."""
    names = _names(route)
    headers.fields = tuple(
        (name, masked(value, route.prefix))
        if name.lower() in names and not isinstance(value, Masked)
        else (name, value)
        for name, value in headers.fields
    )


def redact(flow: http.HTTPFlow, state: FlowState | None) -> None:
    """Replace the credentials of a routed flow by their placeholders, for good, once."""
    if state is None or state.route is None or state.redacted:
        return
    state.redacted = True
    req = flow.request
    headers, names = req.headers, _names(state.route)
    fields = []
    for name, value in headers.fields:
        if isinstance(value, Masked):  # also a placeholder's header, wherever it was
            value = value.shown.encode("utf-8", "surrogateescape")
        elif name.lower() in names:
            shown = redacted(value.decode("utf-8", "surrogateescape"), state.route.prefix)
            value = shown.encode("utf-8", "surrogateescape")
        fields.append((name, value))
    headers.fields = tuple(fields)
    if isinstance(req.data.path, Masked):  # query: or a placeholder in the URL
        req.data.path = req.data.path.shown.encode("utf-8", "surrogateescape")
    if state.body_shown is not None:  # placeholder_in_body
        req.raw_content = state.body_shown
        if "content-length" in headers:
            headers["content-length"] = str(len(state.body_shown))
