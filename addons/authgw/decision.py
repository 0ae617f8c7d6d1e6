"""The request decision: route -> (verify the client's token) -> token plan -> inject.

``Decider.decide`` reads a request and the runtime snapshot and either rewrites the
request's credential header or answers it (400/401/403 as decided, 502 when no token
can be had). It never raises: mitmproxy forwards a flow whose hook raised, so any
unexpected error is a 502 ``internal``. It needs no addon manager; the hooks call it.
A cache hit is decided synchronously; a miss or a verify route returns a coroutine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import http

from authgw import annotate, placement, plan, routing
from authgw.apply import Apply
from authgw.binding import foreign_name, routed_by, target
from authgw.cache import CacheKey, Fetcher
from authgw.config import Route
from authgw.flowstate import FlowState
from authgw.headers import rewrite_headers
from authgw.kinds import kind_of
from authgw.leaks import LeakCheck, body_text, request_text
from authgw.logs import WarnEveryMinute
from authgw.metrics import Metrics
from authgw.runtime import Runtime
from authgw.steps import HOST_MISMATCH, NO_ROUTE_FOR_HOST, Answer, Later
from authgw.templates import MissingClaimInput
from authgw.tokens import MissingSecret, Token, split_prefix
from authgw.verify import Verdict, VerifyError

logger = logging.getLogger(__name__)


class Decider:
    """Decides requests against whichever runtime the caller passes."""

    def __init__(self, metrics: Metrics, *, clock: Callable[[], float]) -> None:
        self.metrics = metrics
        self._clock = clock
        self._warned_optional: set[str] = set()
        self._warn_limited = WarnEveryMinute(logger)
        self.apply = Apply(metrics, clock=clock, warn=self._warn_limited)
        self.tls_unverified = False  # mitmproxy's ssl_insecure (set by the addon)
        self.leaks = LeakCheck()

    def decide(
        self, rt: Runtime, flow: http.HTTPFlow, state: FlowState, *, count: bool = True
    ) -> Coroutine[Any, Any, None] | None:
        """Route, check and inject; None when done, or a coroutine to await for the rest."""
        try:
            step = self._now(rt, flow, state)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            self.apply.failed(rt, flow, state, e)
            step = None
        if isinstance(step, Later):
            return self._later(rt, flow, state, step, count)
        if step is not None:
            self.apply.answer(flow, state, step)
        self.apply.decided(flow, state, count)
        return None

    def _now(self, rt: Runtime, flow: http.HTTPFlow, state: FlowState) -> Answer | Later | None:
        """The decision as far as it goes without waiting (a cached token is injected)."""
        found = self._route(rt, flow.request, state, routing.principal_of(flow))
        if isinstance(found, Answer):
            return found
        if rt.config.leak_check != "off":
            leaked = self._leak(rt, flow, found, request_text(flow.request))
            if leaked is not None:
                return leaked
        if found is None:
            return None
        route = found
        mismatch = self._bind(route, flow)
        if mismatch is not None:
            return mismatch
        if route.verify is not None:
            return Later(route)  # the client's token first
        if route.token is None:
            return None
        if kind_of(route.token).signs:
            pending = self._sigv4(rt, flow, route, state)
            return None if pending is None else Later(route, pending=pending)
        plan = self._token_plan(rt, flow, route, state)
        if plan is None or isinstance(plan, Answer):
            return plan
        started = time.perf_counter()
        token = rt.cache.peek(plan[0], plan[1])
        if token is None:
            return Later(route, plan)
        state.record.token_ms = (time.perf_counter() - started) * 1000
        self._inject(rt, flow.request, state, route, plan[0], token)
        return None

    async def _later(
        self, rt: Runtime, flow: http.HTTPFlow, state: FlowState, later: Later, count: bool
    ) -> None:
        """The part of a decision that waits: verifying the client, fetching a token."""
        try:
            step = await self._wait(rt, flow, state, later)
        except MissingSecret as e:
            step = None
            if not self._optional_missing(later.route, e):
                self.apply.failed(rt, flow, state, e)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            step = None
            self.apply.failed(rt, flow, state, e)
        if step is not None:
            self.apply.answer(flow, state, step)
        self.apply.decided(flow, state, count)

    async def _wait(
        self, rt: Runtime, flow: http.HTTPFlow, state: FlowState, later: Later
    ) -> Answer | None:
        route, plan = later.route, later.plan
        if later.pending is not None:
            await later.pending  # sigv4 credentials being refreshed
            return None
        if plan is None:
            if route.verify is not None:
                rejected = await self._verify_inbound(rt, route, flow.request, state)
                if rejected is not None:
                    return rejected
            if route.token is None:
                return None
            if kind_of(route.token).signs:
                pending = self._sigv4(rt, flow, route, state)
                if pending is not None:
                    await pending
                return None
            found = self._token_plan(rt, flow, route, state)
            if found is None or isinstance(found, Answer):
                return found
            plan = found
        started = time.perf_counter()
        try:
            token = await rt.cache.get(plan[0], plan[1])
        finally:
            state.record.token_ms = (time.perf_counter() - started) * 1000
        self._inject(rt, flow.request, state, route, plan[0], token)
        return None

    def _route(
        self, rt: Runtime, req: http.Request, state: FlowState, principal: str | None
    ) -> Route | Answer | None:
        """The route for the request's (re-targeted) host and the client's principal,
        400/403, or None (forward)."""
        cfg = rt.config
        if cfg.upstream_header and cfg.upstream_header in req.headers:
            refused = routing.retarget(req, cfg, state.record, principal)
            if refused is not None:
                return refused
        state.target, state.headers_before = target(req), req.headers.fields
        route = rt.routes.match(req.host, req.port, principal)
        if route is None:
            return NO_ROUTE_FOR_HOST if cfg.unmatched == "reject" else None
        state.record.route, state.route = route.name, route
        return route

    def _leak(
        self, rt: Runtime, flow: http.HTTPFlow, route: Route | None, text: str
    ) -> Answer | None:
        """403 ``credential_elsewhere`` if the request carries a credential its route (or
        none) does not own; under ``observe`` only the log line and the count."""
        found = self.leaks.search(rt, text, route.name if route else None)
        if found is None:
            return None
        owners = ",".join(sorted(found.owners))
        self.metrics.child(self.metrics.leaks_blocked, owners).inc()
        block = rt.config.leak_check == "block"
        self._warn_limited(
            (owners, f"leak:{found.what}"),  # never keyed by a host the client names
            "authgw: a request to %s carries route %s's %s (%s); %s",
            flow.request.host,
            owners,
            found.what,
            found.fingerprint,
            "answered 403" if block else "observe mode, forwarded",
        )
        if not block:
            return None
        return Answer(403, "credential elsewhere", error_class="credential_elsewhere")

    def _bind(self, route: Route, flow: http.HTTPFlow) -> Answer | None:
        """421 unless every host name the upstream may route by is one of the route's."""
        name = foreign_name(route, flow)
        return None if name is None else self._host_mismatch(route, name)

    def _host_mismatch(self, route: Route, name: str) -> Answer:
        self._warn_limited(
            (route.name, "host_mismatch"),
            "authgw: route %s: the request's %s names a host the route does not cover; "
            "answered 421, no token sent",
            route.name,
            name,
        )
        return HOST_MISMATCH

    def _sigv4(
        self, rt: Runtime, flow: http.HTTPFlow, route: Route, state: FlowState
    ) -> Coroutine[Any, Any, None] | None:
        """A sigv4 route: credentials now, the signature at the last word (``signing``)."""
        from authgw import signing  # botocore: imported only where a sigv4 route is

        req = flow.request
        plan.check_scheme(route, req.scheme, req.host)
        plan.check_transport(route, flow, tls_unverified=self.tls_unverified)
        signer = plan.signer(rt.sources, route.name)
        return signing.prepare(signer, flow, state, streaming=self.apply.streaming)

    def last_word(self, rt: Runtime, flow: http.HTTPFlow, state: FlowState) -> None:
        """After every other addon's ``request`` hook that may change a request (see
        ``lastword``): a flow whose token was chosen is answered 421 if another addon
        moved it since (map_remote, modify_headers, a later script) to a target or a name
        its route does not cover; a sigv4 flow is signed as it will be sent, or 502."""
        route = state.route
        if flow.response is None and rt.config.leak_check != "off":
            try:
                text = body_text(flow.request, rt.config.leak_check_body_bytes)
                leaked = self._leak(rt, flow, route, text) if text else None
            except Exception as e:  # noqa: BLE001 - fail closed: an unchecked body stays
                self.apply.failed(rt, flow, state, e)
                leaked = None
            if leaked is not None:
                self.apply.answer(flow, state, leaked)
            if flow.response is not None:
                annotate.decided(flow, state.record)
                return
        if route is None or flow.response is not None:
            return
        if state.token is None and state.sigv4 is None:
            return
        if flow.request.stream:
            if state.sigv4 is not None and not state.presigned:
                from authgw import signing

                signing.unsigned_stream(flow, state)
            return
        try:
            moved = None
            # What the upstream routes by is as the decision left it: nothing to check again.
            if routed_by(flow) != state.routed_by:
                if target(flow.request) != state.target:
                    moved = self._host_mismatch(route, "target, which another addon changed,")
                else:
                    moved = self._bind(route, flow)
            if moved is not None:
                self.apply.answer(flow, state, moved)
            elif state.token is not None:
                placement.body(flow.request, route, state.token, state)
            elif state.sigv4 is not None and not state.signed:
                from authgw import signing

                signing.sign(plan.signer(rt.sources, route.name), flow, state, body_known=True)
        except Exception as e:  # noqa: BLE001 - fail closed: nothing unchecked goes out
            self.apply.failed(rt, flow, state, e)
        if flow.response is not None:
            state.sigv4 = None
            annotate.decided(flow, state.record)

    def _token_plan(
        self, rt: Runtime, flow: http.HTTPFlow, route: Route, state: FlowState
    ) -> tuple[CacheKey, Fetcher] | Answer | None:
        """The cache key and fetcher for the route's token, a 400 for a missing claim
        input, or None: forward without one (an optional secret that is missing)."""
        try:
            plan.check_transport(route, flow, tls_unverified=self.tls_unverified)
            return plan.token_plan(
                route, rt.sources[route.name], flow.request, state.record, state.client_claims
            )
        except MissingClaimInput as e:
            return Answer(400, e.body, error_class="missing_claim_input")
        except MissingSecret as e:
            if self._optional_missing(route, e):
                return None
            raise

    def _optional_missing(self, route: Route, error: MissingSecret) -> bool:
        """True (and a warning, once) if the route's secret is optional: forward as is."""
        if route.token is None or not kind_of(route.token).optional(route.token):
            return False
        if route.name not in self._warned_optional:
            self._warned_optional.add(route.name)
            logger.warning(
                "authgw: route %s: %s; optional, forwarding without a token", route.name, error
            )
        return True

    def _inject(
        self,
        rt: Runtime,
        req: http.Request,
        state: FlowState,
        route: Route,
        key: CacheKey,
        token: Token,
    ) -> None:
        record = state.record
        state.key, state.token = key, token
        record.kid = token.kid
        record.token_expires_in = token.seconds_left(self._clock())
        state.placed = placement.place(req, route, token, record)  # placeholders, then header
        rewrite_headers(req.headers, route, token, record)
        record.action = "injected"
        rt.last_errors.pop(route.name, None)

    async def _verify_inbound(
        self, rt: Runtime, route: Route, req: http.Request, state: FlowState
    ) -> Answer | None:
        """Check the client's own token (verify routes); in enforce mode, a bad one is a 401.
        The claims of a token it accepts are what ``${client:...}`` templates read."""
        assert route.verify is not None
        record = state.record
        values = req.headers.get_all(route.header)
        token = split_prefix(values[0], route.prefix)[1] if len(values) == 1 else ""
        audience = route.verify.audience
        if audience == "dynamic":
            audience = routing.dynamic_audience(req.scheme, req.host)
        if not token:
            verdict = Verdict(False, "missing", f"no single {route.header} header with a token")
        else:
            try:
                verdict = await rt.verifiers[route.name].check(token, audience)
            except VerifyError as e:
                verdict = Verdict(False, "unverifiable", str(e))
        record.verify, record.verify_detail = verdict.reason, verdict.detail
        self.metrics.child(
            self.metrics.verify, route.name, "valid" if verdict.valid else "invalid", verdict.reason
        ).inc()
        if verdict.valid:
            state.client_claims = verdict.claims
            return None
        self._warn_limited(
            (route.name, f"verify:{verdict.reason}"),
            "authgw: route %s: client token %s: %s (%s)",
            route.name,
            verdict.reason,
            verdict.detail,
            "rejected with 401" if route.verify.enforce else "observe mode, forwarded",
        )
        if not route.verify.enforce:
            return None
        challenge = f'Bearer error="invalid_token", error_description="{verdict.reason}"'
        return Answer(
            401,
            f"token rejected ({verdict.reason}): {verdict.detail}",
            headers=(("WWW-Authenticate", challenge),),
        )
