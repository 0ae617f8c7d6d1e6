"""AuthGateway: the mitmproxy hooks, and nothing else.

``requestheaders``/``request`` hand the flow to ``decision.Decider``; ``response`` and
``error`` hand it to ``redaction`` and ``outcome``; ``configure`` and the
commands hand options to ``runtime.RuntimeManager``.

The decision is made in ``requestheaders``, because mitmproxy sends a streamed request
body (``stream_large_bodies``) upstream before ``request`` fires; ``request`` decides
again if another addon re-targeted the flow in between. The two request hooks return a
coroutine only when they must wait (a cache miss, a verify route): mitmproxy awaits a
hook's result only if it is awaitable, and a coroutine per hook per request costs.

There is no ``responseheaders`` hook: every hook is called on every flow, and redaction
has nothing to do before ``response`` (or ``error``), which also fires for a streamed
response, before ``-w`` saves the flow.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Optional, TypeVar, cast

from mitmproxy import command, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer

from authgw import lastword, optionchecks, retry, scrub
from authgw.binding import target
from authgw.config import Config, ConfigError
from authgw.decision import Decider
from authgw.flowlog import FlowRecord
from authgw.flowstate import FlowState
from authgw.guard import ConnectionGuard, Refused
from authgw.logs import internal_error
from authgw.metrics import Metrics
from authgw.outcome import Outcomes
from authgw.redaction import redact
from authgw.runtime import Options, Runtime, RuntimeManager
from authgw.steps import answer

logger = logging.getLogger(__name__)

# mitmproxy's option type checker wants typing.Optional, which mypy does not call a type.
_OPTIONAL_STR: Any = Optional[str]  # noqa: UP045
OPTIONS = ("authgw_config", "authgw_flowlog", "authgw_metrics")

_F = TypeVar("_F", bound=Callable[..., Any])


def start_error(error: ConfigError) -> str:
    """The one line a config error is: under the option it is about (authgw_metrics,
    authgw_flowlog), else under authgw_config with the field path in the file."""
    if error.path in OPTIONS:
        return str(error)
    return f"authgw_config: {error}"


def _command(name: str) -> Callable[[_F], _F]:
    """mitmproxy's command decorator, with the type it has."""
    return cast(Callable[[_F], _F], command.command(name))


class AuthGateway:
    def __init__(
        self, *, clock: Callable[[], float] = time.time, watch_interval: float = 1.0
    ) -> None:
        self.metrics = Metrics()
        self.guard = ConnectionGuard(self.metrics)
        self.manager = RuntimeManager(self.metrics, clock=clock, watch_interval=watch_interval)
        self.manager.installed = self._installed
        self.decider = Decider(self.metrics, clock=clock)
        self.outcomes = Outcomes(self.metrics, clock=clock)
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, FlowState] = (
            weakref.WeakKeyDictionary()
        )
        self._hinted = False
        self._last_word = lastword.LastWord(self.last_word, self.streamed)
        self._last_word_in_chain = False
        self._running = False  # mitmproxy's `running` has fired: start errors are over

    @property
    def runtime(self) -> Runtime | None:
        return self.manager.current

    def _config(self) -> Config | None:
        return self.manager.current.config if self.manager.current else None

    # -- options and commands ----------------------------------------------------

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
        self._arrange_last_word()  # options such as map_remote, and scripts, change it
        if "stream_large_bodies" in updated:
            self.decider.apply.streaming = bool(getattr(ctx.options, "stream_large_bodies", None))
        self._arrange_streams()
        if "ssl_insecure" in updated:
            self.decider.tls_unverified = bool(getattr(ctx.options, "ssl_insecure", False))
            optionchecks.insecure_tls(self._config(), self.decider.tls_unverified)
        if not updated & set(OPTIONS):
            return
        o = ctx.options
        if not o.authgw_config:
            self.manager.shutdown()
            if not self._hinted:
                self._hinted = True
                logger.info("authgw: no config; set authgw_config=gateway.yaml to inject tokens")
            return
        options = Options(
            o.authgw_config,
            o.authgw_flowlog,
            o.authgw_metrics,
            bool(getattr(o, "map_remote", None)),
        )
        try:
            self.manager.load(options)
            if self._starting() and self.manager.current is not None:
                optionchecks.principals(self.manager.current.config, ctx.options)
        except ConfigError as e:
            message = start_error(e)
            if self._starting():
                # One line and exit 2, before mitmproxy listens: an OptionsError here would
                # be logged with its traceback after "proxy listening" (decisions.md,
                # "A config error at start").
                print(message, file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            raise exceptions.OptionsError(message) from None  # type: ignore[no-untyped-call]
        optionchecks.options(ctx.options, self._config(), self.decider.tls_unverified)

    def _installed(self, cfg: Config) -> None:
        if self._running:  # relays opened under the config before: held to this one
            self.guard.reloaded(cfg)
            try:
                optionchecks.principals(cfg, ctx.options)
            except ConfigError as e:  # in place already: said, and those routes match nothing
                logger.error("authgw: %s", e)

    def _starting(self) -> bool:
        """mitmproxy is starting: neither this addon nor the script loader has seen
        ``running`` (a script reloaded while mitmproxy runs is a new instance, so the
        loader's flag tells). False under mitmproxy.test.taddons (no script loader)."""
        if self._running:
            return False
        master = getattr(ctx, "master", None)
        loader = master.addons.get("scriptloader") if master is not None else None
        return loader is not None and getattr(loader, "is_running", None) is False

    def _arrange_last_word(self, *, stop: bool = False) -> None:
        """``lastword.LastWord`` at the end of mitmproxy's chain while an addon after this
        one may change a request (moved back to the end if an addon joined after it),
        and out of it otherwise (or when ``stop``)."""
        master = getattr(ctx, "master", None)
        if master is None:
            return
        chain = master.addons.chain
        needed = not stop and lastword.needed(chain, self, ctx.options)
        present = master.addons.get(lastword.NAME)
        if present is not None and (
            not needed or present is not self._last_word or chain[-1] is not present
        ):
            master.addons.remove(present)  # not needed, a reloaded script's, or not last
            present = None
        if needed and present is None:
            master.addons.add(self._last_word)
        self._last_word_in_chain = needed

    def _arrange_streams(self) -> None:
        """``responseheaders`` is a hook of this addon only while a response may be
        streamed before ``response`` fires: with stream_large_bodies, or with an addon
        before this one that may set a response's stream (``lastword.LastWord`` sees to
        those after it). A hook costs every flow, so it is not there otherwise."""
        master = getattr(ctx, "master", None)
        chain = master.addons.chain if master is not None else []
        if self.decider.apply.streaming or lastword.streams_before(chain, self):
            self.responseheaders = self._responseheaders
        else:
            self.__dict__.pop("responseheaders", None)

    def running(self) -> None:
        self._running = True
        self.manager.started = True  # a config set from now on is built off the loop
        optionchecks.listening(ctx.options)
        self._arrange_last_word()  # scripts loaded after this one are in the chain now
        self._arrange_streams()
        if self.manager.options.config and not self.manager.watching:
            self.manager.start_watching_config()

    def done(self) -> None:
        # Flows still in flight are written by -w at shutdown (Save runs after us).
        for flow, state in list(self._flows.items()):
            redact(flow, state)
        self._arrange_last_word(stop=True)
        self.manager.shutdown()

    def status(self) -> dict[str, Any]:
        """The status document of /status (fingerprints and expiries, never secrets)."""
        return self.manager.status()

    @_command("authgw.status")
    def status_command(self) -> str:
        """The gateway's routes, cached tokens and last errors, as JSON."""
        return json.dumps(self.status(), indent=2)

    @_command("authgw.flush")
    def flush(self) -> None:
        """Drop every cached token; the next request for each fetches a fresh one."""
        if self.runtime is not None:
            logger.info("authgw: flushed %d cached token(s)", self.runtime.cache.clear())

    @_command("authgw.reload")
    def reload(self) -> None:
        """Re-read the config file now; an invalid one is refused and the running one stays
        (a valid one is built off the event loop and swapped in when ready)."""
        if not ctx.options.authgw_config:
            raise exceptions.CommandError("authgw_config is not set")
        try:
            self.manager.reload_soon("authgw.reload")
        except ConfigError as e:
            raise exceptions.CommandError(f"the config is invalid: {e}") from None

    # -- hooks -------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        rt = self.manager.current
        if rt is not None:
            try:
                self.guard.connect(rt.config, flow)
            except Exception:  # noqa: BLE001 - fail closed: no tunnel on a bug
                internal_error(logger, "authgw: internal error on CONNECT; answered 502")
                answer(flow, 502, "token unavailable (internal)", {"X-Authgw-Error": "internal"})

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        rt = self.manager.current
        if rt is not None:
            try:
                # Script addons run before mitmproxy's own NextLayer addon: let it choose
                # now (it leaves a layer another addon has set alone), then look.
                addons: Any = ctx.master.addons  # typed in mitmproxy 12, not in 11
                core = addons.get("nextlayer")
                if nextlayer.layer is None and core is not None:
                    core.next_layer(nextlayer)
                self.guard.next_layer(rt.config, nextlayer)
            except Exception:  # noqa: BLE001 - fail closed: close rather than relay
                internal_error(logger, "authgw: internal error choosing a layer; closed")
                nextlayer.layer = Refused(nextlayer.context)

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        return self._decide(flow)

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        state = self._flows.get(flow)
        pending = None
        if state is None:
            pending = self._decide(flow)  # a flow requestheaders did not see
            state = self._flows.get(flow)
        elif flow.response is None and state.target not in (None, target(flow.request)):
            # Another addon re-targeted the flow after its token was chosen: choose again.
            logger.debug(
                "authgw: %s was re-targeted by another addon; deciding again", state.record.route
            )
            flow.request.headers.fields = state.headers_before
            pending = self._decide(flow, count=False)
            state = self._flows.get(flow)
        if state is None:
            return None
        if state.route is not None and state.route.retry_on_401:
            state.request_before = flow.request.copy()  # before map_remote and modify_*
        if pending is None:
            state.record.sent_at = time.time()
            rt = self.manager.current
            if not self._last_word_in_chain and rt is not None:
                self.decider.last_word(rt, flow, state)  # no later addon changes requests
            return None
        return self._then_mark_sent(pending, flow, state)

    def _decide(
        self, flow: http.HTTPFlow, *, count: bool = True
    ) -> Coroutine[Any, Any, None] | None:
        rt = self.manager.current
        if rt is None or flow.response is not None:
            return None
        state = self._flows[flow] = FlowState(FlowRecord())
        count = count and not retry.is_copy(flow)  # a resend is counted as a retry instead
        return self.decider.decide(rt, flow, state, count=count)

    async def _then_mark_sent(
        self, pending: Coroutine[Any, Any, None], flow: http.HTTPFlow, state: FlowState
    ) -> None:
        await pending
        state.record.sent_at = time.time()
        rt = self.manager.current
        if not self._last_word_in_chain and rt is not None:
            self.decider.last_word(rt, flow, state)

    def last_word(self, flow: http.HTTPFlow) -> None:
        """The last word on a flow (``Decider.last_word``), from ``lastword.LastWord`` at
        the end of mitmproxy's chain, or from ``request`` when no later addon may change
        a request."""
        state, rt = self._flows.get(flow), self.manager.current
        if state is not None and rt is not None:
            self.decider.last_word(rt, flow, state)

    def _responseheaders(self, flow: http.HTTPFlow) -> None:
        """mitmproxy's ``responseheaders``, bound only while needed (``_arrange_streams``)."""
        state = self._flows.get(flow)
        if state is not None:
            scrub.on_headers(flow, state, streaming=self.decider.apply.streaming)

    def streamed(self, flow: http.HTTPFlow) -> None:
        """A response an addon after this one chose to stream (from ``lastword.LastWord``
        at the end of mitmproxy's chain): its body scrubbed on its way."""
        state = self._flows.get(flow)
        if state is not None and flow.response is not None and flow.response.stream:
            scrub.on_headers(flow, state, streaming=False)

    def response(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        state, rt = self._flows.get(flow), self.manager.current
        redact(flow, state)
        if state is None:
            return None
        scrub.on_response(flow, state)
        if rt is None:
            return None
        if retry.is_copy(flow):
            self.outcomes.rejections(rt, flow, state)  # its record is the original's
            return None
        if retry.wanted(flow, state):
            return self._retry(rt, flow, state)
        self.outcomes.response(rt, flow, state)
        return None

    async def _retry(self, rt: Runtime, flow: http.HTTPFlow, state: FlowState) -> None:
        """Resend once with a fresh token; the client gets the second answer."""
        self.outcomes.rejections(rt, flow, state)  # drops the token the upstream refused
        copy = None
        try:
            copy = retry.copy_of(flow, state)
            source = rt.sources.get(state.record.route or "")
            if source is not None:
                await source.settle()  # a kept secret being re-read: sign with its new value
            if flow.client_conn.timestamp_end is None:  # the client is still there
                await retry.resend(copy)
        except Exception:  # noqa: BLE001 - the first answer stands
            internal_error(logger, "authgw: route %s: retry failed", state.record.route)
        if copy is not None:
            self.outcomes.retried(flow, state, copy, self._flows.get(copy))
        self.outcomes.finish(rt, flow, state, flow.response.status_code if flow.response else None)

    def error(self, flow: http.HTTPFlow) -> None:
        state, rt = self._flows.get(flow), self.manager.current
        redact(flow, state)
        if state is not None and rt is not None and not retry.is_copy(flow):
            self.outcomes.finish(rt, flow, state, None)  # a resend's record is the original's
