"""What the gateway says about mitmproxy's options: a listener beyond loopback without
``proxyauth``, ``ssl_insecure``, ``proxy_debug``, hosts mitmproxy will not intercept, and
routes with ``principals`` on a proxy without ``proxyauth`` (a config error at start)."""

from __future__ import annotations

import logging
from typing import Any

from authgw import routing
from authgw.config import Config, ConfigError
from authgw.guard import uninterceptable

logger = logging.getLogger("authgw.addon")  # where these lines were always logged


def listening(options: Any) -> None:
    """Said once mitmproxy runs: its listen options are final then."""
    listen = getattr(options, "listen_host", "127.0.0.1")
    if not getattr(options, "proxyauth", None) and not (listen and routing.is_loopback(listen)):
        logger.warning(
            "authgw: the proxy listens on %s without proxyauth: anyone who can reach "
            "its port gets the routes' tokens injected",
            listen or "every interface",
        )


def insecure_tls(cfg: Config | None, tls_unverified: bool) -> None:
    if not tls_unverified or cfg is None:
        return
    routes = [r.name for r in cfg.routes if r.token and not r.allow_insecure_tls]
    if routes:
        logger.warning(
            "authgw: ssl_insecure is on: upstream certificates are not verified, so "
            "route(s) %s send no token to https upstreams (502 insecure_upstream) "
            "unless they set allow_insecure_tls: true",
            ", ".join(routes),
        )


def options(options: Any, cfg: Config | None, tls_unverified: bool) -> None:
    if getattr(options, "proxy_debug", False):
        logger.warning(
            "authgw: proxy_debug is on: mitmproxy logs the raw bytes it relays, and so "
            "the tokens authgw injects; do not share that output"
        )
    insecure_tls(cfg, tls_unverified)
    if cfg is None:
        return
    for option in ("ignore_hosts", "tcp_hosts"):
        for route in uninterceptable(cfg, getattr(options, option, None) or ()):
            logger.warning(
                "authgw: %s keeps mitmproxy from intercepting route %s: no token can be "
                "injected there",
                option,
                route,
            )


def principals(cfg: Config, options: Any) -> None:
    """Routes with ``principals`` need mitmproxy's ``proxyauth`` (it names the client)."""
    named = [r.name for r in cfg.routes if r.principals]
    if named and not getattr(options, "proxyauth", None):
        raise ConfigError(
            "routes",
            f"route(s) {', '.join(named)} have principals, which need mitmproxy's "
            "proxyauth (--proxyauth user:pass, @htpasswd, any or ldap)",
        )
