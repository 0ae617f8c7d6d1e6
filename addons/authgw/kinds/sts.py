"""``type: sts``: a JWT from AWS STS ``GetWebIdentityToken`` (``sources/sts.py``, boto3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from authgw.aws import STS_SIGNING_ALGORITHMS
from authgw.config.fields import FieldReader
from authgw.config.schema import DYNAMIC, CacheSettings, Route, StsTokenConfig
from authgw.kinds import Kind
from authgw.kinds.lifetimes import warn_refresh_margin

if TYPE_CHECKING:
    from authgw.sources import SecretStore, Source
    from authgw.sources.base import Clock

_TAG_KEY = re.compile(r"[\w.:/=+\-@ ]{1,128}")
# botocore's model of GetWebIdentityToken Scope: printable ASCII but space " , \, 1-256.
_SCOPE = re.compile(r"[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+( [\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+)*")
STS_SUBJECT_MODES = ("AWSIdentity", "OriginIdentity")


class Sts(Kind[StsTokenConfig]):
    name = "sts"

    def parse(
        self, r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
    ) -> StsTokenConfig:
        return _parse(r, raw, path, parent, cache)

    def build(
        self,
        route: Route,
        token: StsTokenConfig,
        *,
        clock: Clock,
        store: SecretStore,
        default_ttl: float,
    ) -> Source:
        from authgw.sources.sts import StsSource  # boto3: only where an sts route is

        return StsSource(route.name, token, clock=clock)


KIND = Sts()


def _parse(
    r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
) -> StsTokenConfig:
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
    warn_refresh_margin(r, f"{path}.duration", duration, cache)
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
    reason = "must be scope values separated by single spaces"
    return r.optional_match(m, "scope", path, _SCOPE, reason)


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
