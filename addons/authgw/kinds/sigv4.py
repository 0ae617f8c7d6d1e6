"""``type: sigv4``: each request signed with AWS SigV4 at the last word (``signing.py``,
``sources/sigv4.py``, botocore). A signer, not a token source: nothing is cached."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from authgw.config.fields import FieldReader
from authgw.config.schema import CacheSettings, Route, SigV4TokenConfig
from authgw.kinds import Kind

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock


class SigV4(Kind[SigV4TokenConfig]):
    name = "sigv4"
    signs = True
    credential_headers = frozenset({b"x-amz-security-token"})  # Authorization is the route's

    def parse(
        self, r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
    ) -> SigV4TokenConfig:
        return _parse(r, raw, path, parent)

    def build(
        self,
        route: Route,
        token: SigV4TokenConfig,
        *,
        clock: Clock,
        store: SecretStore,
        default_ttl: float,
    ) -> Source:
        from authgw.sources.sigv4 import SigV4Signer  # botocore: only where a sigv4 route is

        return SigV4Signer(route.name, token, clock=clock)

    def audience(self, token: SigV4TokenConfig, scheme: str, host: str) -> tuple[str, ...]:
        return ()


KIND = SigV4()


_SERVICE = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")


def _parse(r: FieldReader, raw: Any, path: str, parent: Any) -> SigV4TokenConfig:
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
