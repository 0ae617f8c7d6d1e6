"""``type: static``: a token from an env var or a file (re-read when the file changes)."""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from authgw.config import StaticTokenConfig
from authgw.sources.base import Clock, SecretBacked, SecretLike
from authgw.tokens import ExpiredToken, Token, TokenUnavailable, token_from_jwt


class StaticSource(SecretBacked):
    """The token is the secret: read where it lives, checked, and its JWT expiry kept."""

    kind = "static"
    config: StaticTokenConfig

    def __init__(
        self,
        route: str,
        config: StaticTokenConfig,
        *,
        clock: Clock = time.time,
        reader: SecretLike | None = None,
    ) -> None:
        super().__init__(route, config, config.value, clock=clock, reader=reader)

    def check(self) -> None:
        self.secret.read()

    def cache_params(self) -> Hashable:
        return self.secret.fingerprint()

    def _token(self) -> Token:
        """The current value as a Token; ``TokenUnavailable`` if missing or not printable."""
        raw = self.secret.read()
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            text = ""
        if not text or any(ord(c) < 33 or ord(c) > 126 for c in text):
            raise TokenUnavailable(
                "invalid_token",
                f"static token from {self.config.value.describe()} "
                f"({self.secret.fingerprint()}) is not a printable ASCII token",
            )
        return token_from_jwt(text, self.kind)

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        token = self._token()
        now = self._clock()
        if token.expires_at is not None and token.expires_at <= now:
            raise ExpiredToken(
                f"static token from {self.config.value.describe()} ({token.fingerprint}) "
                f"expired {int(now - token.expires_at)} s ago"
            )
        return token

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "source": self.kind,
            "secret": self.config.value.describe(),
            "secret_fingerprint": self.secret.fingerprint_or_none(),
            **self.secret_status(),
        }
        try:
            expires_at = self._token().expires_at
        except TokenUnavailable:
            expires_at = None
        if expires_at is not None:
            info["expires_at"] = expires_at
        return info
