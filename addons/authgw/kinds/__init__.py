"""Token types: one module per ``token.type``, each the one place that says how its
type is configured, what it builds, which audience its tokens carry and what redaction
must know about it. The config parser, the sources, the decision, redaction and the CLI
ask ``kind_of(token)`` instead of switching on the type.

    kinds() / KINDS             the registry, {name: Kind}; a new type is its module, one
                                line in ``_registry`` and its config dataclass in
                                ``config/schema.py`` (docs/design.md, "How to add a token type")
    Kind                        what a type says; every method has the common default

A kind module imports nothing heavy (boto3, tornado's client): its ``build`` imports the
source class when a route of that type is built, so a config without it never loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from authgw.config.fields import FieldReader
from authgw.config.schema import DYNAMIC, CacheSettings, Route, SecretRef, TokenConfig

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock

C = TypeVar("C")


class Kind(Generic[C]):
    """What one token type says. ``C`` is its config dataclass (``config/schema.py``)."""

    name: ClassVar[str]
    # A signer of each request at the last word (sigv4), not a source of cached tokens.
    signs: ClassVar[bool] = False
    # Header names besides the route's own that carry its credential (lowercase).
    credential_headers: ClassVar[frozenset[bytes]] = frozenset()
    # The field a missing env/file secret is reported under (routes[i].token.FIELD).
    secret_field: ClassVar[str] = "secret"
    # The route's ``prefix`` when the config gives none.
    default_prefix: ClassVar[str] = "Bearer "

    def parse(
        self, r: FieldReader, raw: Mapping[str, Any], path: str, parent: Any, cache: CacheSettings
    ) -> C:
        """``raw`` (the route's ``token:`` mapping) as ``C``; ``r.error`` names the field."""
        raise NotImplementedError

    def build(
        self, route: Route, token: C, *, clock: Clock, store: SecretStore, default_ttl: float
    ) -> Source:
        """The route's source (or signer); secrets kept elsewhere come from ``store``."""
        raise NotImplementedError

    def audience(self, token: C, scheme: str, host: str) -> tuple[str, ...]:
        """The audience set a request's token carries (empty: no ``aud``)."""
        audience = getattr(token, "audience", None)
        if audience is None:
            return ()
        if audience == DYNAMIC:
            from authgw.routing import dynamic_audience  # routing asks the kinds

            return (dynamic_audience(scheme, host),)
        if isinstance(audience, str):
            return (audience,)
        return tuple(audience)

    def dynamic(self, token: C) -> bool:
        """True if the audience is made from the host (the token binds to that host)."""
        return getattr(token, "audience", None) == DYNAMIC

    def optional(self, token: C) -> bool:
        """True if a missing secret forwards requests without a token instead of a 502."""
        return False

    def secrets(self, token: C) -> tuple[SecretRef, ...]:
        """The secrets the type reads."""
        return ()

    def shared_secret(self, token: C) -> SecretRef | None:
        """The secret an upstream shares with the gateway (``authgw drift``, ``verify``)."""
        return None


def _registry() -> dict[str, Kind[Any]]:
    from authgw.kinds import basic, hmac, oauth2, sigv4, static, sts

    kinds = (hmac.KIND, sts.KIND, static.KIND, basic.KIND, oauth2.KIND, sigv4.KIND)
    return {k.name: k for k in kinds}


KINDS: dict[str, Kind[Any]] = {}


def kinds() -> dict[str, Kind[Any]]:
    """The registry, filled on first use (the kind modules import ``config``)."""
    if not KINDS:
        KINDS.update(_registry())
    return KINDS


def kind_of(token: TokenConfig) -> Kind[Any]:
    """The kind of a parsed token config."""
    return KINDS.get(token.type) or kinds()[token.type]


__all__ = ["KINDS", "Kind", "kind_of", "kinds"]
