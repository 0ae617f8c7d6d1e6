"""Redaction: the credentials in a routed flow become their fingerprints once sent.

mitmproxy's own output (``-v``), saved flows (``-w``) and mitmweb show a flow after
the upstream has it; from then on it holds ``<authgw redacted sha256:...>`` where the
injected token and the client's own token (checked on verify routes, or moved by
``inbound: keep-as:``) were.
"""

from __future__ import annotations

from mitmproxy import http

from authgw.decision import FlowState
from authgw.tokens import fingerprint, split_prefix


def redact(flow: http.HTTPFlow, state: FlowState | None) -> None:
    """Replace the credentials of a routed flow by their fingerprints, once."""
    if state is None or state.route is None or state.redacted:
        return
    state.redacted = True
    route, headers, token = state.route, flow.request.headers, state.token
    if token is not None and route.keep_inbound_as is None:
        # The common case: the header holds exactly what we injected.
        headers[route.header] = f"{route.prefix}<authgw redacted {token.fingerprint}>"
        return
    for name in (route.header, route.keep_inbound_as):
        if name is not None and name in headers:
            headers.set_all(name, [redacted(v, route.prefix) for v in headers.get_all(name)])


def redacted(value: str, prefix: str) -> str:
    """``Bearer <authgw redacted sha256:...>`` for ``Bearer <token>``."""
    sent, token = split_prefix(value, prefix)
    return f"{sent}<authgw redacted {fingerprint(token)}>"
