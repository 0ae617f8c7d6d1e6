"""When a 401 is resent (retry_on_401), and what the copy that is resent holds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from authgw import config as configmod
from authgw import retry
from authgw.config import ConfigError, Route, StaticTokenConfig
from authgw.config.schema import SecretRef
from authgw.flowlog import FlowRecord
from authgw.flowstate import FlowState
from authgw.hosts import HostPattern

ROUTE = Route(
    name="api",
    hosts=(HostPattern.parse("api.example"),),
    token=StaticTokenConfig(value=SecretRef("env", "X")),
    retry_on_401=True,
)


def answered(status: int = 401) -> tuple[http.HTTPFlow, FlowState]:
    flow = tflow.tflow(resp=tutils.tresp(status_code=status))
    state = FlowState(FlowRecord(route="api", action="injected"), route=ROUTE)
    state.headers_before = ((b"Host", b"api.example"), (b"Authorization", b"Bearer client"))
    state.request_before = tutils.treq(content=b"the client's body", path=b"/before-map-remote")
    return flow, state


def test_a_401_to_an_injected_token_is_resent_once() -> None:
    flow, state = answered()
    assert retry.wanted(flow, state)
    copy = retry.copy_of(flow, state)
    assert copy.id != flow.id and retry.is_copy(copy) and copy.is_replay == "request"
    assert copy.request.headers.fields == state.headers_before
    assert copy.request.raw_content == b"the client's body"
    assert copy.request.path == "/before-map-remote"  # not where other addons sent it
    assert copy.response is None and copy.error is None and not copy.live
    assert not retry.wanted(copy, state)  # a copy is never resent: no loop


@pytest.mark.parametrize(
    "change",
    [
        "403",
        "200",
        "not injected",
        "route off",
        "streamed request",
        "no body kept",
        "streamed response",
    ],
)
def test_what_is_not_resent(change: str) -> None:
    flow, state = answered(403 if change == "403" else 200 if change == "200" else 401)
    if change == "not injected":
        state.record.action = "passthrough"
    if change == "route off":
        state.route = replace(ROUTE, retry_on_401=False)
    if change == "streamed request":
        flow.request.stream = True
    if change == "no body kept":
        assert state.request_before is not None
        state.request_before.stream = True
        state.request_before.raw_content = None
    if change == "streamed response":
        assert flow.response is not None
        flow.response.stream = True
    assert not retry.wanted(flow, state)


def test_retry_on_401_needs_a_token_to_renew(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\nroutes:\n  - name: v\n    hosts: [a.example]\n    retry_on_401: true\n"
        "    verify: {secret: {env: X}}\n"
    )
    with pytest.raises(ConfigError, match=r"routes\[0\]\.retry_on_401: needs a token: section"):
        configmod.load(path)
