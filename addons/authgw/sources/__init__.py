"""Token sources: one module per ``token.type`` (hmac, sts, static, oauth2; sigv4 signs),
built by the type's kind (``authgw.kinds``).

A source turns an audience into a ``Token``. It does no caching of its own beyond
its secret: ``TokenCache`` decides when to call ``fetch``. ``cache_params`` names
everything besides route and audience that changes the token, so that a changed
secret or setting never serves an old token.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias

from authgw.config import Config, ConfigError, Route, SecretRef, TokenConfig
from authgw.kinds import kind_of
from authgw.sources.base import Clock, SecretReader, TokenSource
from authgw.sources.remote import SecretStore
from authgw.tokens import MissingSecret

if TYPE_CHECKING:
    from authgw.sources.sigv4 import SigV4Signer

__all__ = [
    "Clock",
    "SecretReader",
    "SecretStore",
    "Source",
    "TokenSource",
    "build",
    "build_all",
    "close",
    "release",
    "secret_refs",
]

# What a route's token: builds: a token source, or (sigv4) a signer of each request.
Source: TypeAlias = "TokenSource | SigV4Signer"


def build(
    route: Route,
    *,
    clock: Clock = time.time,
    secrets: SecretStore | None = None,
    default_ttl: float = 300.0,
) -> Source:
    """The source for ``route.token``, as its kind builds it (STS, and so boto3, is
    imported only when used); remote secrets come from ``secrets`` (shared across
    reloads)."""
    token = route.token
    if token is None:
        raise ValueError(f"route {route.name} has no token: it only verifies")
    return kind_of(token).build(
        route, token, clock=clock, store=secrets or SecretStore(), default_ttl=default_ttl
    )


def build_all(
    config: Config,
    *,
    clock: Clock = time.time,
    secrets: SecretStore | None = None,
    keep: Mapping[str, Source] | None = None,
) -> tuple[dict[str, Source], list[str]]:
    """A source per route that injects tokens, by route name, and notes about optional
    secrets that are missing. ``keep``: the running sources of routes whose settings a
    reload left as they were; they are used as they are (their generation, and so their
    cached tokens, stay), not built again.

    A required env/file secret that is missing raises ``ConfigError`` naming the route's
    field; a command or AWS secret whose first read failed does not stop the start: its
    route answers 502 ``missing_secret`` until a read succeeds.
    """
    secrets = secrets or SecretStore()
    built: dict[str, Source] = {}
    notes: list[str] = []
    for i, route in enumerate(config.routes):
        token = route.token
        if token is None:
            continue  # a verify-only route injects nothing
        if keep is not None and route.name in keep:
            built[route.name] = keep[route.name]
            continue
        source = build(route, clock=clock, secrets=secrets, default_ttl=config.cache.default_ttl)
        try:
            source.check()
        except MissingSecret as e:
            kind = kind_of(token)
            if any(ref.remote for ref in kind.secrets(token)):
                notes.append(f"route {route.name}: {e}; answering 502 until a read succeeds")
            elif kind.signs:
                raise ConfigError(f"routes[{i}].token", str(e)) from e
            elif kind.optional(token):
                notes.append(
                    f"route {route.name}: {e}; optional, so requests go without "
                    "a token until it appears"
                )
            else:
                raise ConfigError(f"routes[{i}].token.{_field_of(token, e)}", str(e)) from e
        except Exception as e:  # noqa: BLE001 - botocore: no region, unknown profile, ...
            reason = str(e)
            if type(e).__name__ == "NoRegionError":
                reason = "no AWS region: set token.region, AWS_REGION or a profile's region"
            raise ConfigError(f"routes[{i}].token", reason) from e
        built[route.name] = source
    return built, notes


def _field_of(token: TokenConfig, error: MissingSecret) -> str:
    """The token field holding the secret that is missing (oauth2 has two)."""
    for f in dataclasses.fields(token):
        if error.ref is not None and getattr(token, f.name) == error.ref:
            return f.name
    return kind_of(token).secret_field


def secret_refs(config: Config) -> set[SecretRef]:
    """Every secret the config's routes read: their tokens' and their verifiers'."""
    refs: set[SecretRef] = set()
    for route in config.routes:
        if route.token is not None:
            refs.update(kind_of(route.token).secrets(route.token))
        if route.verify is not None and route.verify.secret is not None:
            refs.add(route.verify.secret)
    return refs


def release(configs: Iterable[Config], secrets: SecretStore) -> None:
    """Stop what no route of ``configs`` uses (none: there is no config any more): the
    remote secrets' readers, and the STS clients (if STS was used)."""
    configs = list(configs)
    secrets.retain(set().union(*(secret_refs(c) for c in configs)))
    sts = sys.modules.get("authgw.sources.sts")  # not imported: nothing of it to stop
    if sts is not None:
        sts.release(configs)


def close(source: Source) -> None:
    """Stop what a source owns (a reload replaced or dropped it, or the gateway stops):
    an STS source's thread pool. The secrets it reads are the store's (``release``)."""
    stop = getattr(source, "close", None)
    if stop is not None:
        stop()
