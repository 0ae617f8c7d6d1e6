"""``type: basic``: ``base64(username ":" password)``, both read where they live (a file
re-read when it changes, a secret kept elsewhere re-read in the background)."""

from __future__ import annotations

import base64
import time
from collections.abc import Hashable
from typing import Any

from authgw.config import BasicTokenConfig
from authgw.sources.base import Clock, SecretBacked, SecretLike, SecretReader
from authgw.tokens import Token, TokenUnavailable


def _printable(text: str) -> bool:
    return bool(text) and all(" " <= c <= "~" for c in text)


class BasicSource(SecretBacked):
    """The password is the route's secret; the user name is read the same way."""

    kind = "basic"
    config: BasicTokenConfig

    def __init__(
        self,
        route: str,
        config: BasicTokenConfig,
        *,
        clock: Clock = time.time,
        reader: SecretLike | None = None,
        username: SecretLike | None = None,
    ) -> None:
        super().__init__(route, config, config.password, clock=clock, reader=reader)
        self.username: SecretLike = username or SecretReader(config.username)

    def check(self) -> None:
        self.username.read()
        self.secret.read()

    def cache_params(self) -> Hashable:
        return (self.username.fingerprint(), self.secret.fingerprint())

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        user = self.username.read().decode("utf-8", "replace")
        password = self.secret.read().decode("utf-8", "replace")
        if not _printable(user) or ":" in user or not _printable(password):
            raise TokenUnavailable(
                "invalid_token",
                f"route {self.route}: a Basic user name must be printable ASCII without ':' "
                f"and the password printable ASCII ({self.secret.fingerprint()})",
            )
        value = base64.b64encode(f"{user}:{password}".encode()).decode()
        return Token(value, self.kind, password=password)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.kind,
            "username": self.config.username.describe(),
            "secret": self.config.password.describe(),
            "secret_fingerprint": self.secret.fingerprint_or_none(),
            **self.secret_status(),
        }
