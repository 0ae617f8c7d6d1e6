"""``type: oauth2``: a client-credentials token from a token endpoint (``sources/oauth2.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from authgw.config.fields import FieldReader
from authgw.config.schema import CacheSettings, OAuth2TokenConfig, Route, SecretRef
from authgw.hosts import is_loopback
from authgw.kinds import Kind

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock

OAUTH2_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OAuth2(Kind[OAuth2TokenConfig]):
    name = "oauth2"
    secret_field = "client_secret"

    def parse(
        self, r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
    ) -> OAuth2TokenConfig:
        return _parse(r, raw, path, parent)

    def build(
        self,
        route: Route,
        token: OAuth2TokenConfig,
        *,
        clock: Clock,
        store: SecretStore,
        default_ttl: float,
    ) -> Source:
        from authgw.sources.oauth2 import OAuth2Source

        return OAuth2Source(
            route.name,
            token,
            clock=clock,
            default_ttl=default_ttl,
            client_id=store.reader(token.client_id),
            client_secret=store.reader(token.client_secret),
        )

    def secrets(self, token: OAuth2TokenConfig) -> tuple[SecretRef, ...]:
        return (token.client_id, token.client_secret)


KIND = OAuth2()


def _token_url(r: FieldReader, m: Mapping[str, Any], path: str) -> str:
    """A string, or ``{env: NAME}`` (read when the config is loaded: the emulator prints
    ``AUTHGW_OAUTH2_TOKEN_URL``)."""
    value = m.get("token_url")
    if not isinstance(value, Mapping):
        return r.string(m, "token_url", path, "")
    name = value.get("env")
    if set(value) != {"env"} or not isinstance(name, str) or not name:
        reason = "must be an http(s) URL, or {env: NAME}"
        raise r.error(f"{path}.token_url", reason, m, "token_url")
    url = os.environ.get(name, "").strip()
    if not url:
        raise r.error(f"{path}.token_url", f"env {name} is not set", m, "token_url")
    return url


def _parse(r: FieldReader, raw: Any, path: str, parent: Any) -> OAuth2TokenConfig:
    m = r.mapping(
        raw,
        path,
        (
            "type",
            "token_url",
            "client_id",
            "client_secret",
            "auth_method",
            "scope",
            "audience",
            "params",
            "timeout",
        ),
        parent,
        "token",
    )
    token_url = _token_url(r, m, path)
    parts = urlsplit(token_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise r.error(f"{path}.token_url", "is required: an http(s) URL", m, "token_url")
    if parts.username is not None or parts.password is not None:
        reason = "must not hold credentials (use client_id and client_secret)"
        raise r.error(f"{path}.token_url", reason, m, "token_url")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        reason = "plain http is accepted only to loopback (the client secret travels there)"
        raise r.error(f"{path}.token_url", reason, m, "token_url")
    params = m.get("params") or {}
    if not isinstance(params, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        raise r.error(f"{path}.params", "must be a mapping of strings to strings", m, "params")
    reserved = {"grant_type", "scope", "audience", "client_id", "client_secret"} & set(params)
    if reserved:
        reason = f"{', '.join(sorted(reserved))} are set by the other keys, not params"
        raise r.error(f"{path}.params", reason, m, "params")
    audience = r.optional_str(m, "audience", path, None)
    scope = r.optional_str(m, "scope", path, None)
    for key, value in (("audience", audience), ("scope", scope)):
        if value == "":
            raise r.error(f"{path}.{key}", "must not be empty (null leaves it out)", m, key)
    return OAuth2TokenConfig(
        token_url=token_url,
        client_id=r.secret(m, "client_id", path, literal_ok=True),
        client_secret=r.secret(m, "client_secret", path),
        auth_method=r.choice(m, "auth_method", path, OAUTH2_AUTH_METHODS, "client_secret_basic"),
        scope=scope,
        audience=audience,
        params=tuple(sorted((str(k), str(v)) for k, v in params.items())),
        timeout=float(r.number(m, "timeout", path, 5.0, low=0.1, high=120) or 5.0),
    )
