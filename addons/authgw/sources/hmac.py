"""``type: hmac``: a JWT signed here with a shared secret (HS256/384/512)."""

from __future__ import annotations

import decimal
import json
import logging
import math
import time
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, cast

from authgw.config import HmacTokenConfig
from authgw.jwtutil import MIN_HMAC_KEY_BYTES, encode_hmac
from authgw.sources.base import Clock, SecretBacked, SecretLike
from authgw.tokens import Token

logger = logging.getLogger(__name__)


def serde_float(value: float) -> str:
    """A float as serde_json writes it (ryu's shortest digits, laid out as ryu's
    ``format64`` does): ``1e16``, ``1.5e16``, ``1e-7``, ``0.00001``, ``100.0``, where
    Python writes ``1e+16``, ``1.5e+16``, ``1e-07``, ``1e-05``. Not finite: ``null``.
    The digits are Python's ``repr``'s: both are the shortest that round-trip."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digit_tuple, k = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(k, int)
    digits = "".join(map(str, digit_tuple))
    kk = len(digits) + k  # where the decimal point goes, counted from the first digit
    if 0 <= k and kk <= 16:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif len(digits) == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return ("-" if value < 0 else "") + text


class _Serde(json.JSONEncoder):
    """JSON as serde writes a ``BTreeMap``: compact (PyJWT sets the separators), keys
    sorted, non-ASCII as UTF-8, floats as ``serde_float``. Header and claims alike, so the
    same claims and secret give the CloudMon reporter's (Rust ``jwt`` crate's) token byte
    for byte. (json's C encoder has no hook for floats: the standard library's own Python
    one is used, with ours; a token is signed once per cache entry, not per request.)"""

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "sort_keys": True, "ensure_ascii": False})

    def iterencode(self, o: Any, _one_shot: bool = False) -> Iterator[str]:
        encode = json.encoder._make_iterencode(  # type: ignore[attr-defined]
            {} if self.check_circular else None,
            self.default,
            json.encoder.encode_basestring,  # ensure_ascii=False
            self.indent,
            serde_float,
            self.key_separator,
            self.item_separator,
            self.sort_keys,
            self.skipkeys,
            _one_shot,
        )
        return cast(Iterator[str], encode(o, 0))


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
