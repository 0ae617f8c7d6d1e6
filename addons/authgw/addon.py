"""AuthGateway: the mitmproxy hooks.

``requestheaders``/``request``: route match -> (verify the client's token) ->
audience -> cache key -> ``TokenCache.get`` -> header rewrite. ``response``/``error``:
metrics and the flow log record (and, on 401/403, drop the token). Every decision
lives in the modules named by DESIGN.md; this file wires them.

Fail closed: mitmproxy forwards a flow whose hook raised, so the hooks catch
everything and answer 502 instead. The decision is made in ``requestheaders``,
because mitmproxy sends a streamed request body (``stream_large_bodies``) upstream
before ``request`` fires; ``request`` decides again if another addon re-targeted
the flow in between. Once the upstream has the request, the token in the flow is
replaced by its fingerprint, so mitmproxy's own output and saved flows never show it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional, TypeVar, cast

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http.http1 import expected_http_body_size

from authgw import config as configmod
from authgw import routing, sources
from authgw.cache import CacheKey, Fetcher, TokenCache
from authgw.config import Config, ConfigError, Route
from authgw.flowlog import FlowLog, FlowRecord, make_line
from authgw.metrics import (
    NO_ROUTE,
    Metrics,
    MetricsServer,
    status_document,
    upstream_error_type,
)
from authgw.tokens import (
    InsecureUpstream,
    MissingSecret,
    Token,
    TokenUnavailable,
    fingerprint,
)
from authgw.verify import RouteVerifier, Verdict, VerifyError

logger = logging.getLogger(__name__)

# mitmproxy's option type checker wants typing.Optional, which mypy does not call a type.
_OPTIONAL_STR: Any = Optional[str]  # noqa: UP045
_WARN_EVERY = 60.0  # seconds between warnings for one route and error class; debug between
OPTIONS = ("authgw_config", "authgw_flowlog", "authgw_metrics")


@dataclass
class _Runtime:
    """Everything built from one config file; swapped whole on reload."""

    config: Config
    sources: dict[str, sources.TokenSource]
    cache: TokenCache
    verifiers: dict[str, RouteVerifier] = field(default_factory=dict)
    flowlog: FlowLog | None = None
    last_errors: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _FlowState:
    record: FlowRecord
    target: tuple[str, str, int] | None = None  # (scheme, host, port) the token was chosen for
    route: Route | None = None
    key: CacheKey | None = None
    token: Token | None = None
    headers_before: tuple[tuple[bytes, bytes], ...] = ()
    redacted: bool = False


_F = TypeVar("_F", bound=Callable[..., Any])


def _command(name: str) -> Callable[[_F], _F]:
    """mitmproxy's command decorator, with the type it has."""
    return cast(Callable[[_F], _F], command.command(name))


class _Answered(Exception):
    """The gateway answered the request itself (400/401/403); carries the response."""

    def __init__(
        self, status: int, body: str, action: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.action = action
        self.headers = headers


class AuthGateway:
    def __init__(
        self, *, clock: Callable[[], float] = time.time, watch_interval: float = 1.0
    ) -> None:
        self._clock = clock
        self._watch_interval = watch_interval
        self._rt: _Runtime | None = None
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _FlowState] = (
            weakref.WeakKeyDictionary()
        )
        self.metrics = Metrics()
        self._server: MetricsServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_optional: set[str] = set()
        self._warned_at: dict[tuple[str, str], float] = {}
        self._hinted = False

    # -- options and config ----------------------------------------------------

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "authgw_config",
            _OPTIONAL_STR,
            None,
            "Path of the authgw YAML config (version 1). Unset: authgw is inert.",
        )
        loader.add_option(
            "authgw_flowlog",
            _OPTIONAL_STR,
            None,
            "Path of a JSON Lines flow log; overrides `flowlog` in the config file.",
        )
        loader.add_option(
            "authgw_metrics",
            _OPTIONAL_STR,
            None,
            "host:port for /metrics and /status; overrides `metrics` in the config file.",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & set(OPTIONS):
            return
        path = ctx.options.authgw_config
        if not path:
            self._shutdown()
            if not self._hinted:
                self._hinted = True
                logger.info("authgw: no config; set authgw_config=gateway.yaml to inject tokens")
            return
        stamp = _stamp(Path(path))  # before reading, so a change while we read is seen
        try:
            self._apply(configmod.load(path))
        except ConfigError as e:
            raise exceptions.OptionsError(f"authgw_config: {e}") from e  # type: ignore[no-untyped-call]
        self._start_watching(Path(path), stamp)

    def running(self) -> None:
        if ctx.options.authgw_config and self._watcher is None:
            path = Path(ctx.options.authgw_config)
            self._start_watching(path, _stamp(path))

    def _apply(self, cfg: Config) -> None:
        """Build everything for ``cfg`` and swap it in whole, or raise ConfigError and keep
        what runs now."""
        old = self._rt
        for warning in cfg.warnings:
            logger.warning("authgw: %s", warning)
        built, notes = sources.build_all(cfg, clock=self._clock)
        flowlog = self._open_flowlog(cfg, old)
        try:
            server = self._metrics_server(cfg)
        except ConfigError:
            if flowlog is not None and (old is None or flowlog is not old.flowlog):
                flowlog.close()
            raise
        for note in notes:
            logger.warning("authgw: %s", note)
        if old is not None and old.config.cache == cfg.cache:
            cache = old.cache
            old_routes = {r.name: r for r in old.config.routes}
            changed = [r.name for r in cfg.routes if old_routes.get(r.name) != r]
            for name in [*changed, *(set(old_routes) - {r.name for r in cfg.routes})]:
                cache.drop_route(name)
        else:
            cache = TokenCache(cfg.cache, clock=self._clock, observer=self.metrics)
        # A route the reload left as it was keeps its verifier, and so its fetched JWKS.
        kept = {r.name for r in old.config.routes if r in cfg.routes} if old else set()
        verifiers = {
            r.name: old.verifiers[r.name]
            if old is not None and r.name in kept
            else RouteVerifier(r.name, r.verify, clock=self._clock)
            for r in cfg.routes
            if r.verify is not None
        }
        self._rt = _Runtime(
            config=cfg, sources=built, cache=cache, flowlog=flowlog, verifiers=verifiers
        )
        if old is not None:  # a route the reload did not change keeps its last error
            self._rt.last_errors.update(
                (name, err) for name, err in old.last_errors.items() if name in kept
            )
        self.metrics.bind({name: src.kind for name, src in built.items()}, cache)
        if old is not None and old.flowlog is not None and old.flowlog is not flowlog:
            old.flowlog.close()
        if server is not self._server:
            self._replace_server(server)
        if getattr(ctx.options, "map_remote", None):
            logger.warning(
                "authgw: map_remote runs after authgw, so a token is chosen for the host the "
                "client asked for, not the one map_remote sends the request to"
            )
        logger.info("authgw: %d route(s) from %s", len(cfg.routes), ctx.options.authgw_config)

    def _open_flowlog(self, cfg: Config, old: _Runtime | None) -> FlowLog | None:
        option = ctx.options.authgw_flowlog
        path = Path(option).expanduser() if option else cfg.flowlog
        if path is None:
            return None
        if old is not None and old.flowlog is not None and old.flowlog.path == path:
            return old.flowlog
        try:
            return FlowLog(path)
        except OSError as e:
            where = "authgw_flowlog" if option else "flowlog"
            raise ConfigError(where, f"cannot open {path} for writing: {e.strerror}") from e

    def _metrics_server(self, cfg: Config) -> MetricsServer | None:
        option = ctx.options.authgw_metrics
        where = "authgw_metrics" if option else "metrics"
        address = cfg.metrics
        if option:
            try:
                host, port = routing.parse_host_port(option)
            except ValueError as e:
                raise ConfigError(where, f"{e} (expected host:port)") from e
            if port is None:
                raise ConfigError(where, f"{option!r} has no port (expected host:port)")
            address = (host, port)
        if address is None:
            return None
        if self._server is not None and self._server.address == address:
            return self._server
        try:
            return MetricsServer(address[0], address[1], self.metrics, self.status)
        except OSError as e:
            raise ConfigError(
                where, f"cannot listen on {address[0]}:{address[1]}: {e.strerror}"
            ) from e

    def _replace_server(self, server: MetricsServer | None) -> None:
        old, self._server = self._server, server
        if old is not None:
            self._spawn(old.close())
        if server is not None:
            self._spawn(server.start())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_watching(self, path: Path, stamp: bytes | None) -> None:
        """Poll the config file (once a second; it is small) and reload when it changes."""
        if self._watcher is not None:
            self._watcher.cancel()
        try:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(path, stamp))
        except RuntimeError:
            self._watcher = None  # no event loop yet: `running` starts it

    async def _watch(self, path: Path, stamp: bytes | None) -> None:
        while True:
            await asyncio.sleep(self._watch_interval)
            now = _stamp(path)
            if now != stamp:
                stamp = now
                self._reload("the config file changed")

    def _reload(self, why: str) -> bool:
        path = ctx.options.authgw_config
        if not path:
            return False
        try:
            self._apply(configmod.load(path))
        except ConfigError as e:
            logger.error(
                "authgw: %s: the new config is invalid; the running config stays: %s", why, e
            )
            return False
        logger.info("authgw: reloaded %s (%s)", path, why)
        return True

    def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._server is not None:
            self._replace_server(None)
        if self._rt is not None and self._rt.flowlog is not None:
            self._rt.flowlog.close()
        self._rt = None

    def done(self) -> None:
        self._shutdown()

    # -- commands --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status document of /status (fingerprints and expiries, never secrets)."""
        rt = self._rt
        if rt is None:
            return {"routes": [], "tokens": [], "note": "authgw_config is not set"}
        return status_document(
            rt.config, rt.sources, rt.verifiers, rt.cache, rt.last_errors, self._clock()
        )

    @_command("authgw.status")
    def status_command(self) -> str:
        """The gateway's routes, cached tokens and last errors, as JSON."""
        return json.dumps(self.status(), indent=2)

    @_command("authgw.flush")
    def flush(self) -> None:
        """Drop every cached token; the next request for each fetches a fresh one."""
        if self._rt is not None:
            logger.info("authgw: flushed %d cached token(s)", self._rt.cache.clear())

    @_command("authgw.reload")
    def reload(self) -> None:
        """Re-read the config file now; an invalid one is refused and the running one stays."""
        if not ctx.options.authgw_config:
            raise exceptions.CommandError("authgw_config is not set")
        if not self._reload("authgw.reload"):
            raise exceptions.CommandError("the config is invalid; see the log")

    # -- hooks -----------------------------------------------------------------

    # The two request hooks are plain functions that return a coroutine only when they
    # must wait (a cache miss, a verify route): mitmproxy awaits a hook's result only if
    # it is awaitable, and scheduling a coroutine per hook per request is measurable.

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        # Decide here, not in `request`: mitmproxy sends a streamed request (stream_large_bodies)
        # upstream before `request` fires, and it may switch streaming on after this hook.
        return self._decide(flow)

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        state = self._flows.get(flow)
        pending = None
        if state is None:
            pending = self._decide(flow)  # a flow requestheaders did not see
        elif flow.response is None and state.target not in (None, _target(flow.request)):
            # Another addon re-targeted the flow after its token was chosen: choose again.
            logger.debug(
                "authgw: %s was re-targeted by another addon; deciding again", state.record.route
            )
            flow.request.headers.fields = state.headers_before
            pending = self._decide(flow, count=False)
        if pending is None:
            self._mark_sent(flow)
            return None
        return self._then_mark_sent(pending, flow)

    async def _then_mark_sent(
        self, pending: Coroutine[Any, Any, None], flow: http.HTTPFlow
    ) -> None:
        await pending
        self._mark_sent(flow)

    def _mark_sent(self, flow: http.HTTPFlow) -> None:
        state = self._flows.get(flow)
        if state is not None:
            state.record.sent_at = time.time()

    def _decide(
        self, flow: http.HTTPFlow, *, count: bool = True
    ) -> Coroutine[Any, Any, None] | None:
        """Route, check and inject; None when done, or a coroutine to await for the rest."""
        rt = self._rt
        if rt is None or flow.response is not None:
            return None
        state = _FlowState(FlowRecord())
        self._flows[flow] = state
        try:
            route = self._route(rt, flow, state)
            if route is not None and route.verify is not None:
                return self._decide_later(rt, flow, state, route, count)
            if route is not None and route.token is not None:
                plan = self._token_plan(rt, flow.request, route, state.record)
                if plan is not None:
                    started = time.perf_counter()
                    token = rt.cache.peek(plan[0], plan[1])
                    if token is None:
                        return self._decide_later(rt, flow, state, route, count, plan)
                    state.record.token_ms = (time.perf_counter() - started) * 1000
                    self._inject(rt, flow.request, state, route, plan[0], token)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            self._failed(rt, flow, state, e)
        self._decided(flow, state, count)
        return None

    async def _decide_later(
        self,
        rt: _Runtime,
        flow: http.HTTPFlow,
        state: _FlowState,
        route: Route,
        count: bool,
        plan: tuple[CacheKey, Fetcher] | None = None,
    ) -> None:
        """The part of a decision that waits: verifying the client, fetching a token."""
        try:
            if plan is None:
                if route.verify is not None:
                    await self._verify_inbound(rt, route, flow.request, state.record)
                if route.token is not None:
                    plan = self._token_plan(rt, flow.request, route, state.record)
            if plan is not None:
                started = time.perf_counter()
                try:
                    token = await rt.cache.get(plan[0], plan[1])
                finally:
                    state.record.token_ms = (time.perf_counter() - started) * 1000
                self._inject(rt, flow.request, state, route, plan[0], token)
        except MissingSecret as e:
            if not self._optional_missing(route, e):
                self._failed(rt, flow, state, e)
        except Exception as e:  # noqa: BLE001 - fail closed, whatever went wrong
            self._failed(rt, flow, state, e)
        self._decided(flow, state, count)

    def _failed(self, rt: _Runtime, flow: http.HTTPFlow, state: _FlowState, e: Exception) -> None:
        """Answer the request here: 400/401/403 as decided, 502 for anything else."""
        if isinstance(e, _Answered):
            state.record.action = e.action
            _answer(flow, e.status, e.body, e.headers)
            return
        if not isinstance(e, TokenUnavailable):
            logger.error(
                "authgw: internal error on %s (%s); answered 502",
                state.record.route or "request",
                type(e).__name__,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            e = TokenUnavailable("internal", type(e).__name__)
        self._token_unavailable(rt, flow, state.record, e)

    def _decided(self, flow: http.HTTPFlow, state: _FlowState, count: bool) -> None:
        if count:
            self.metrics.child(
                self.metrics.requests, state.record.route or NO_ROUTE, state.record.action
            ).inc()
        if flow.response is not None:
            if _can_answer(flow):
                flow.request.stream = False  # answered here: the body is read and dropped
            else:
                logger.info(
                    "authgw: closing the connection instead of answering %d: mitmproxy cannot "
                    "answer a request whose body it streams (stream_large_bodies)",
                    flow.response.status_code,
                )
                flow.response = None
                flow.kill()  # type: ignore[no-untyped-call]

    def _route(self, rt: _Runtime, flow: http.HTTPFlow, state: _FlowState) -> Route | None:
        """The route for the request's (re-targeted) host; raises _Answered for 400/403."""
        req, cfg, record = flow.request, rt.config, state.record
        if cfg.upstream_header and cfg.upstream_header in req.headers:
            _retarget(req, cfg, record)
        state.target, state.headers_before = _target(req), req.headers.fields
        route = routing.match(cfg.routes, req.host, req.port)
        if route is None:
            if cfg.unmatched == "reject":
                raise _Answered(403, "no route for host", "rejected")
            return None
        record.route, state.route = route.name, route
        return route

    def _token_plan(
        self, rt: _Runtime, req: http.Request, route: Route, record: FlowRecord
    ) -> tuple[CacheKey, Fetcher] | None:
        """The cache key and fetcher for the route's token; None: forward without one."""
        assert route.token is not None
        if req.scheme == "http" and not route.allow_http and not routing.is_loopback(req.host):
            raise InsecureUpstream(
                f"route {route.name}: refusing to send a token over plain http to "
                f"{req.host} (set allow_http: true to allow)"
            )
        audience = routing.audience_for(route.token, req.scheme, req.host)
        source = rt.sources[route.name]
        record.token_source = source.kind
        record.audience = audience
        try:
            params = source.cache_params()
        except MissingSecret as e:
            if self._optional_missing(route, e):
                return None
            raise
        return CacheKey(route.name, audience, params), partial(source.fetch, audience)

    def _optional_missing(self, route: Route, error: MissingSecret) -> bool:
        """True (and a warning, once) if the route's secret is optional: forward as is."""
        if not getattr(route.token, "optional", False):
            return False
        if route.name not in self._warned_optional:
            self._warned_optional.add(route.name)
            logger.warning(
                "authgw: route %s: %s; optional, forwarding without a token", route.name, error
            )
        return True

    def _inject(
        self,
        rt: _Runtime,
        req: http.Request,
        state: _FlowState,
        route: Route,
        key: CacheKey,
        token: Token,
    ) -> None:
        record = state.record
        state.key, state.token = key, token
        record.kid = token.kid
        record.token_expires_in = token.seconds_left(self._clock())
        _rewrite_headers(req.headers, route, token, record)
        record.action = "injected"
        rt.last_errors.pop(route.name, None)

    async def _verify_inbound(
        self, rt: _Runtime, route: Route, req: http.Request, record: FlowRecord
    ) -> None:
        """Check the client's own token (verify routes); in enforce mode, a bad one is a 401."""
        assert route.verify is not None
        values = req.headers.get_all(route.header)
        token = _split_prefix(values[0], route.prefix)[1] if len(values) == 1 else ""
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
            return
        self._warn_limited(
            (route.name, f"verify:{verdict.reason}"),
            "authgw: route %s: client token %s: %s (%s)",
            route.name,
            verdict.reason,
            verdict.detail,
            "rejected with 401" if route.verify.enforce else "observe mode, forwarded",
        )
        if route.verify.enforce:
            raise _Answered(
                401,
                f"token rejected ({verdict.reason}): {verdict.detail}",
                "rejected",
                {
                    "WWW-Authenticate": f'Bearer error="invalid_token", '
                    f'error_description="{verdict.reason}"'
                },
            )

    def _warn_limited(self, key: tuple[str, str], message: str, *args: object) -> None:
        """``message`` at warning level once a minute per key, at debug in between."""
        now = time.monotonic()
        if now - self._warned_at.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned_at[key] = now
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)

    def _token_unavailable(
        self, rt: _Runtime, flow: http.HTTPFlow, record: FlowRecord, error: TokenUnavailable
    ) -> None:
        record.action = "token_unavailable"
        record.error_class = error.error_class
        route = record.route or NO_ROUTE
        rt.last_errors[route] = {
            "error_class": error.error_class,
            "message": str(error),
            "at": self._clock(),
        }
        self._warn_limited(
            (route, error.error_class),
            "authgw: route %s: token unavailable (%s): %s; answering 502",
            route,
            error.error_class,
            error,
        )
        _answer(
            flow,
            502,
            f"token unavailable (route {route}: {error.error_class})",
            {"X-Authgw-Error": error.error_class},
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._redact(flow)

    def _redact(self, flow: http.HTTPFlow) -> None:
        """Once the upstream has the request (or it was answered here), keep only
        fingerprints of the credentials in a routed flow: the injected token, and the
        client's own token (checked on verify routes, or moved by ``inbound: keep-as:``).

        mitmproxy's own output (``-v``), saved flows (``-w``) and mitmweb show the flow
        after this, and they must not show a token.
        """
        state = self._flows.get(flow)
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
                headers.set_all(name, [_redacted(v, route.prefix) for v in headers.get_all(name)])

    def response(self, flow: http.HTTPFlow) -> None:
        self._redact(flow)
        state, rt = self._flows.get(flow), self._rt
        if state is None or rt is None:
            return
        status = flow.response.status_code if flow.response else None
        if status in (401, 403) and state.record.action == "injected":
            self._upstream_rejected(rt, flow, state, status)
        self._finish(rt, flow, state, status)

    def error(self, flow: http.HTTPFlow) -> None:
        self._redact(flow)
        state, rt = self._flows.get(flow), self._rt
        if state is not None and rt is not None:
            self._finish(rt, flow, state, None)

    def _upstream_rejected(
        self, rt: _Runtime, flow: http.HTTPFlow, state: _FlowState, status: int
    ) -> None:
        token = state.token
        self.metrics.auth_rejections.labels(state.record.route, str(status)).inc()
        if state.key is not None:
            rt.cache.drop(state.key)
        left = token.seconds_left(self._clock()) if token else None
        challenge = flow.response.headers.get("WWW-Authenticate", "") if flow.response else ""
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

    def _finish(
        self, rt: _Runtime, flow: http.HTTPFlow, state: _FlowState, status: int | None
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
                self.metrics.child(
                    self.metrics.upstream_duration, record.route or NO_ROUTE, error_type
                ).observe(upstream_ms / 1000)
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


def _can_answer(flow: http.HTTPFlow) -> bool:
    """False where mitmproxy would stream the request body, which it cannot do with a response."""
    if not getattr(ctx.options, "stream_large_bodies", None):
        return True
    if flow.request.stream:
        return False
    try:
        size = expected_http_body_size(flow.request)
    except ValueError:
        return False
    return size is not None and size >= 0


def _stamp(path: Path) -> bytes | None:
    """The config file's content digest: mtimes can tie when a file is rewritten quickly."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


def _split_prefix(value: str, prefix: str) -> tuple[str, str]:
    """(the prefix as sent, the token) of a credential header; the prefix matches in any
    case and with any spacing (``bearer  x``), and may be absent."""
    word = prefix.strip()
    head = value.lstrip()
    if word and head[: len(word)].lower() == word.lower():
        token = head[len(word) :]
        return head[: len(head) - len(token.lstrip())], token.strip()
    return "", value.strip()


def _redacted(value: str, prefix: str) -> str:
    """``Bearer <authgw redacted sha256:...>`` for ``Bearer <token>``."""
    sent, token = _split_prefix(value, prefix)
    return f"{sent}<authgw redacted {fingerprint(token)}>"


def _target(req: http.Request) -> tuple[str, str, int]:
    return req.scheme, req.host, req.port


def _answer(
    flow: http.HTTPFlow, status: int, body: str, headers: dict[str, str] | None = None
) -> None:
    flow.response = http.Response.make(
        status,
        (body + "\n").encode(),
        {"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
    )


def _retarget(req: http.Request, cfg: Config, record: FlowRecord) -> None:
    """Point the request at the host its upstream header names, if a route covers it."""
    name = cfg.upstream_header
    assert name is not None
    values = req.headers.get_all(name)
    del req.headers[name]
    record.headers_removed.append(name)
    if len(values) != 1:
        raise _Answered(400, f"bad {name}: sent {len(values)} times", "rejected")
    try:
        host, port = routing.parse_upstream(values[0])
    except ValueError as e:
        raise _Answered(400, f"bad {name}: {e}", "rejected") from e
    port = port or (443 if cfg.upstream_scheme == "https" else 80)
    if routing.match(cfg.routes, host, port) is None:
        raise _Answered(403, "no route for host", "rejected")
    req.scheme = cfg.upstream_scheme
    req.host = host
    req.port = port


def _rewrite_headers(headers: http.Headers, route: Route, token: Token, record: FlowRecord) -> None:
    inbound: Sequence[str] = headers.get_all(route.header)
    if route.keep_inbound_as is not None:
        # The client's own copy of that header is dropped: only the moved value may be there.
        if route.keep_inbound_as in headers:
            del headers[route.keep_inbound_as]
        if inbound:
            headers.set_all(route.keep_inbound_as, list(inbound))
            record.headers_set.append(route.keep_inbound_as)
    elif inbound:
        record.headers_removed.append(route.header)
    headers[route.header] = route.prefix + token.value
    record.headers_set.append(route.header)
