"""A route's ``token:`` section: one parser per ``type`` (hmac, sts, static).

A token's lifetime is checked against ``cache.min_ttl`` here, so that a route whose
tokens could never be injected is a config error rather than a 502 on every request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from authgw.aws import STS_SIGNING_ALGORITHMS
from authgw.config.fields import FieldReader, kind_of, plain, show
from authgw.config.schema import (
    DYNAMIC,
    CacheSettings,
    HmacTokenConfig,
    OAuth2TokenConfig,
    SigV4TokenConfig,
    StaticTokenConfig,
    StsTokenConfig,
    TokenConfig,
)
from authgw.hosts import is_loopback
from authgw.jwtutil import HMAC_ALGORITHMS
from authgw.templates import TemplateError, compile_claims

_TAG_KEY = re.compile(r"[\w.:/=+\-@ ]{1,128}")


# botocore's model of GetWebIdentityToken Scope: printable ASCII but space " , \, 1-256.
_SCOPE = re.compile(r"[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+( [\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+)*")
STS_SUBJECT_MODES = ("AWSIdentity", "OriginIdentity")
OAUTH2_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def parse_token(
    r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
) -> TokenConfig:
    """``raw``, the value of ``parent["token"]``, as the config of its ``type``."""
    if not isinstance(raw, Mapping):
        raise r.error(path, f"must be a mapping, not {kind_of(raw)}", parent, "token")
    kind = raw.get("type")
    if kind == "hmac":
        return _hmac(r, raw, path, parent, cache)
    if kind == "sts":
        return _sts(r, raw, path, parent, cache)
    if kind == "static":
        m = r.mapping(raw, path, ("type", "value"), parent, "token")
        return StaticTokenConfig(value=r.secret(m, "value", path))
    if kind == "oauth2":
        return _oauth2(r, raw, path, parent)
    if kind == "sigv4":
        return _sigv4(r, raw, path, parent)
    reason = f"is not one of hmac, sts, static, oauth2, sigv4 ({show(kind)})"
    raise r.error(f"{path}.type", reason, raw, "type")


_SERVICE = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")


def _sigv4(r: FieldReader, raw: Any, path: str, parent: Any) -> SigV4TokenConfig:
    m = r.mapping(raw, path, ("type", "service", "region", "profile", "payload"), parent, "token")
    service = r.string(m, "service", path, "")
    if not _SERVICE.fullmatch(service):
        reason = "is required: the AWS service's signing name (execute-api, lambda, es, s3, ...)"
        raise r.error(f"{path}.service", reason, m, "service")
    region = r.optional_str(m, "region", path, None)
    profile = r.optional_str(m, "profile", path, None)
    for key, value in (("region", region), ("profile", profile)):
        if value == "":
            raise r.error(f"{path}.{key}", "must not be empty (null: the default chain)", m, key)
    payload = r.choice(m, "payload", path, ("signed", "unsigned"), "signed")
    return SigV4TokenConfig(
        service=service,
        region=region,
        profile=profile,
        payload="unsigned" if payload == "unsigned" else "signed",
    )


def _oauth2(r: FieldReader, raw: Any, path: str, parent: Any) -> OAuth2TokenConfig:
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
    token_url = r.string(m, "token_url", path, "")
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


def _hmac(
    r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
) -> HmacTokenConfig:
    m = r.mapping(
        raw,
        path,
        (
            "type",
            "secret",
            "optional",
            "algorithm",
            "claims",
            "lifetime",
            "audience",
            "kid",
            "typ",
            "backdate",
            "not_before",
        ),
        parent,
        "token",
    )
    claims = m.get("claims") or {}
    if not isinstance(claims, Mapping) or not all(isinstance(k, str) for k in claims):
        raise r.error(f"{path}.claims", "must be a mapping of claim names to values", m, "claims")
    reserved = {"iat", "exp", "aud", "nbf"} & set(claims)
    if reserved:
        raise r.error(
            f"{path}.claims",
            f"{', '.join(sorted(reserved))} are set by lifetime, audience and not_before, "
            "not claims",
            m,
            "claims",
        )
    lifetime = r.number(m, "lifetime", path, None, low=1, high=31_536_000, integer=True)
    if lifetime is not None and lifetime <= cache.min_ttl:
        raise r.error(
            f"{path}.lifetime",
            "is not above cache.min_ttl: no token would ever be usable",
            m,
            "lifetime",
        )
    if lifetime is not None:
        _warn_refresh_margin(r, f"{path}.lifetime", int(lifetime), cache)
    audience = r.optional_str(m, "audience", path, None)
    if audience == "":
        raise r.error(f"{path}.audience", "must not be empty", m, "audience")
    kid = r.string(m, "kid", path, "fingerprint")
    if not kid:
        raise r.error(f"{path}.kid", "must not be empty (use none for no kid)", m, "kid")
    typ = r.optional_str(m, "typ", path, "JWT")
    if typ == "":
        raise r.error(f"{path}.typ", "must not be empty (null omits it)", m, "typ")
    backdate = r.number(m, "backdate", path, 0, low=0, high=86_400, integer=True) or 0
    try:
        template = compile_claims(plain(claims))
    except TemplateError as e:
        raise r.error(f"{path}.{e.path}", e.reason, m, "claims") from None
    return HmacTokenConfig(
        secret=r.secret(m, "secret", path),
        optional=r.boolean(m, "optional", path, False),
        algorithm=r.choice(m, "algorithm", path, HMAC_ALGORITHMS, "HS256"),
        claims=plain(claims),
        lifetime=None if lifetime is None else int(lifetime),
        audience=audience,
        kid=kid,
        typ=typ,
        backdate=int(backdate),
        not_before=r.boolean(m, "not_before", path, False),
        template=template,
    )


def _warn_refresh_margin(r: FieldReader, where: str, life: int, cache: CacheSettings) -> None:
    """The cache refreshes a token at most half its life ahead; say so where the setting
    asks for more."""
    if cache.refresh_ahead >= life:
        r.warnings.append(
            f"{where} is {life} s and cache.refresh_ahead is {cache.refresh_ahead:g} s, at or "
            f"above it: such tokens are refreshed {life / 2:g} s ahead (half their life)"
        )


def _sts(r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings) -> StsTokenConfig:
    m = r.mapping(
        raw,
        path,
        (
            "type",
            "audience",
            "signing_algorithm",
            "duration",
            "tags",
            "region",
            "profile",
            "endpoint_url",
            "connect_timeout",
            "read_timeout",
            "max_attempts",
            "scope",
            "subject_mode",
        ),
        parent,
        "token",
    )
    duration = int(r.number(m, "duration", path, 300, low=60, high=3600, integer=True) or 300)
    if duration <= cache.min_ttl:
        raise r.error(
            f"{path}.duration",
            "is not above cache.min_ttl: no token would ever be usable",
            m,
            "duration",
        )
    _warn_refresh_margin(r, f"{path}.duration", duration, cache)
    endpoint_url = r.optional_str(m, "endpoint_url", path, None)
    if endpoint_url is not None and not re.match(r"https?://[^/\s]+", endpoint_url):
        raise r.error(f"{path}.endpoint_url", "is not an http(s) URL", m, "endpoint_url")
    return StsTokenConfig(
        audience=_sts_audience(r, m, path),
        signing_algorithm=r.choice(m, "signing_algorithm", path, STS_SIGNING_ALGORITHMS, "RS256"),
        duration=duration,
        tags=_tags(r, m, path),
        region=r.optional_str(m, "region", path, None),
        profile=r.optional_str(m, "profile", path, None),
        endpoint_url=endpoint_url,
        connect_timeout=float(r.number(m, "connect_timeout", path, 2.0, low=0.1, high=60) or 2.0),
        read_timeout=float(r.number(m, "read_timeout", path, 5.0, low=0.1, high=60) or 5.0),
        max_attempts=int(r.number(m, "max_attempts", path, 2, low=1, high=10, integer=True) or 2),
        scope=_scope(r, m, path),
        subject_mode=(
            r.choice(m, "subject_mode", path, STS_SUBJECT_MODES, "")
            if m.get("subject_mode") is not None
            else None
        ),
    )


def _scope(r: FieldReader, m: Mapping[str, Any], path: str) -> str | None:
    """GetWebIdentityToken's Scope: space-separated values, as botocore's model says."""
    scope = r.optional_str(m, "scope", path, None)
    if scope is not None and not _SCOPE.fullmatch(scope):
        raise r.error(
            f"{path}.scope", "must be scope values separated by single spaces", m, "scope"
        )
    return scope


def _sts_audience(
    r: FieldReader, m: Mapping[str, Any], path: str
) -> tuple[str, ...] | Literal["dynamic"]:
    raw = m.get("audience")
    if raw == DYNAMIC:
        return DYNAMIC
    if isinstance(raw, str):
        raw = [raw]
    if (
        not isinstance(raw, list)
        or not 1 <= len(raw) <= 10
        or not all(isinstance(a, str) and a for a in raw)
    ):
        raise r.error(
            f"{path}.audience",
            "must be dynamic or a list of 1 to 10 non-empty strings",
            m,
            "audience",
        )
    return tuple(raw)


def _tags(r: FieldReader, m: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    raw = m.get("tags") or {}
    if not isinstance(raw, Mapping):
        raise r.error(f"{path}.tags", "must be a mapping of tag keys to values", m, "tags")
    if len(raw) > 50:
        raise r.error(f"{path}.tags", f"has {len(raw)} tags; STS takes at most 50", m, "tags")
    tags = []
    for k, v in raw.items():
        if not isinstance(k, str) or not _TAG_KEY.fullmatch(k):
            raise r.error(
                f"{path}.tags.{k}",
                "is not a valid tag key (1-128 letters, digits, spaces and _.:/=+-@)",
                raw,
                k,
            )
        if isinstance(v, bool) or not isinstance(v, str | int | float) or len(str(v)) > 256:
            raise r.error(f"{path}.tags.{k}", "must be a string of at most 256 characters", raw, k)
        tags.append((k, str(v)))
    return tuple(sorted(tags))
