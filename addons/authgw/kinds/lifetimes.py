"""What the kinds whose tokens have a lifetime share: the refresh margin's warning."""

from __future__ import annotations

from authgw.config.fields import FieldReader
from authgw.config.schema import CacheSettings


def warn_refresh_margin(r: FieldReader, where: str, life: int, cache: CacheSettings) -> None:
    """The cache refreshes a token at most half its life ahead; say so where the setting
    asks for more."""
    if cache.refresh_ahead >= life:
        r.warnings.append(
            f"{where} is {life} s and cache.refresh_ahead is {cache.refresh_ahead:g} s, at or "
            f"above it: such tokens are refreshed {life / 2:g} s ahead (half their life)"
        )
