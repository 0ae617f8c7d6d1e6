"""Flow comments and marks (authgw.annotate): what mitmweb and the console show."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.test import tflow

from authgw import annotate
from authgw.flowlog import FlowRecord


def test_an_injected_flow_says_route_source_kid_and_time_left() -> None:
    f = tflow.tflow()
    record = FlowRecord(
        route="dash",
        action="injected",
        token_source="hmac",
        kid="sha256:abc",
        token_expires_in=299.7,
    )
    annotate.decided(f, record)
    assert f.comment == "injected: hmac kid=sha256:abc 299s left (authgw, route dash)"
    assert not f.marked
    annotate.upstream_rejected(f, 401)
    assert f.comment.endswith("; upstream answered 401, token dropped")


def test_a_flow_answered_here_is_marked_with_its_class() -> None:
    f = tflow.tflow()
    f.response = http.Response.make(502)
    annotate.decided(
        f, FlowRecord(route="sts", action="token_unavailable", error_class="Throttling")
    )
    assert f.comment == "token unavailable: Throttling (authgw, route sts)"
    assert f.marked == annotate.ANSWERED_MARK
    g = tflow.tflow()
    g.response = http.Response.make(421)
    annotate.decided(g, FlowRecord(route="api", action="rejected", error_class="host_mismatch"))
    assert g.comment == "rejected: host_mismatch (authgw, route api)"
    h = tflow.tflow()
    h.response = http.Response.make(403, b"no route for host\n")
    annotate.decided(h, FlowRecord(action="rejected"))
    assert h.comment == "rejected: no route for host (authgw)"


def test_an_unrouted_passthrough_is_left_alone() -> None:
    f = tflow.tflow()
    annotate.decided(f, FlowRecord())
    assert f.comment == "" and f.marked == ""
