"""What the gateway did to a flow, on the flow itself: mitmweb and the console show it.

A routed flow gets a comment that starts with the verdict, since mitmweb's column cuts
it: ``injected: <source> kid=<kid> <left> (authgw, route <route>)``, or
``token unavailable: <error_class> (authgw, route <route>)``; a flow the gateway answered
itself (400/401/403/421/502) is marked too. The comment is updated when the upstream
answers 401/403. Names, kids and classes only: never a token.
"""

from __future__ import annotations

from mitmproxy import http

from authgw.flowlog import FlowRecord

ANSWERED_MARK = ":no_entry:"  # 🚫 in mitmweb and the console


def decided(flow: http.HTTPFlow, record: FlowRecord) -> None:
    """Comment (and mark, if answered here) a flow once its decision is made."""
    route = record.route
    by = f"(authgw, route {route})" if route else "(authgw)"
    if flow.response is not None:
        # the class, else the first line of the gateway's own answer ("no route for host")
        why = record.error_class or (flow.response.get_text(strict=False) or "").split("\n")[0]
        action = record.action.replace("_", " ")
        flow.comment = f"{action}: {why[:80] or flow.response.status_code} {by}"
        flow.marked = ANSWERED_MARK
        return
    if route is None:
        return  # not the gateway's flow: left as mitmproxy shows it
    parts = [f"{record.action}:"]
    if record.token_source:
        parts.append(record.token_source)
    if record.kid:
        parts.append(f"kid={record.kid}")
    if record.token_expires_in is not None:
        parts.append(f"{int(record.token_expires_in)}s left")
    if record.verify:
        parts.append(f"verify={record.verify}")
    flow.comment = " ".join([*parts, by])


def upstream_rejected(flow: http.HTTPFlow, status: int) -> None:
    flow.comment = f"{flow.comment}; upstream answered {status}, token dropped".lstrip("; ")


def retried(flow: http.HTTPFlow, result: str) -> None:
    """After the one resend of a retry_on_401 route: what the second try got."""
    got = "no answer, the client got the 401" if result == "error" else f"answered {result}"
    flow.comment = f"{flow.comment}; resent with a fresh token: {got}".lstrip("; ")
