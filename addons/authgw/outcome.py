"""What happened to a flow once it is answered: metrics, token drops, the flow record.

On an upstream 401/403 to an injected token, that token leaves the cache and one
diagnostic line is logged; every routed flow's upstream time goes into the histogram
and its record into the flow log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mitmproxy import http

from authgw import annotate, scrub
from authgw.flowlog import make_line
from authgw.flowstate import FlowState
from authgw.metrics import NO_ROUTE, Metrics, upstream_error_type
from authgw.runtime import Runtime

logger = logging.getLogger(__name__)


class Outcomes:
    def __init__(self, metrics: Metrics, *, clock: Callable[[], float]) -> None:
        self.metrics = metrics
        self._clock = clock

    def response(self, rt: Runtime, flow: http.HTTPFlow, state: FlowState) -> None:
        self.rejections(rt, flow, state)
        self.finish(rt, flow, state, flow.response.status_code if flow.response else None)

    def rejections(self, rt: Runtime, flow: http.HTTPFlow, state: FlowState) -> None:
        """An upstream 401/403 to an injected token: drop it, count it, say so."""
        status = flow.response.status_code if flow.response else None
        if status in (401, 403) and state.record.action == "injected":
            self._upstream_rejected(rt, flow, state, status)
            annotate.upstream_rejected(flow, status)

    def retried(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        copy: http.HTTPFlow,
        again: FlowState | None,
    ) -> None:
        """The resend of ``flow`` is over: its answer becomes the client's, and the flow's
        record takes the second decision (token, kid, error) with ``retried: true``."""
        record = state.record
        record.retried = True
        if copy.response is None:
            result = "error"
            logger.warning(
                "authgw: route %s: the retry after a 401 got no answer (%s); the client gets "
                "the 401",
                record.route,
                copy.error.msg if copy.error else "no response",
            )
        else:
            result = str(copy.response.status_code)
            flow.response = copy.response.copy()
            if again is not None:
                second = again.record
                record.action, record.error_class = second.action, second.error_class
                record.kid, record.token_expires_in = second.kid, second.token_expires_in
                state.key, state.token = again.key, again.token
        self.metrics.child(self.metrics.retries, record.route or NO_ROUTE, result).inc()
        annotate.retried(flow, result)

    def _upstream_rejected(
        self, rt: Runtime, flow: http.HTTPFlow, state: FlowState, status: int
    ) -> None:
        token = state.token
        self.metrics.auth_rejections.labels(state.record.route, str(status)).inc()
        if state.key is not None:
            rt.cache.drop(state.key)
        source = rt.sources.get(state.record.route or "")
        if source is not None and status == 401:
            source.upstream_rejected()  # a secret kept elsewhere may have been rotated
        left = token.seconds_left(self._clock()) if token else None
        challenge = flow.response.headers.get("WWW-Authenticate", "") if flow.response else ""
        if challenge:  # scrubbed already, unless the route has scrub_responses: false
            raw = challenge.encode("utf-8", "surrogateescape")
            challenge = scrub.text(raw, scrub.secrets_of(state)).decode("utf-8", "replace")
        logger.warning(
            "authgw: route %s: upstream answered %d to an injected token (kid %s, claims %s, "
            "%s s left%s); dropped it from the cache",
            state.record.route,
            status,
            token.kid if token else None,
            ",".join(token.claim_names) if token else "",
            "no expiry" if left is None else int(left),
            f", WWW-Authenticate: {challenge[:200]}" if challenge else "",
        )

    def finish(
        self, rt: Runtime, flow: http.HTTPFlow, state: FlowState, status: int | None
    ) -> None:
        """Upstream timing into the histogram, and the flow's record into the flow log."""
        record, req = state.record, flow.request
        upstream_ms = None
        if record.sent_at is not None and record.action in ("injected", "passthrough"):
            if flow.error is not None:  # also when headers came and then the body broke
                end = time.time()
                error_type = upstream_error_type(flow.error.msg)
            elif flow.response is not None:
                end = flow.response.timestamp_end or flow.response.timestamp_start
                error_type = "none"
            else:
                end, error_type = time.time(), "unknown"
            upstream_ms = max(0.0, ((end or time.time()) - record.sent_at) * 1000)
            if not (flow.error and flow.error.msg == flow.error.KILLED_MESSAGE):
                self.metrics.upstream_duration.observe(
                    (record.route or NO_ROUTE, error_type), upstream_ms / 1000
                )
        if rt.flowlog is None:
            return
        client = flow.client_conn.peername
        rt.flowlog.write(
            make_line(
                record,
                ts=req.timestamp_start,
                client=f"{client[0]}:{client[1]}" if client else "",
                method=req.method,
                scheme=req.scheme,
                host=req.host,
                port=req.port,
                path=req.path,
                status=status,
                upstream_ms=upstream_ms,
            )
        )
