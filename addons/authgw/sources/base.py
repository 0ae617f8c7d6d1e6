"""What every token source is, and how sources read their secrets.

``TokenSource`` is the protocol the cache, the request decision and the CLI need of a
source; ``SecretReader`` reads a secret from env, a file or a literal, re-reading a file
when it changes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Protocol

from authgw.config import SecretRef
from authgw.tokens import MissingSecret, Token, fingerprint

Clock = Callable[[], float]

_generations = itertools.count(1)


def next_generation() -> int:
    """A number no source built before has: a source's generation goes into its cache
    keys, so a token made under settings a reload replaced is never served under the new
    ones (``TokenCache.live``)."""
    return next(_generations)


class TokenSource(Protocol):
    """What the cache and the addon need of a source."""

    kind: str
    generation: int  # next_generation() when built

    def check(self) -> None:
        """Raise if the source cannot work at all (``MissingSecret``, botocore errors)."""

    def cache_params(self) -> Hashable:
        """Everything besides route and audience that changes the token.

        May raise ``TokenUnavailable`` (a secret that is not there).
        """

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        """A fresh token for ``audience``, or ``TokenUnavailable``."""

    def describe(self) -> dict[str, Any]:
        """Status fields: source kind, where the secret lives, its fingerprint."""

    def upstream_rejected(self) -> None:
        """An upstream answered 401 to a token from this source (re-read what may be stale)."""

    async def settle(self) -> None:
        """Wait for the re-reads ``upstream_rejected`` started, each within its timeout
        (a retry_on_401 resend then signs with the new value)."""


class SecretBacked:
    """A source made from one secret (hmac: the key; static: the token itself)."""

    def __init__(
        self,
        route: str,
        config: Any,
        secret: SecretRef,
        *,
        clock: Clock = time.time,
        reader: SecretLike | None = None,
    ) -> None:
        self.route = route
        self.config = config
        self.generation = next_generation()
        self._clock = clock
        self.secret: SecretLike = reader or SecretReader(secret)

    def upstream_rejected(self) -> None:
        self.secret.refresh_soon()

    async def settle(self) -> None:
        await settled(self.secret)

    def secret_status(self) -> dict[str, Any]:
        """For /status: the value's age and the last read error of a re-read secret."""
        return self.secret.status()


class SecretLike(Protocol):
    """What a source needs of its secret: ``SecretReader`` (env, file, literal: read here,
    so the last four are no-ops) or ``remote.RemoteSecret`` (re-read in the background)."""

    ref: SecretRef

    def snapshot(self) -> tuple[bytes, str]:
        """The value and its fingerprint, read as one."""

    def read(self) -> bytes: ...
    def fingerprint(self) -> str: ...
    def fingerprint_or_none(self) -> str | None: ...

    def refresh_soon(self) -> None:
        """Re-read soon: an upstream refused what the value made (it may be rotated)."""

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a read in progress; False if it still runs."""

    def status(self) -> dict[str, Any]:
        """For /status: the value's age, the last read error (a re-read secret)."""


class SecretReader:
    """Reads a secret from env, file or a literal; re-reads a file when it changes.

    An env var is looked up, and a file stat-ed, at most once per ``recheck`` seconds
    (monotonic), so calling ``read`` on every request costs a clock read. One trailing
    newline is dropped.
    """

    def __init__(
        self, ref: SecretRef, *, recheck: float = 1.0, monotonic: Clock = time.monotonic
    ) -> None:
        self.ref = ref
        self._recheck = recheck
        self._monotonic = monotonic
        self._next_check = float("-inf")
        self._stat: tuple[int, int, int] | None = None
        self._value: bytes | None = None
        self._current: tuple[bytes, str] | None = None  # (value, fingerprint), made once

    def snapshot(self) -> tuple[bytes, str]:
        """The secret's bytes and fingerprint, or ``MissingSecret`` naming the env var or
        file."""
        assert not self.ref.remote, "remote secrets are read by sources.remote.RemoteSecret"
        value = self._load()
        if not value:
            raise MissingSecret(self._missing_reason(), self.ref)
        current = self._current
        if current is None or current[0] is not value:
            current = self._current = (value, fingerprint(value))
        return current

    def read(self) -> bytes:
        return self.snapshot()[0]

    def fingerprint(self) -> str:
        return self.snapshot()[1]

    def fingerprint_or_none(self) -> str | None:
        try:
            return self.fingerprint()
        except MissingSecret:
            return None

    def refresh_soon(self) -> None:
        pass  # a file is re-read when it changes; env and literals do not change

    def wait(self, timeout: float) -> bool:
        return True  # nothing is read in the background

    def status(self) -> dict[str, Any]:
        return {}

    def _set(self, value: bytes | None) -> bytes | None:
        if value != self._value:
            self._value = value
        return self._value

    def _load(self) -> bytes | None:
        ref = self.ref
        if ref.kind == "literal":
            return self._set((ref.literal or "").encode())
        now = self._monotonic()
        if now < self._next_check:
            return self._value
        self._next_check = now + self._recheck
        if ref.kind == "env":  # os.environ is Python code: also looked at once per recheck
            return self._set(os.environ.get(ref.name, "").encode() or None)
        try:
            st = os.stat(ref.name)
        except OSError:
            self._stat = None
            return self._set(None)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stat:
            self._stat = stamp
            try:
                data = Path(ref.name).read_bytes()
            except OSError:
                return self._set(None)
            self._set(_strip_newline(data) or None)
        return self._value

    def _missing_reason(self) -> str:
        ref = self.ref
        if ref.kind == "env":
            return f"env var {ref.name} is not set or empty"
        if ref.kind == "file":
            if not Path(ref.name).exists():
                return f"file {ref.name} does not exist"
            return f"file {ref.name} is unreadable or empty"
        return "the literal in the config file is empty"


_SETTLE_POLL = 0.05  # seconds between looks at a read in progress


async def settled(secret: SecretLike) -> None:
    """Wait, within the read's timeout, for a kept secret's read in progress. It looks
    every 50 ms instead of blocking a thread: the loop's default pool also resolves
    upstream names, and many retries waiting there would hold up every flow."""
    if secret.wait(0):
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + secret.ref.timeout + 1.0
    while not secret.wait(0) and loop.time() < deadline:
        await asyncio.sleep(_SETTLE_POLL)


def _strip_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data
