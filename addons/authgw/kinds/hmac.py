"""``type: hmac``: a JWT the gateway signs with a shared secret (``sources/hmac.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from authgw.config.fields import FieldReader, plain
from authgw.config.schema import CacheSettings, HmacTokenConfig, Route, SecretRef
from authgw.jwtutil import HMAC_ALGORITHMS
from authgw.kinds import Kind
from authgw.kinds.lifetimes import warn_refresh_margin
from authgw.templates import TemplateError, compile_claims

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock


class Hmac(Kind[HmacTokenConfig]):
    name = "hmac"

    def parse(
        self, r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
    ) -> HmacTokenConfig:
        return _parse(r, raw, path, parent, cache)

    def build(
        self,
        route: Route,
        token: HmacTokenConfig,
        *,
        clock: Clock,
        store: SecretStore,
        default_ttl: float,
    ) -> Source:
        from authgw.sources.hmac import HmacSource

        return HmacSource(route.name, token, clock=clock, reader=store.reader(token.secret))

    def optional(self, token: HmacTokenConfig) -> bool:
        return token.optional

    def secrets(self, token: HmacTokenConfig) -> tuple[SecretRef, ...]:
        return (token.secret,)

    def shared_secret(self, token: HmacTokenConfig) -> SecretRef | None:
        return token.secret


KIND = Hmac()


def _parse(
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
        warn_refresh_margin(r, f"{path}.lifetime", int(lifetime), cache)
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
