"""``type: basic``: HTTP Basic from a username and a password (``sources/basic.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authgw.config.fields import FieldReader
from authgw.config.schema import BasicTokenConfig, CacheSettings, Route, SecretRef
from authgw.kinds import Kind

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock


class Basic(Kind[BasicTokenConfig]):
    name = "basic"
    secret_field = "password"
    default_prefix = "Basic "

    def parse(
        self, r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
    ) -> BasicTokenConfig:
        m = r.mapping(raw, path, ("type", "username", "password"), parent, "token")
        return BasicTokenConfig(
            username=r.secret(m, "username", path, literal_ok=True),  # a user name is no secret
            password=r.secret(m, "password", path),
        )

    def build(
        self,
        route: Route,
        token: BasicTokenConfig,
        *,
        clock: Clock,
        store: SecretStore,
        default_ttl: float,
    ) -> Source:
        from authgw.sources.basic import BasicSource

        return BasicSource(
            route.name,
            token,
            clock=clock,
            reader=store.reader(token.password),
            username=store.reader(token.username),
        )

    def audience(self, token: BasicTokenConfig, scheme: str, host: str) -> tuple[str, ...]:
        return ()

    def secrets(self, token: BasicTokenConfig) -> tuple[SecretRef, ...]:
        return (token.username, token.password)

    def shared_secret(self, token: BasicTokenConfig) -> SecretRef | None:
        return token.password


KIND = Basic()
