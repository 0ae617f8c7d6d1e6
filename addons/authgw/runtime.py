"""The gateway's runtime: what one config file builds, and what keeps it current.

``Runtime`` is everything the request decision reads, built whole from one config and
swapped whole on reload, so a request never sees half of two configs.
``RuntimeManager`` builds it, polls the config file and swaps in a valid new version
(an invalid one is logged and the running one stays), and owns the metrics server's
lifecycle. Nothing here touches ``mitmproxy.ctx``: the addon hands in the options.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authgw import config as configmod
from authgw import offloop, routing, sources
from authgw.cache import TokenCache
from authgw.config import Config, ConfigError
from authgw.flowlog import FlowLog
from authgw.logs import internal_error
from authgw.metrics import Metrics, readiness_document, status_document
from authgw.statusport import MetricsServer
from authgw.verify import RouteVerifier
from authgw.watcher import ConfigWatcher, config_stamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """The mitmproxy options the runtime is built from."""

    config: str | None = None
    flowlog: str | None = None
    metrics: str | None = None
    map_remote: bool = False


@dataclass(frozen=True)
class Runtime:
    """Everything built from one config file; swapped whole on reload.

    ``last_errors`` (route -> the last token error) is the one part that changes while
    the runtime serves.
    """

    config: Config
    sources: dict[str, sources.Source]
    cache: TokenCache
    verifiers: dict[str, RouteVerifier] = field(default_factory=dict)
    flowlog: FlowLog | None = None
    last_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: routing.RouteTable = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", routing.RouteTable(self.config.routes))


def _unchanged(old: Runtime | None, cfg: Config) -> set[str]:
    """The routes of ``cfg`` that ``old`` has with the same settings."""
    return {r.name for r in old.config.routes if r in cfg.routes} if old else set()


def _close_all_but(built: Mapping[str, sources.Source], kept: Mapping[str, sources.Source]) -> None:
    """Close each source of ``built`` that ``kept`` does not hold under its name."""
    for name, src in built.items():
        if kept.get(name) is not src:
            sources.close(src)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class _Built:
    """What a config builds before it serves; made off the event loop on a reload."""

    config: Config
    options: Options
    sources: dict[str, sources.Source]
    verifiers: dict[str, RouteVerifier]
    flowlog: FlowLog | None
    server: MetricsServer | None
    notes: list[str]
    kept: set[str]  # routes whose settings the running runtime has as they are


class RuntimeManager:
    """Builds the runtime, reloads it when the config file changes, runs the metrics port.

    It owns what the runtime starts: remote secrets' readers (``secrets``), background
    fetches (the cache), the config watcher, the metrics port and the flow log. A reload
    keeps what did not change and stops what no route uses any more; ``shutdown`` stops
    everything.
    """

    def __init__(
        self, metrics: Metrics, *, clock: Callable[[], float], watch_interval: float = 1.0
    ) -> None:
        self.metrics = metrics
        self.installed: Callable[[Config], None] = lambda cfg: None  # told of each config
        self.current: Runtime | None = None
        self.options = Options()  # those of the runtime that serves
        self._requested = Options()  # the last ones asked for: what a reload builds
        self._clock = clock
        self._server: MetricsServer | None = None
        self._watcher = ConfigWatcher(
            lambda: self.reload("the config file changed"), watch_interval
        )
        self._tasks: set[asyncio.Task[Any]] = set()  # reloads, the metrics port's start
        self._closing: set[asyncio.Task[Any]] = set()  # closing old ports' connections
        self._reloading = asyncio.Lock()  # one build at a time: each sees the last installed
        self._epoch = 0  # +1 on shutdown: a build that started before it is thrown away
        self._building: list[Config] = []  # configs whose reloads are building them
        self.started = False  # mitmproxy runs: a config is built off the loop from now on
        self.secrets = sources.SecretStore()  # remote secrets, kept across reloads

    # -- loading ---------------------------------------------------------------

    def load(self, options: Options) -> None:
        """Load ``options.config`` and watch it; raises ConfigError, keeping what runs.

        While mitmproxy starts, everything is built here, so a bad config stops the start;
        once it runs (``started``), the config is validated here and built off the event
        loop (``reload``), and what runs now serves until the new one is ready."""
        assert options.config
        path = Path(options.config)
        stamp = config_stamp(path)  # before reading, so a change while we read is seen
        cfg = configmod.load(options.config)
        if (self.current is not None or self.started) and _loop_running():
            self._spawn(self.reload("authgw options changed", cfg, options))
        else:
            self.apply(cfg, options)
        self._requested = options
        self._watcher.start(path, stamp)

    def reload_soon(self, why: str) -> None:
        """Validate the config file now (ConfigError if invalid: the running one stays),
        then build it off the event loop and swap it in (``reload``)."""
        assert self._requested.config
        self._spawn(self.reload(why, configmod.load(self._requested.config)))

    async def reload(
        self, why: str, cfg: Config | None = None, options: Options | None = None
    ) -> bool:
        """Re-read the config file (or use ``cfg``) and build it off the event loop; swap
        it in when ready. False (the reason logged) if it is invalid: the running one stays.

        While it builds, its config is in ``_building``, so stopping what no route uses
        (``_release``, run by another reload's end) spares what this build reads."""
        async with self._reloading:
            epoch, options = self._epoch, options or self._requested
            if not options.config:
                return False
            installed = False
            try:
                cfg = cfg or configmod.load(options.config)
                self._building.append(cfg)
                built = await self._build_off_loop(cfg, options)
                if epoch != self._epoch:  # shut down while it was built
                    self._discard(built)
                    return False
                self._install(built)
                installed = True
            except ConfigError as e:
                logger.error(
                    "authgw: %s: the new config is invalid; the running config stays: %s", why, e
                )
                return False
            except Exception:  # noqa: BLE001 - a bug: logged, the running config stays
                internal_error(logger, "authgw: %s: building the new config failed", why)
                return False
            finally:
                if cfg is not None and cfg in self._building:
                    self._building.remove(cfg)
                if not installed:
                    self._release()  # what the build started that nothing uses
            logger.info("authgw: reloaded %s (%s)", options.config, why)
            return True

    async def _build_off_loop(self, cfg: Config, options: Options) -> _Built:
        """``_build`` in its own thread; if the reload is cancelled after the build was
        handed over, what it built is discarded here (before that, by the thread)."""
        future = self._build_in_thread(cfg, options)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._discard(future.result())
            raise

    async def idle(self) -> None:
        """Wait for the reloads under way (and the metrics port's start) to end."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _build_in_thread(self, cfg: Config, options: Options) -> asyncio.Future[_Built]:
        """``_build`` off the event loop (``offloop``); a build nobody waits for any more
        (the reload was cancelled: shutdown) is discarded when it is done."""

        def abandoned(built: _Built | None) -> None:
            if built is not None:
                self._discard(built)
            self._release()  # what it started: no route of a config in use reads it

        return offloop.run_in_thread(
            lambda: self._build(cfg, options), name="authgw-reload", abandoned=abandoned
        )

    def apply(self, cfg: Config, options: Options | None = None) -> None:
        """Build everything for ``cfg`` (with ``options``, else the running ones) here and
        swap it in whole, or raise ConfigError and keep what runs now."""
        try:
            built = self._build(cfg, options or self.options)
        except Exception:
            self._release()  # what the build started
            raise
        self._install(built)

    def _build(self, cfg: Config, options: Options) -> _Built:
        """Everything ``cfg`` needs that may block (remote secrets' first reads, AWS
        credential chains, the flow log, the metrics socket); the running runtime's parts
        for routes that did not change are reused. Runs in a worker thread on a reload:
        it changes nothing the event loop reads."""
        old = self.current
        for warning in cfg.warnings:
            logger.warning("authgw: %s", warning)
        kept = _unchanged(old, cfg)
        keep: dict[str, sources.Source] = {}
        if old is not None and old.config.cache == cfg.cache:  # sources take default_ttl
            keep = {n: src for n, src in old.sources.items() if n in kept}
        built, notes = sources.build_all(cfg, clock=self._clock, secrets=self.secrets, keep=keep)
        verifiers = {
            r.name: old.verifiers[r.name]
            if old is not None and r.name in kept and r.name in old.verifiers
            else RouteVerifier(r.name, r.verify, clock=self._clock, secrets=self.secrets)
            for r in cfg.routes
            if r.verify is not None
        }
        flowlog = self._open_flowlog(cfg, old, options.flowlog)
        try:
            server = self._metrics_server(cfg, options.metrics)
        except ConfigError:
            if flowlog is not None and (old is None or flowlog is not old.flowlog):
                flowlog.close()
            raise
        return _Built(cfg, options, built, verifiers, flowlog, server, notes, kept)

    def _install(self, b: _Built) -> None:
        """Swap ``b`` in (on the event loop), then stop what only the old runtime used."""
        old = self.current
        for note in b.notes:
            logger.warning("authgw: %s", note)
        if old is not None and old.config.cache == b.config.cache:
            cache = old.cache
        else:
            cache = TokenCache(b.config.cache, clock=self._clock, observer=self.metrics)
            if old is not None:
                old.cache.close()
        cache.live({name: src.generation for name, src in b.sources.items()})
        last_errors = {n: e for n, e in old.last_errors.items() if n in b.kept} if old else {}
        self.options = b.options
        self.current = Runtime(b.config, b.sources, cache, b.verifiers, b.flowlog, last_errors)
        self.metrics.bind({name: src.kind for name, src in b.sources.items()}, cache)
        if old is not None and old.flowlog is not None and old.flowlog is not b.flowlog:
            old.flowlog.close()
        if b.server is not self._server:
            self._replace_server(b.server)
        if old is not None:
            _close_all_but(old.sources, b.sources)  # replaced or dropped: stop what they own
        self._release()
        if self.options.map_remote:
            logger.warning(
                "authgw: map_remote runs after authgw chooses a token: a request it sends "
                "elsewhere is answered 421 (host_mismatch) instead of carrying the token there"
            )
        logger.info("authgw: %d route(s) from %s", len(b.config.routes), self.options.config)
        self.installed(b.config)

    def _discard(self, b: _Built) -> None:
        """A build nobody will serve: close what it opened that the runtime does not use."""
        if b.flowlog is not None and b.flowlog is not getattr(self.current, "flowlog", None):
            b.flowlog.close()
        if b.server is not None and b.server is not self._server:
            b.server.stop()
        _close_all_but(b.sources, self.current.sources if self.current else {})
        self._release()

    def _release(self) -> None:
        """Stop the secret readers and clients that neither the running config nor a
        config being built uses."""
        configs = [*self._building, *([self.current.config] if self.current else [])]
        sources.release(configs, self.secrets)

    def _open_flowlog(self, cfg: Config, old: Runtime | None, option: str | None) -> FlowLog | None:
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

    # -- the metrics port --------------------------------------------------------

    def _metrics_server(self, cfg: Config, option: str | None) -> MetricsServer | None:
        where = "authgw_metrics" if option else "metrics"
        address = configmod.listen_address(option, where) if option else cfg.metrics
        if address is None:
            return None
        if self._server is not None and self._server.address == address:
            return self._server
        try:
            return MetricsServer(address[0], address[1], self.metrics, self.status, self.readiness)
        except OSError as e:
            raise ConfigError(
                where, f"cannot listen on {address[0]}:{address[1]}: {e.strerror}"
            ) from e

    def _replace_server(self, server: MetricsServer | None) -> None:
        old, self._server = self._server, server
        if old is not None:
            self._close_server(old)
        if server is not None:
            self._spawn(server.start())

    def _close_server(self, server: MetricsServer) -> None:
        server.stop()  # the port is closed now; its open connections soon
        if _loop_running():
            self._spawn(server.close(), self._closing)

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], owner: set[asyncio.Task[Any]] | None = None
    ) -> None:
        """Run ``coro`` as a task in ``owner`` (the reloads and the port's start by default,
        which ``shutdown`` cancels; ``_closing`` runs to its end)."""
        owner = self._tasks if owner is None else owner
        task = asyncio.get_running_loop().create_task(coro)
        if not task.done():  # an eager task may be done already
            owner.add(task)
            task.add_done_callback(owner.discard)

    def status(self) -> dict[str, Any]:
        """The status document of /status (fingerprints and expiries, never secrets)."""
        rt = self.current
        if rt is None:
            return {"routes": [], "tokens": [], "note": "authgw_config is not set"}
        return status_document(
            rt.config, rt.sources, rt.verifiers, rt.cache, rt.last_errors, self._clock()
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the /readyz document): ``metrics.readiness_document``."""
        rt = self.current
        if rt is None:
            return False, {"ready": False, "reason": "no config loaded"}
        return readiness_document(rt.config, rt.sources, rt.cache, rt.last_errors)

    # -- the reload watcher ------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watcher.watching

    def start_watching_config(self) -> None:
        """Watch the loaded config file from its content now (at start, once a loop runs)."""
        assert self.options.config
        path = Path(self.options.config)
        self._watcher.start(path, config_stamp(path))

    def shutdown(self) -> None:
        """Stop everything the runtime started (unset ``authgw_config``, unload, exit)."""
        self._epoch += 1
        self._requested = Options()
        self._watcher.stop()
        for task in list(self._tasks):
            task.cancel()  # reloads under way, the metrics port's start
        if self._server is not None:
            self._replace_server(None)
        rt, self.current = self.current, None
        if rt is not None:
            rt.cache.close()
            _close_all_but(rt.sources, {})
            if rt.flowlog is not None:
                rt.flowlog.close()
        self._release()  # no secret is read, or logs, after the runtime is gone
