"""The ``routes:`` list: each route's own keys, its ``hosts`` and its ``verify:`` section.

The ``token:`` section is ``authgw.config.tokens``' job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from authgw.config.fields import FieldReader, join, kind_of
from authgw.config.schema import (
    HOP_BY_HOP_HEADERS,
    CacheSettings,
    Route,
    TokenConfig,
    VerifyConfig,
    claim_template,
)
from authgw.config.tokens import parse_token
from authgw.hosts import HostPattern

_ROUTE_NAME = re.compile(r"[a-z0-9_]+")


def parse_routes(
    r: FieldReader, top: Mapping[str, Any], cache: CacheSettings, upstream_header: str | None
) -> tuple[Route, ...]:
    """``top["routes"]``: a required list of routes with unique names, in file order."""
    raw = top.get("routes")
    if raw is None:
        raise r.error("routes", "is required (a list of routes)")
    if not isinstance(raw, list):
        raise r.error("routes", f"must be a list, not {kind_of(raw)}", top, "routes")
    routes: list[Route] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        route = _route(r, item, f"routes[{i}]", raw, i, cache, upstream_header)
        if route.name in seen:
            raise r.error(
                f"routes[{i}].name",
                f"{route.name!r} is used by an earlier route; names must be unique",
                item,
                "name",
            )
        seen.add(route.name)
        routes.append(route)
    return tuple(routes)


def _route(
    r: FieldReader,
    raw: Any,
    path: str,
    parent: Any,
    index: int,
    cache: CacheSettings,
    upstream_header: str | None,
) -> Route:
    m = r.mapping(
        raw,
        path,
        (
            "name",
            "hosts",
            "header",
            "prefix",
            "inbound",
            "allow_http",
            "allow_insecure_tls",
            "token",
            "verify",
            "retry_on_401",
            "scrub_responses",
            "query",
            "placeholder",
            "placeholder_env",
            "placeholder_in_body",
            "principals",
        ),
        parent,
        index,
    )
    if "name" not in m:
        raise r.error(f"{path}.name", "is required", parent, index)
    name = r.string(m, "name", path, "")
    if not _ROUTE_NAME.fullmatch(name):
        raise r.error(f"{path}.name", "must match [a-z0-9_]+", m, "name")
    if "token" not in m and "verify" not in m:
        raise r.error(f"{path}.token", "is required (or verify:, or both)", parent, index)
    token = parse_token(r, m["token"], f"{path}.token", m, cache) if "token" in m else None
    query = _query(r, m, path)
    # `header: null`, or `query:` without a header named: no header is set (the route's
    # header is still the one a placeholder or the client's token is looked for in)
    inject = m.get("header", "") is not None and not (query and "header" not in m)
    header = r.optional_str(m, "header", path, "Authorization") or "Authorization"
    r.header_name(header, f"{path}.header", m, "header")
    prefix = r.string(m, "prefix", path, _default_prefix(token))
    if any(c in prefix for c in "\r\n\0"):
        raise r.error(f"{path}.prefix", "must not contain CR, LF or NUL", m, "prefix")
    route = Route(
        name=name,
        hosts=_hosts(r, m, path),
        header=header,
        prefix=prefix,
        keep_inbound_as=_inbound(r, m, path, header),
        allow_http=r.boolean(m, "allow_http", path, False),
        allow_insecure_tls=r.boolean(m, "allow_insecure_tls", path, False),
        token=token,
        verify=_verify(r, m["verify"], f"{path}.verify", m) if "verify" in m else None,
        retry_on_401=r.boolean(m, "retry_on_401", path, False),
        scrub_responses=r.boolean(m, "scrub_responses", path, True),
        inject=inject,
        query=query,
        principals=_principals(r, m, path),
        **_placeholder(r, m, path, token),
    )
    if route.token is not None and _signs(route.token):
        for key in ("header", "prefix", "inbound", "query", "placeholder"):
            if key in m:
                reason = "does not apply to a sigv4 route (it sets Authorization and X-Amz-*)"
                raise r.error(f"{path}.{key}", reason, m, key)
        route = replace(route, prefix="")
    if route.retry_on_401 and route.token is None:
        reason = "needs a token: section (a verify-only route injects no token to renew)"
        raise r.error(f"{path}.retry_on_401", reason, m, "retry_on_401")
    _check_template(r, route, m, path, upstream_header)
    return route


# Headers a template may not read: removing them would change how the request is framed
# or routed (a client could smuggle a second request past the gateway).
_FRAMING_HEADERS = HOP_BY_HOP_HEADERS | {"host", "content-length", "expect"}


def _check_template(
    r: FieldReader, route: Route, m: Mapping[str, Any], path: str, upstream_header: str | None
) -> None:
    """A template reads client claims only where verify accepts them, and never reads
    the headers that carry credentials, frame the request or name its upstream."""
    template = claim_template(route.token)
    if template is None:
        return
    where = f"{path}.token.claims"
    if template.uses_client and route.verify is None:
        reason = "${client:...} needs a verify: section (the claims of a token it accepted)"
        raise r.error(where, reason, m, "token")
    credentials = {route.header.lower(), (route.keep_inbound_as or "").lower()}
    for name in template.headers:
        lowered = name.lower()
        if lowered in credentials:
            reason = f"${{header:{name}}} names a header that carries the route's credential"
        elif lowered in _FRAMING_HEADERS or lowered == (upstream_header or "").lower():
            reason = f"${{header:{name}}} names a header that frames or routes the request"
        else:
            continue
        raise r.error(where, reason, m, "token")


def _hosts(r: FieldReader, m: Mapping[str, Any], path: str) -> tuple[HostPattern, ...]:
    raw = m.get("hosts")
    if not isinstance(raw, list) or not raw:
        raise r.error(f"{path}.hosts", "must be a non-empty list of host patterns", m, "hosts")
    patterns = []
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            raise r.error(f"{path}.hosts[{i}]", f"must be a string, not {kind_of(item)}", raw, i)
        try:
            patterns.append(HostPattern.parse(item))
        except ValueError:
            reason = "is not a host pattern (host, *.suffix, host:port or *)"
            raise r.error(f"{path}.hosts[{i}]", reason, raw, i) from None
    return tuple(patterns)


def _inbound(r: FieldReader, m: Mapping[str, Any], path: str, header: str) -> str | None:
    value = r.string(m, "inbound", path, "replace")
    if value == "replace":
        return None
    name = value.removeprefix("keep-as:").strip()
    if not value.startswith("keep-as:") or not name:
        raise r.error(
            f"{path}.inbound",
            "is not replace or keep-as:<Header-Name>",
            m,
            "inbound",
        )
    r.header_name(name, f"{path}.inbound", m, "inbound")
    if name.lower() == header.lower():
        raise r.error(
            f"{path}.inbound", "keep-as: names the header the token goes in", m, "inbound"
        )
    return name


def _verify(r: FieldReader, raw: Any, path: str, parent: Any) -> VerifyConfig:
    m = r.mapping(
        raw, path, ("secret", "jwks", "audience", "issuer", "enforce", "leeway"), parent, "verify"
    )
    if ("secret" in m) == ("jwks" in m):
        raise r.error(path, "needs exactly one of secret, jwks", parent, "verify")
    jwks = r.optional_str(m, "jwks", path, None)
    if jwks is not None and not re.match(r"https?://", jwks):
        jwks = str(r.path(jwks))
    audience = r.optional_str(m, "audience", path, None)
    issuer = r.optional_str(m, "issuer", path, None)
    for key, value in (("audience", audience), ("issuer", issuer), ("jwks", jwks)):
        if value == "":
            raise r.error(join(path, key), "must not be empty", m, key)
    return VerifyConfig(
        secret=r.secret(m, "secret", path) if "secret" in m else None,
        jwks=jwks,
        audience=audience,
        issuer=issuer,
        enforce=r.boolean(m, "enforce", path, False),
        leeway=float(r.number(m, "leeway", path, 0, low=0, high=3600) or 0),
    )


_QUERY_NAME = re.compile(r"[A-Za-z0-9_.~-]+")
_PLACEHOLDER = re.compile(r"[!-~]{16,}")  # printable ASCII, no spaces
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _default_prefix(token: TokenConfig | None) -> str:
    from authgw.kinds import kind_of  # the kinds parse with config's FieldReader

    return kind_of(token).default_prefix if token is not None else "Bearer "


def _query(r: FieldReader, m: Mapping[str, Any], path: str) -> str | None:
    reason = "must be a query parameter name ([A-Za-z0-9_.~-]+)"
    return r.optional_match(m, "query", path, _QUERY_NAME, reason)


def _principals(r: FieldReader, m: Mapping[str, Any], path: str) -> tuple[str, ...]:
    raw = m.get("principals")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) and p for p in raw):
        reason = "must be a non-empty list of proxyauth user names"
        raise r.error(f"{path}.principals", reason, m, "principals")
    return tuple(raw)


def _placeholder(
    r: FieldReader, m: Mapping[str, Any], path: str, token: TokenConfig | None
) -> dict[str, Any]:
    """``placeholder``, ``placeholder_env``, ``placeholder_in_body``: the first is what
    the client holds instead of the credential (never quoted in an error: a user may
    paste the real one there)."""
    placeholder = m.get("placeholder")
    if placeholder is None:
        for key in ("placeholder_env", "placeholder_in_body"):
            if key in m:
                raise r.error(f"{path}.{key}", "needs placeholder:", m, key)
        return {}
    if not isinstance(placeholder, str) or not _PLACEHOLDER.fullmatch(placeholder):
        reason = "must be 16 or more printable ASCII characters without spaces"
        raise r.error(f"{path}.placeholder", reason, m, "placeholder")
    if token is None:
        reason = "needs a token: section (the credential it stands for)"
        raise r.error(f"{path}.placeholder", reason, m, "placeholder")
    reason = "is not an environment variable name"
    env = r.optional_match(m, "placeholder_env", path, _ENV_NAME, reason)
    return {
        "placeholder": placeholder,
        "placeholder_env": env,
        "placeholder_in_body": r.boolean(m, "placeholder_in_body", path, False),
    }


def _signs(token: TokenConfig) -> bool:
    """A kind that signs each request sets its own headers (sigv4)."""
    from authgw.kinds import kind_of  # the kinds parse with config's FieldReader

    return kind_of(token).signs
