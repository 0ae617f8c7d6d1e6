"""Checking the tokens clients send to a route with ``verify:`` (for the addon)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from authgw.config import VerifyConfig
from authgw.sources.remote import SecretStore
from authgw.tokens import MissingSecret
from authgw.verify.check import verify_hmac, verify_jwks
from authgw.verify.errors import JwksUnavailable, SecretUnavailable
from authgw.verify.jwks import Jwks, JwksSource
from authgw.verify.verdict import Verdict


class RouteVerifier:
    """Checks the bearer tokens clients send to a route with ``verify:``.

    The secret is read like a token source's (file re-read when it changes). A JWKS
    is fetched off the event loop on first use, kept for ``jwks_ttl`` seconds, and
    fetched again early when a token names a kid it does not hold (at most once per
    ``refetch_after`` seconds, so unknown kids cannot make us hammer the issuer).
    """

    def __init__(
        self,
        route: str,
        config: VerifyConfig,
        *,
        clock: Callable[[], float] = time.time,
        jwks_ttl: float = 300.0,
        refetch_after: float = 30.0,
        secrets: SecretStore | None = None,
    ) -> None:
        self.route = route
        self.config = config
        self._clock = clock
        store = secrets or SecretStore()
        self._secret = store.reader(config.secret) if config.secret is not None else None
        self._jwks_source = JwksSource(config.jwks) if config.jwks is not None else None
        self._jwks: Jwks | None = None
        self._fetched_at = float("-inf")
        self._failure: tuple[float, JwksUnavailable] | None = None
        self._ttl = jwks_ttl
        self._refetch_after = refetch_after
        self._lock = asyncio.Lock()

    def describe(self) -> dict[str, Any]:
        c = self.config
        info: dict[str, Any] = {
            "mode": "enforce" if c.enforce else "observe",
            "audience": c.audience,
            "issuer": c.issuer,
        }
        if self._secret is not None:
            info["secret"] = self._secret.ref.describe()
            info["secret_fingerprint"] = self._secret.fingerprint_or_none()
        else:
            info["jwks"] = c.jwks
        return info

    async def check(self, token: str, audience: str | None) -> Verdict:
        """A verdict for ``token``; ``VerifyError`` when it cannot be checked at all."""
        c = self.config
        if self._secret is not None:
            try:
                secret = self._secret.read()
            except MissingSecret as e:
                raise SecretUnavailable(str(e)) from None
            # A short secret is a note in the verdict, never a warning per request.
            return verify_hmac(
                token,
                secret,
                audience=audience,
                issuer=c.issuer,
                now=self._clock(),
                leeway=c.leeway,
            )
        jwks = await self._load_jwks(force=False)
        verdict = verify_jwks(
            token, jwks, audience=audience, issuer=c.issuer, now=self._clock(), leeway=c.leeway
        )
        if verdict.reason == "unknown_kid" and self._clock() - self._fetched_at > (
            self._refetch_after
        ):
            jwks = await self._load_jwks(force=True)  # keys may have rotated
            verdict = verify_jwks(
                token, jwks, audience=audience, issuer=c.issuer, now=self._clock(), leeway=c.leeway
            )
        return verdict

    async def _load_jwks(self, *, force: bool) -> Jwks:
        async with self._lock:  # one fetch for many concurrent requests
            fresh = self._clock() - self._fetched_at < self._ttl
            if self._jwks is not None and fresh and not force:
                return self._jwks
            if (
                force
                and self._jwks is not None
                and (self._clock() - self._fetched_at <= self._refetch_after)
            ):
                return self._jwks
            now = self._clock()
            if self._failure is not None and now - self._failure[0] < self._refetch_after:
                if self._jwks is not None:
                    return self._jwks
                raise self._failure[1]  # the issuer is down: do not ask it per request
            assert self._jwks_source is not None
            loop = asyncio.get_running_loop()
            try:
                self._jwks = await loop.run_in_executor(None, self._jwks_source.load)
            except JwksUnavailable as e:
                self._failure = (now, e)
                if self._jwks is None:
                    raise
                return self._jwks  # keep serving the keys we have
            self._failure = None
            self._fetched_at = now
            return self._jwks
