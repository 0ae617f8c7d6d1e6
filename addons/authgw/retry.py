"""One transparent resend after an upstream 401, for routes with ``retry_on_401``.

The upstream rejected a token the gateway injected; the token is already dropped. The
request goes out once more, with the headers the client sent and the URL and body as
they were at authgw's ``request`` hook (before ``map_remote``, ``modify_*`` and later
addons, which run on the copy again), through mitmproxy's own replay machinery: the
same server-side layers, TLS settings and upstream proxy as any flow, and every addon's
hooks again, so the gateway decides the copy afresh and injects a new token. The client
sees the copy's answer. A copy is never resent itself, so a second 401 goes to the
client: never a loop.
A request whose body was streamed (its bytes are gone) or a 401 whose body was streamed
to the client already is not resent.
"""

from __future__ import annotations

from typing import cast

from mitmproxy import ctx, http
from mitmproxy.addons.clientplayback import ReplayHandler

from authgw.flowstate import FlowState

RETRY_OF = "authgw_retry_of"  # flow.metadata key of a copy: the id of the flow it resends


def wanted(flow: http.HTTPFlow, state: FlowState) -> bool:
    """True for an upstream 401 to an injected token on a retry_on_401 route, once."""
    route, response = state.route, flow.response
    return (
        route is not None
        and route.retry_on_401
        and response is not None
        and response.status_code == 401
        and not response.stream
        and state.record.action == "injected"
        and not flow.request.stream
        and state.request_before is not None
        and state.request_before.raw_content is not None
        and not is_copy(flow)
    )


def is_copy(flow: http.HTTPFlow) -> bool:
    return RETRY_OF in flow.metadata


def copy_of(flow: http.HTTPFlow, state: FlowState) -> http.HTTPFlow:
    """The request once more, as it was at authgw's request hook (URL and body before
    map_remote and modify_*, which run on the copy again), with the client's headers."""
    assert state.request_before is not None
    copy = cast(http.HTTPFlow, flow.copy())  # type: ignore[no-untyped-call]  # new id, not live
    copy.request = state.request_before.copy()
    copy.request.headers.fields = state.headers_before
    copy.response = None
    copy.error = None
    copy.is_replay = "request"
    copy.metadata[RETRY_OF] = flow.id
    copy.comment = ""
    copy.marked = ""
    return copy


async def resend(copy: http.HTTPFlow) -> None:
    """Send ``copy`` upstream and wait for its answer (or its error)."""
    await ReplayHandler(copy, ctx.options).replay()
