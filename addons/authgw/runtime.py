"""The gateway's runtime: what one config file builds, and what keeps it current.

``Runtime`` is everything the request decision reads, built whole from one config and
swapped whole on reload, so a request never sees half of two configs.
``RuntimeManager`` builds it, polls the config file and swaps in a valid new version
(an invalid one is logged and the running one stays), and owns the metrics server's
lifecycle. Nothing here touches ``mitmproxy.ctx``: the addon hands in the options.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authgw import config as configmod
from authgw import routing, sources
from authgw.cache import TokenCache
from authgw.config import Config, ConfigError
from authgw.flowlog import FlowLog
from authgw.kinds import kind_of
from authgw.metrics import NO_ROUTE, Metrics, status_document
from authgw.statusport import MetricsServer
from authgw.verify import RouteVerifier

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


def config_stamp(path: Path) -> bytes | None:
    """The config file's content digest: mtimes can tie when a file is rewritten quickly."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


class RuntimeManager:
    """Builds the runtime, reloads it when the config file changes, runs the metrics port."""

    def __init__(
        self, metrics: Metrics, *, clock: Callable[[], float], watch_interval: float = 1.0
    ) -> None:
        self.metrics = metrics
        self.current: Runtime | None = None
        self.options = Options()
        self._clock = clock
        self._watch_interval = watch_interval
        self._server: MetricsServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.secrets = sources.SecretStore()  # remote secrets, kept across reloads

    # -- loading ---------------------------------------------------------------

    def load(self, options: Options) -> None:
        """Load ``options.config`` and watch it; raises ConfigError, keeping what runs."""
        assert options.config
        path = Path(options.config)
        stamp = config_stamp(path)  # before reading, so a change while we read is seen
        self.apply(configmod.load(options.config), options)
        self.start_watching(path, stamp)

    def reload(self, why: str) -> bool:
        """Re-read the config file; False (and the reason logged) if the new one is invalid."""
        path = self.options.config
        if not path:
            return False
        try:
            self.apply(configmod.load(path))
        except ConfigError as e:
            logger.error(
                "authgw: %s: the new config is invalid; the running config stays: %s", why, e
            )
            return False
        logger.info("authgw: reloaded %s (%s)", path, why)
        return True

    def apply(self, cfg: Config, options: Options | None = None) -> None:
        """Build everything for ``cfg`` (with ``options``, else the running ones) and swap
        it in whole, or raise ConfigError and keep what runs now."""
        options = options or self.options
        old = self.current
        for warning in cfg.warnings:
            logger.warning("authgw: %s", warning)
        built, notes = sources.build_all(cfg, clock=self._clock, secrets=self.secrets)
        flowlog = self._open_flowlog(cfg, old, options.flowlog)
        try:
            server = self._metrics_server(cfg, options.metrics)
        except ConfigError:
            if flowlog is not None and (old is None or flowlog is not old.flowlog):
                flowlog.close()
            raise
        for note in notes:
            logger.warning("authgw: %s", note)
        self.options = options
        self.current = self._assemble(cfg, built, flowlog, old)
        self.metrics.bind({name: src.kind for name, src in built.items()}, self.current.cache)
        if old is not None and old.flowlog is not None and old.flowlog is not flowlog:
            old.flowlog.close()
        if server is not self._server:
            self._replace_server(server)
        if self.options.map_remote:
            logger.warning(
                "authgw: map_remote runs after authgw chooses a token: a request it sends "
                "elsewhere is answered 421 (host_mismatch) instead of carrying the token there"
            )
        logger.info("authgw: %d route(s) from %s", len(cfg.routes), self.options.config)

    def _assemble(
        self,
        cfg: Config,
        built: dict[str, sources.Source],
        flowlog: FlowLog | None,
        old: Runtime | None,
    ) -> Runtime:
        """The new runtime; what a reload left unchanged keeps its cached tokens, its
        verifier (and so its fetched JWKS) and its last error."""
        if old is not None and old.config.cache == cfg.cache:
            cache = old.cache
            old_routes = {r.name: r for r in old.config.routes}
            changed = [r.name for r in cfg.routes if old_routes.get(r.name) != r]
            for name in [*changed, *(set(old_routes) - {r.name for r in cfg.routes})]:
                cache.drop_route(name)
        else:
            cache = TokenCache(cfg.cache, clock=self._clock, observer=self.metrics)
        kept = {r.name for r in old.config.routes if r in cfg.routes} if old else set()
        verifiers = {
            r.name: old.verifiers[r.name]
            if old is not None and r.name in kept
            else RouteVerifier(r.name, r.verify, clock=self._clock, secrets=self.secrets)
            for r in cfg.routes
            if r.verify is not None
        }
        last_errors = {n: e for n, e in old.last_errors.items() if n in kept} if old else {}
        return Runtime(cfg, built, cache, verifiers, flowlog, last_errors)

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
            return MetricsServer(address[0], address[1], self.metrics, self.status, self.readiness)
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

    def status(self) -> dict[str, Any]:
        """The status document of /status (fingerprints and expiries, never secrets)."""
        rt = self.current
        if rt is None:
            return {"routes": [], "tokens": [], "note": "authgw_config is not set"}
        return status_document(
            rt.config, rt.sources, rt.verifiers, rt.cache, rt.last_errors, self._clock()
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the /readyz document): a config is loaded and no route is broken. A
        route is broken when its last fetch failed and it holds no usable token, or its
        secret (kept elsewhere) has never been read."""
        rt = self.current
        if rt is None:
            return False, {"ready": False, "reason": "no config loaded"}
        usable = {key.route for key, _ in rt.cache.items()}
        broken = {
            name: error["error_class"]
            for name, error in rt.last_errors.items()
            if name != NO_ROUTE and name not in usable
        }
        for route in rt.config.routes:
            source = rt.sources.get(route.name)
            secret = getattr(source, "secret", None)
            optional = route.token is not None and kind_of(route.token).optional(route.token)
            if secret is not None and not optional and secret.fingerprint_or_none() is None:
                broken.setdefault(route.name, "missing_secret")
        doc = {
            "ready": not broken,
            "broken": [{"route": n, "error_class": c} for n, c in sorted(broken.items())],
        }
        return not broken, doc

    # -- the reload watcher ------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watcher is not None

    def start_watching_config(self) -> None:
        """Watch the loaded config file from its content now (at start, once a loop runs)."""
        assert self.options.config
        path = Path(self.options.config)
        self.start_watching(path, config_stamp(path))

    def start_watching(self, path: Path, stamp: bytes | None) -> None:
        """Poll the config file (once a second; it is small) and reload when it changes."""
        if self._watcher is not None:
            self._watcher.cancel()
        try:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(path, stamp))
        except RuntimeError:
            self._watcher = None  # no event loop yet: the addon's `running` starts it

    async def _watch(self, path: Path, stamp: bytes | None) -> None:
        while True:
            await asyncio.sleep(self._watch_interval)
            now = config_stamp(path)
            if now != stamp:
                stamp = now
                self.reload("the config file changed")

    def shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._server is not None:
            self._replace_server(None)
        if self.current is not None and self.current.flowlog is not None:
            self.current.flowlog.close()
        self.current = None
        self.secrets.close()  # no secret is read, or logs, after the runtime is gone
