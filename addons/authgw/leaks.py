"""The leak check: no credential the gateway holds is forwarded where its route does not go.

Needles: each route's placeholder, the secret its source reads (an hmac secret, a static
value, a basic password, an OAuth2 client secret) and the tokens it issued that are still
cached, each owned by the route(s) it belongs to. A request is searched in its header
values, its URL, the decoded ``user:password`` of a Basic credential and the first
``leak_check_body_bytes`` of its body, for every needle as it is, percent-encoded (either
hex case) and base64 (standard and URL-safe); a needle whose owners do not include the
request's route (none, for an unrouted request) is a leak: 403 ``credential_elsewhere``
under ``leak_check: block``, a log line and a count under ``observe``.

One Aho-Corasick automaton (pyahocorasick) holds every form of every needle, so a search
is one pass over the text whatever the number of secrets. It is rebuilt when the needles
change, which is looked at once a second (file secrets are re-read as often) and at once
after a reload. Needles shorter than 8 characters are not searched for (they would match
by chance).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import ahocorasick
from mitmproxy import http

from authgw.tokens import fingerprint

if TYPE_CHECKING:
    from authgw.runtime import Runtime

MIN_NEEDLE = 8
RECHECK = 1.0  # seconds between looks at whether the needles changed
_chain = itertools.chain.from_iterable


@dataclass(frozen=True)
class Found:
    """A needle in a request: whose it is, what it is, and its fingerprint."""

    owners: frozenset[str]
    what: str  # placeholder | secret | token
    fingerprint: str


def forms(value: str) -> Iterator[str]:
    """``value`` as is (and, beyond ASCII, as its UTF-8 bytes read as latin-1, which is how
    a request is read), percent-encoded (both hex cases) and base64 in both alphabets: the
    part of its encoding that does not depend on what stands before or after it, for each
    of the three places it may start in a base64 group."""
    raw = value.encode("utf-8", "surrogateescape")
    yield value
    if not value.isascii():
        yield raw.decode("latin-1")
    quoted = quote(value, safe="")
    if quoted != value:
        yield quoted
        yield re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quoted)
    for offset in range(3):
        whole = (offset + len(raw)) // 3 * 4  # groups that end within the value
        start = 4 if offset else 0  # the first group holds bytes from before it
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            part = encode(b"\0" * offset + raw)[start:whole]
            if len(part) >= MIN_NEEDLE:
                yield part.decode()


def needles(rt: Runtime) -> dict[str, tuple[frozenset[str], str]]:
    """{value: (owning routes, kind)} for everything the runtime holds."""
    found: dict[str, tuple[set[str], str]] = {}

    def add(value: str | None, owner: str, what: str) -> None:
        if value and len(value) >= MIN_NEEDLE:
            found.setdefault(value, (set(), what))[0].add(owner)

    for route in rt.config.routes:
        add(route.placeholder, route.name, "placeholder")
        reader = getattr(rt.sources.get(route.name), "secret", None)
        try:
            value = reader.read().decode("utf-8", "surrogateescape") if reader else None
        except Exception:  # noqa: BLE001 - a missing secret holds nothing to leak
            value = None
        add(value, route.name, "secret")
    for key, token in rt.cache.items():
        add(token.value, key.route, "token")
        add(token.password, key.route, "secret")
    return {v: (frozenset(owners), what) for v, (owners, what) in found.items()}


class LeakCheck:
    """The automaton for one runtime's needles, rebuilt when they change."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._automaton: Any = None
        self._needles: dict[str, tuple[frozenset[str], str]] = {}
        self._runtime: weakref.ref[Runtime] | None = None  # not kept alive by the check
        self._looked = float("-inf")

    def _refresh(self, rt: Runtime) -> None:
        now = self._clock()
        same = self._runtime is not None and self._runtime() is rt
        if same and now - self._looked < RECHECK:
            return
        self._runtime, self._looked = weakref.ref(rt), now
        current = needles(rt)
        if current == self._needles:
            return
        automaton = ahocorasick.Automaton()
        for value, (owners, what) in current.items():
            found = Found(owners, what, fingerprint(value))
            for form in forms(value):
                automaton.add_word(form, found)
        automaton.make_automaton()
        self._automaton = automaton if current else None
        self._needles = current

    def search(self, rt: Runtime, text: str, route: str | None) -> Found | None:
        """The first needle in ``text`` that ``route`` (None: unrouted) does not own."""
        self._refresh(rt)
        automaton = self._automaton
        if automaton is None:
            return None
        for _, found in automaton.iter(text):
            if route not in found.owners:
                return found  # type: ignore[no-any-return]
        return None


def request_text(req: http.Request) -> str:
    """What a request's head carries, as one text (latin-1: byte for byte): header names
    and values, the URL and the host (or ``:authority``), and any Basic credential
    decoded. Every request passes here: one join, and a loop over the fields only when
    one may be Basic."""
    fields = req.headers.fields
    data = req.data
    blob = b"\n".join([*_chain(fields), bytes(data.path), data.authority, data.host.encode()])
    if blob.lower().find(b"basic") >= 0:  # a Basic credential, in any case: decode it
        for _, value in fields:
            decoded = _basic(bytes(value))
            if decoded:
                blob += b"\n" + decoded
    return blob.decode("latin-1")  # one pass: no needle holds a newline


def _basic(raw: bytes) -> bytes | None:
    """The decoded ``user:password`` of a Basic value, read leniently (any space after the
    scheme, padding missing, stray characters skipped), or None."""
    if raw[:5].lower() != b"basic" or raw[5:6] not in (b" ", b"\t"):
        return None
    encoded = raw[5:].strip()
    try:
        return base64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None


def body_text(req: http.Request, limit: int) -> str:
    """The first ``limit`` bytes of a body that is not streamed, and the trailers, as text."""
    trailers = b"\n".join(_chain(req.trailers.fields)) if req.trailers else b""
    if req.stream or limit <= 0:
        return trailers.decode("latin-1")
    raw = (req.raw_content or b"")[:limit]
    return (raw + b"\n" + trailers if trailers else raw).decode("latin-1")
