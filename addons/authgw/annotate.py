"""What the gateway did to a flow, on the flow itself: mitmweb and the console show it.

A routed flow gets a comment, ``authgw: <route> <action> <source> kid=<kid> <left>`` or
``authgw: <route> token unavailable (<error_class>)``; a flow the gateway answered itself
(400/401/403/421/502) is marked too. The comment is updated when the upstream answers
401/403. Names, kids and classes only: never a token.
"""

from __future__ import annotations

from mitmproxy import http

from authgw.flowlog import FlowRecord

ANSWERED_MARK = ":no_entry:"  # 🚫 in mitmweb and the console


def decided(flow: http.HTTPFlow, record: FlowRecord) -> None:
    """Comment (and mark, if answered here) a flow once its decision is made."""
    route = record.route
    if flow.response is not None:
        why = record.error_class or f"{flow.response.status_code}"
        if record.action == "token_unavailable":
            flow.comment = f"authgw: {route or '-'} token unavailable ({why})"
        else:
            flow.comment = f"authgw: {route or '-'} {record.action} ({why})"
        flow.marked = ANSWERED_MARK
        return
    if route is None:
        return  # not the gateway's flow: left as mitmproxy shows it
    parts = [f"authgw: {route} {record.action}"]
    if record.token_source:
        parts.append(record.token_source)
    if record.kid:
        parts.append(f"kid={record.kid}")
    if record.token_expires_in is not None:
        parts.append(f"{int(record.token_expires_in)}s left")
    if record.verify:
        parts.append(f"verify={record.verify}")
    flow.comment = " ".join(parts)


def upstream_rejected(flow: http.HTTPFlow, status: int) -> None:
    flow.comment = f"{flow.comment}; upstream answered {status}, token dropped".lstrip("; ")


def retried(flow: http.HTTPFlow, result: str) -> None:
    """After the one resend of a retry_on_401 route: what the second try got."""
    got = "no answer, the client got the 401" if result == "error" else f"answered {result}"
    flow.comment = f"{flow.comment}; resent with a fresh token: {got}".lstrip("; ")
