"""``type: static``: a token kept as a secret and sent as is (``sources/static.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authgw.config.fields import FieldReader
from authgw.config.schema import CacheSettings, Route, SecretRef, StaticTokenConfig
from authgw.kinds import Kind

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock


class Static(Kind[StaticTokenConfig]):
    name = "static"
    secret_field = "value"

    def parse(
        self, r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
    ) -> StaticTokenConfig:
        m = r.mapping(raw, path, ("type", "value"), parent, "token")
        return StaticTokenConfig(value=r.secret(m, "value", path))

    def build(
        self,
        route: Route,
        token: StaticTokenConfig,
        *,
        clock: Clock,
        store: SecretStore,
        default_ttl: float,
    ) -> Source:
        from authgw.sources.static import StaticSource

        return StaticSource(route.name, token, clock=clock, reader=store.reader(token.value))

    def audience(self, token: StaticTokenConfig, scheme: str, host: str) -> tuple[str, ...]:
        return ()

    def secrets(self, token: StaticTokenConfig) -> tuple[SecretRef, ...]:
        return (token.value,)

    def shared_secret(self, token: StaticTokenConfig) -> SecretRef | None:
        return token.value


KIND = Static()
