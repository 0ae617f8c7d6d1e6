"""Test doubles: a clock tests move by hand, and a token source they script; and the
addon's request hooks run on one flow as mitmproxy runs them (``run_and_capture``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.http import Headers
from mitmproxy.test import taddons

from authgw.addon import AuthGateway
from authgw.tokens import Token, TokenUnavailable


class FakeClock:
    """Wall-clock stand-in: ``time()`` returns what the test set."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSource:
    """A token source that hands out numbered tokens, or the errors queued for it."""

    kind = "fake"
    generation = 0

    def __init__(self, clock: FakeClock, lifetime: float | None = 300.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.errors: list[TokenUnavailable] = []
        self.gate: asyncio.Event | None = None  # set: fetches wait until it is set

    def check(self) -> None:
        pass

    def cache_params(self) -> Hashable:
        return None

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        expires = None if self.lifetime is None else self.clock() + self.lifetime
        return Token(
            value=f"token-{self.calls}", source=self.kind, kid=f"k{self.calls}", expires_at=expires
        )

    def describe(self) -> dict[str, Any]:
        return {"source": self.kind}

    def upstream_rejected(self) -> None:
        pass

    async def settle(self) -> None:
        pass


async def hook(result: Awaitable[None] | None) -> None:
    """Run a hook as mitmproxy does: await its result only if it is awaitable."""
    if result is not None:
        await result


def run_and_capture(
    config: Path, f: Any, capture: Any, response: http.Response | None = None
) -> None:
    """The request hooks on ``f``; ``capture()`` once they are done (the wire's view, before
    redaction); then the response hook on ``response``, if given and not answered here."""

    async def main() -> None:
        addon = AuthGateway()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=str(config))
            await hook(addon.requestheaders(f))
            await hook(addon.request(f))
            capture()
            if response is not None and f.response is None:
                f.response = response
                await hook(addon.response(f))
            addon.done()

    asyncio.run(main())


def wire_all(headers: Headers, name: str) -> list[str]:
    """The values mitmproxy sends for header ``name``: their bytes, not what a view of the
    flow shows (authgw masks credentials in flight)."""
    key = name.lower().encode()
    return [bytes(v).decode() for k, v in headers.fields if k.lower() == key]


def wire(headers: Headers, name: str) -> str | None:
    values = wire_all(headers, name)
    return ", ".join(values) if values else None
