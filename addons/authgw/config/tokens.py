"""A route's ``token:`` section: the kind its ``type`` names parses it (``authgw.kinds``).

A token's lifetime is checked against ``cache.min_ttl`` by its kind, so that a route whose
tokens could never be injected is a config error rather than a 502 on every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authgw.config.fields import FieldReader, kind_of, show
from authgw.config.schema import CacheSettings, TokenConfig


def parse_token(
    r: FieldReader, raw: Any, path: str, parent: Any, cache: CacheSettings
) -> TokenConfig:
    """``raw``, the value of ``parent["token"]``, as the config of its ``type``."""
    from authgw.kinds import kinds  # the kinds parse with config's FieldReader

    if not isinstance(raw, Mapping):
        raise r.error(path, f"must be a mapping, not {kind_of(raw)}", parent, "token")
    registry, name = kinds(), raw.get("type")
    kind = registry.get(name) if isinstance(name, str) else None
    if kind is None:
        reason = f"is not one of {', '.join(registry)} ({show(name)})"
        raise r.error(f"{path}.type", reason, raw, "type")
    config: TokenConfig = kind.parse(r, raw, path, parent, cache)
    return config
