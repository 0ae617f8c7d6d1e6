"""Carrying out a request decision on its flow: an ``Answer`` written, an error
answered 502, and what every decided flow gets (its credential headers masked, the
snapshot of what the upstream routes by, its comment, its count). mitmproxy cannot
answer a request whose body it streams: such a flow is closed instead."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.net.http.http1 import expected_http_body_size

from authgw import annotate
from authgw.binding import routed_by
from authgw.flowstate import FlowState
from authgw.logs import WarnEveryMinute, internal_error
from authgw.metrics import NO_ROUTE, Metrics
from authgw.redaction import mask
from authgw.runtime import Runtime
from authgw.steps import Answer, answer
from authgw.tokens import InsecureUpstream, TokenUnavailable

logger = logging.getLogger("authgw.decision")  # the decision's log, as it always was


class Apply:
    """Writes decisions on flows; ``streaming`` mirrors mitmproxy's stream_large_bodies."""

    def __init__(
        self, metrics: Metrics, *, clock: Callable[[], float], warn: WarnEveryMinute
    ) -> None:
        self.metrics = metrics
        self.streaming = False
        self._clock = clock
        self._warn = warn

    def answer(self, flow: http.HTTPFlow, state: FlowState, step: Answer) -> None:
        """Carry out an ``Answer``: the flow's response, its record's action and class."""
        state.record.action, state.record.error_class = step.action, step.error_class
        headers = dict(step.headers)
        if step.error_class:
            headers["X-Authgw-Error"] = step.error_class
        answer(flow, step.status, step.body, headers)

    def failed(self, rt: Runtime, flow: http.HTTPFlow, state: FlowState, e: Exception) -> None:
        """Answer 502 for an error: ``TokenUnavailable``'s class, else ``internal``."""
        if not isinstance(e, TokenUnavailable):
            internal_error(
                logger,
                "authgw: internal error on %s (%s); answered 502",
                state.record.route or "request",
                type(e).__name__,
            )
            e = TokenUnavailable("internal", type(e).__name__)
        record = state.record
        record.action = "token_unavailable"
        record.error_class = e.error_class
        route = record.route or NO_ROUTE
        if not isinstance(e, InsecureUpstream):  # the request's fault, not the route's
            rt.last_errors[route] = {
                "error_class": e.error_class,
                "message": str(e),
                "at": self._clock(),
            }
        self._warn(
            (route, e.error_class),
            "authgw: route %s: token unavailable (%s): %s; answering 502",
            route,
            e.error_class,
            e,
        )
        answer(
            flow,
            502,
            f"token unavailable (route {route}: {e.error_class})",
            {"X-Authgw-Error": e.error_class},
        )

    def decided(self, flow: http.HTTPFlow, state: FlowState, count: bool) -> None:
        if state.route is not None and state.token is None and flow.response is None:
            mask(flow.request.headers, state.route)  # a token we injected is masked already
        if flow.response is None and (state.token is not None or state.sigv4 is not None):
            state.routed_by = routed_by(flow)  # what the last word compares; nothing else
        annotate.decided(flow, state.record)
        if count:
            self.metrics.requests.add((state.record.route or NO_ROUTE, state.record.action))
        if flow.response is not None:
            if self._can_answer(flow):
                flow.request.stream = False  # answered here: the body is read and dropped
            else:
                logger.info(
                    "authgw: closing the connection instead of answering %d: mitmproxy cannot "
                    "answer a request whose body it streams (stream_large_bodies)",
                    flow.response.status_code,
                )
                flow.response = None
                flow.kill()  # type: ignore[no-untyped-call]

    def _can_answer(self, flow: http.HTTPFlow) -> bool:
        """False where mitmproxy streams the request body: it cannot answer such a request."""
        if not self.streaming:
            return True
        if flow.request.stream:
            return False
        try:
            size = expected_http_body_size(flow.request)
        except ValueError:
            return False
        return size is not None and size >= 0
