"""JWK Sets: parsing one (``Jwks``) and loading one from a file or URL (``JwksSource``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authgw.routing import is_loopback
from authgw.verify.errors import JwksUnavailable

_MAX_JWKS_BYTES = 1 << 20


@dataclass(frozen=True)
class Jwks:
    """A parsed JWK Set: its keys as JSON objects, and where it came from (for messages)."""

    keys: tuple[Mapping[str, Any], ...]
    origin: str = "the JWKS"

    @classmethod
    def parse(cls, data: bytes | str | Mapping[str, Any], origin: str = "the JWKS") -> Jwks:
        """A JWK Set from JSON text or an already parsed object; ``JwksUnavailable`` if not."""
        if not isinstance(data, Mapping):
            try:
                data = json.loads(data)
            except (ValueError, UnicodeDecodeError) as e:
                raise JwksUnavailable(f"{origin} is not JSON ({e})") from None
        keys = data.get("keys") if isinstance(data, Mapping) else None
        if not isinstance(keys, list):
            raise JwksUnavailable(f'{origin} is not a JWK Set (no "keys" list)')
        usable = tuple(k for k in keys if isinstance(k, Mapping) and _is_signing_key(k))
        if not usable:
            raise JwksUnavailable(f"{origin} holds no public signing keys")
        return cls(usable, origin)

    def kids(self) -> list[str]:
        return [str(k["kid"]) for k in self.keys if "kid" in k]


def _is_signing_key(key: Mapping[str, Any]) -> bool:
    # Symmetric ("oct") keys are skipped: a JWKS check must never become an HMAC check.
    return key.get("kty") in ("RSA", "EC", "OKP") and key.get("use", "sig") == "sig"


class JwksSource:
    """Where a JWK Set comes from: a file path, a JWKS URL, or an issuer URL.

    For an http(s) URL whose path neither ends in ``.json`` nor contains
    ``/.well-known/``, ``<url>/.well-known/jwks.json`` is tried first (the issuer
    form that AWS STS and the emulator use), then the URL as given. Fetches honour
    the proxy environment variables except for loopback hosts, and time out.
    """

    def __init__(self, location: str, *, timeout: float = 5.0) -> None:
        self.location = location
        self.timeout = timeout

    def __str__(self) -> str:
        return self.location

    @property
    def is_url(self) -> bool:
        return urlsplit(self.location).scheme in ("http", "https")

    def candidates(self) -> list[str]:
        """The URLs to try, in order (for a URL location)."""
        url = self.location
        path = urlsplit(url).path
        if path.endswith(".json") or "/.well-known/" in path:
            return [url]
        return [url.rstrip("/") + "/.well-known/jwks.json", url]

    def load(self) -> Jwks:
        """The JWK Set, or ``JwksUnavailable`` saying what went wrong where."""
        if not self.is_url:
            try:
                data = Path(self.location).expanduser().read_bytes()
            except OSError as e:
                raise JwksUnavailable(f"cannot read {self.location}: {e.strerror}") from None
            return Jwks.parse(data, self.location)
        problems = []
        for url in self.candidates():
            try:
                return Jwks.parse(self._fetch(url), url)
            except JwksUnavailable as e:
                problems.append(str(e))
        raise JwksUnavailable("; ".join(problems))

    def _fetch(self, url: str) -> bytes:
        host = urlsplit(url).hostname or ""
        # A proxy (maybe this very gateway) has no business with a loopback JWKS.
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with opener.open(request, timeout=self.timeout) as response:
                data: bytes = response.read(_MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as e:
            e.close()
            raise JwksUnavailable(f"{url} answered HTTP {e.code}") from None
        except urllib.error.URLError as e:
            raise JwksUnavailable(f"cannot fetch {url}: {e.reason}") from None
        except TimeoutError:
            raise JwksUnavailable(f"{url} did not answer within {self.timeout:g} s") from None
        except OSError as e:
            raise JwksUnavailable(f"cannot fetch {url}: {e}") from None
        if len(data) > _MAX_JWKS_BYTES:
            raise JwksUnavailable(f"{url} sent more than {_MAX_JWKS_BYTES} bytes")
        return data
