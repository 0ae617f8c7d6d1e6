"""``type: hmac``: a JWT signed here with a shared secret (HS256/384/512)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Hashable, Mapping
from typing import Any

from authgw.config import HmacTokenConfig
from authgw.jwtutil import MIN_HMAC_KEY_BYTES, encode_hmac
from authgw.sources.base import Clock, SecretBacked, SecretLike
from authgw.tokens import Token

logger = logging.getLogger(__name__)


class _Serde(json.JSONEncoder):
    """JSON as serde writes a ``BTreeMap``: compact (PyJWT sets the separators), keys
    sorted, non-ASCII as UTF-8. Header and claims alike, so the same claims and secret
    give the CloudMon reporter's (Rust ``jwt`` crate's) token byte for byte."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "sort_keys": True, "ensure_ascii": False})


class HmacSource(SecretBacked):
    kind = "hmac"
    config: HmacTokenConfig

    def __init__(
        self,
        route: str,
        config: HmacTokenConfig,
        *,
        clock: Clock = time.time,
        reader: SecretLike | None = None,
    ) -> None:
        super().__init__(route, config, config.secret, clock=clock, reader=reader)
        self._warned_short: str | None = None

    def check(self) -> None:
        secret = self.secret.read()
        if len(secret) < MIN_HMAC_KEY_BYTES[self.config.algorithm]:
            self._warn_short(len(secret), self.secret.fingerprint())

    def cache_params(self) -> Hashable:
        return (self.config.algorithm, self.secret.fingerprint())

    async def fetch(
        self, audience: tuple[str, ...], claims: Mapping[str, Any] | None = None
    ) -> Token:
        return self.sign(audience, claims)

    def sign(self, audience: tuple[str, ...], rendered: Mapping[str, Any] | None = None) -> Token:
        """Sign a token now (synchronous: HMAC signing takes microseconds). ``rendered``:
        the route's claim template filled in for one request, instead of its claims."""
        cfg = self.config
        secret, fp = self.secret.snapshot()  # one value: its kid is its signature's key
        now = int(self._clock())
        issued = now - cfg.backdate
        claims: dict[str, Any] = dict(cfg.claims if rendered is None else rendered)
        expires_at: float | None = None
        if cfg.lifetime is not None:
            expires_at = now + cfg.lifetime
            claims["iat"] = issued
            claims["exp"] = int(expires_at)
        if cfg.not_before:
            claims["nbf"] = issued
        if audience:
            claims["aud"] = audience[0] if len(audience) == 1 else list(audience)
        kid = {"fingerprint": fp, "none": None}.get(cfg.kid, cfg.kid)
        headers: dict[str, Any] = {"typ": cfg.typ}  # None: PyJWT leaves "typ" out
        if kid is not None:
            headers["kid"] = kid
        if len(secret) < MIN_HMAC_KEY_BYTES[cfg.algorithm]:
            self._warn_short(len(secret), fp)  # once per secret; encode_hmac never warns
        value = encode_hmac(claims, secret, cfg.algorithm, headers, json_encoder=_Serde)
        return Token(
            value=value,
            source=self.kind,
            kid=kid,
            expires_at=expires_at,
            issued_at=float(issued),
            claim_names=tuple(sorted(claims)),
        )

    def _warn_short(self, length: int, fp: str) -> None:
        if self._warned_short != fp:
            self._warned_short = fp
            logger.warning(
                "route %s: secret %s (%s) is %d bytes, below the %d that RFC 7518 "
                "recommends for %s",
                self.route,
                self.config.secret.describe(),
                fp,
                length,
                MIN_HMAC_KEY_BYTES[self.config.algorithm],
                self.config.algorithm,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.kind,
            "algorithm": self.config.algorithm,
            "secret": self.config.secret.describe(),
            "secret_fingerprint": self.secret.fingerprint_or_none(),
            "optional": self.config.optional,
            **self.secret_status(),
        }
