"""Checking a bearer token against a shared secret or a JWK Set, with the answer as a value.

``verify_hmac`` checks a token against a secret, ``verify_jwks`` against a JWK Set
(a file, a JWKS URL or an issuer URL, see ``JwksSource``). Both return a
``Verdict``: valid or not, a short machine ``reason`` and a ``detail`` sentence
saying why. Nothing here prints; no detail holds a secret or a token, only
fingerprints (``authgw.tokens.fingerprint``).

Checks run in this order, and the first that fails is the reason:

==========================  ================================================
``malformed``               not a compact JWS with JSON header and claims
``unsupported_algorithm``   ``alg`` does not fit the key: never ``none``, no
                            HS* against a JWKS, no RS*/ES*/PS*/EdDSA against
                            a secret
``unknown_kid``             the JWKS has no key for the token
``bad_signature``           the signature does not match the key
``invalid_claim``           ``exp``/``nbf``/``iat`` is not a number
``expired``                 ``exp`` has passed
``not_yet_valid``           ``nbf`` or ``iat`` is in the future
``wrong_issuer``            ``iss`` is not the expected issuer
``wrong_audience``          ``aud`` does not hold the expected audience
``valid``                   all of the above passed
==========================  ================================================

Claims are believed only once the signature matched. When a check cannot be made
at all (no secret, no JWKS), an exception says why::

    VerifyError             the input cannot be used to check a token
    ├── SecretUnavailable   a secret source (env:, file:, cmd:, config:) gave nothing
    └── JwksUnavailable     a JWK Set could not be fetched, read or parsed
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import jwt
from jwt.types import Options

from authgw import config as configmod
from authgw.config import SecretRef, VerifyConfig
from authgw.routing import is_loopback
from authgw.sources import SecretReader
from authgw.tokens import MissingSecret, fingerprint, peek

Reason = Literal[
    "valid",
    "missing",
    "unverifiable",
    "malformed",
    "unsupported_algorithm",
    "unknown_kid",
    "bad_signature",
    "invalid_claim",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
]

SourceKind = Literal["env", "file", "cmd", "config"]

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# Public-key algorithms a JWKS may verify. HS* is never among them: a JWKS holds public
# keys, and an HMAC check with a public key as secret is the classic alg-confusion attack.
JWKS_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_MIN_HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# PyJWT checks only the signature; the claims are checked here, on an injectable clock.
_SIGNATURE_ONLY: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
_MAX_JWKS_BYTES = 1 << 20


class VerifyError(Exception):
    """The input cannot be used to check a token (the CLI's exit status 2)."""


class SecretUnavailable(VerifyError):
    """A secret source gave no secret: unset, missing, unreadable, empty or failed."""


class JwksUnavailable(VerifyError):
    """A JWK Set could not be fetched, read or parsed, or holds no usable key."""


@dataclass(frozen=True)
class Verdict:
    """What a check found. ``detail`` is for people; ``reason`` is for code and tests.

    ``checked_with`` names the key: the secret's fingerprint, or ``kid X`` of a JWKS key.
    ``claims`` and ``header`` are the token's own (for display), ``{}`` if malformed.
    """

    valid: bool
    reason: Reason
    detail: str
    kid: str | None = None
    alg: str | None = None
    checked_with: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    header: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class _Finding(Exception):
    """A check failed; carries the verdict's reason and detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- HMAC --------------------------------------------------------------------------


def verify_hmac(
    token: str,
    secret: bytes,
    *,
    algorithms: Iterable[str] = HMAC_ALGORITHMS,
    audience: str | Iterable[str] | None = None,
    issuer: str | None = None,
    now: float | None = None,
    leeway: float = 0.0,
) -> Verdict:
    """Check ``token`` against the shared ``secret`` (HS256/384/512 only).

    A bad signature's detail names the token's ``kid`` beside the fingerprint of
    ``secret``: with authgw's default ``kid: fingerprint``, a drifted secret shows
    as two different fingerprints. Raises ``VerifyError`` for an unusable secret.
    """
    if not secret:
        raise VerifyError("the secret is empty")
    secret_fp = fingerprint(secret)
    peeked = peek(token)
    if peeked is None:
        return _malformed()
    alg, kid = _alg(peeked.header), peeked.kid
    notes: list[str] = []
    try:
        allowed = tuple(a for a in algorithms if a in HMAC_ALGORITHMS)
        _validate_algorithm(alg, allowed, hmac=True)
        minimum = _MIN_HMAC_BYTES.get(alg, 0)
        if len(secret) < minimum:
            notes.append(
                f"secret {secret_fp} is {len(secret)} bytes, below the {minimum} "
                f"RFC 7518 recommends for {alg}"
            )
        _validate_hmac_signature(token, secret, alg, kid, secret_fp)
        _validate_claims(peeked.claims, audience, issuer, _now(now), leeway)
    except _Finding as f:
        return _verdict(f.reason, f.detail, peeked.header, peeked.claims, secret_fp, notes)
    return _verdict("valid", "valid", peeked.header, peeked.claims, secret_fp, notes)


def _validate_hmac_signature(token: str, secret: bytes, alg: str, kid: str | None, fp: str) -> None:
    try:
        with warnings.catch_warnings():
            # A short secret is said once, as a note, not as a warning per check.
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            jwt.decode_complete(token, secret, algorithms=[alg], options=_SIGNATURE_ONLY)
    except jwt.InvalidSignatureError:
        raise _Finding("bad_signature", _hmac_mismatch(kid, fp)) from None
    except jwt.InvalidKeyError as e:
        # PyJWT refuses a PEM or certificate as an HMAC secret (alg confusion).
        raise VerifyError(f"secret {fp} cannot be an HMAC secret: {e}") from None
    except jwt.InvalidTokenError as e:
        raise _Finding("malformed", f"not a valid JWS: {e}") from None


def _hmac_mismatch(kid: str | None, secret_fp: str) -> str:
    if kid is None:
        return (
            f"signature does not match secret {secret_fp} "
            "(the token has no kid to say which secret signed it)"
        )
    if kid == secret_fp:
        return (
            f"signature does not match, though the token's kid names this secret "
            f"({secret_fp}): the token was altered after signing"
        )
    if kid.startswith("sha256:"):
        return (
            f"signed with kid {printable(kid)} but checked with secret {secret_fp}: "
            "the secrets differ (drift)"
        )
    return f"signed with kid {printable(kid)} but checked with secret {secret_fp}: no match"


# -- JWKS --------------------------------------------------------------------------


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


def verify_jwks(
    token: str,
    jwks: JwksSource | Jwks | Mapping[str, Any],
    *,
    algorithms: Iterable[str] = JWKS_ALGORITHMS,
    audience: str | Iterable[str] | None = None,
    issuer: str | None = None,
    now: float | None = None,
    leeway: float = 0.0,
) -> Verdict:
    """Check ``token`` against the public keys of a JWK Set.

    The key is the one whose ``kid`` the token names; a token without ``kid`` is
    tried against every key for its ``alg``. Raises ``JwksUnavailable`` if a
    ``JwksSource`` cannot be loaded.
    """
    keys = jwks.load() if isinstance(jwks, JwksSource) else jwks
    keys = keys if isinstance(keys, Jwks) else Jwks.parse(keys)
    peeked = peek(token)
    if peeked is None:
        return _malformed()
    alg, kid = _alg(peeked.header), peeked.kid
    used: str | None = None
    try:
        allowed = tuple(a for a in algorithms if a in JWKS_ALGORITHMS)
        _validate_algorithm(alg, allowed, hmac=False)
        used = _validate_jwks_signature(token, keys, alg, kid)
        _validate_claims(peeked.claims, audience, issuer, _now(now), leeway)
    except _Finding as f:
        return _verdict(f.reason, f.detail, peeked.header, peeked.claims, used)
    return _verdict("valid", "valid", peeked.header, peeked.claims, used)


def _validate_jwks_signature(token: str, jwks: Jwks, alg: str, kid: str | None) -> str:
    """The matching key's label (``kid X``), or a finding saying why no key matched."""
    if kid is not None:
        candidates = [k for k in jwks.keys if k.get("kid") == kid]
        if not candidates:
            known = ", ".join(printable(k) for k in jwks.kids()) or "none"
            raise _Finding(
                "unknown_kid", f"kid {printable(kid)} is not in {jwks.origin} (its kids: {known})"
            )
    else:
        candidates = [k for k in jwks.keys if k.get("alg", alg) == alg]
        if not candidates:
            raise _Finding(
                "unknown_kid", f"the token has no kid and {jwks.origin} has no {alg} key"
            )
    mismatches = []
    for data in candidates:
        label = f"kid {printable(str(data.get('kid', '?')))}"
        try:
            key = jwt.PyJWK(dict(data), algorithm=str(data.get("alg") or alg))
            jwt.decode_complete(token, key, algorithms=[alg], options=_SIGNATURE_ONLY)
        except jwt.InvalidSignatureError:
            continue
        except (jwt.InvalidAlgorithmError, jwt.PyJWKError, jwt.InvalidKeyError):
            key_alg = f" for {printable(str(data['alg']))}" if "alg" in data else ""
            mismatches.append(f"{label} is an {data.get('kty')} key{key_alg}")
            continue
        except jwt.InvalidTokenError as e:
            raise _Finding("malformed", f"not a valid JWS: {e}") from None
        return label
    if mismatches and len(mismatches) == len(candidates):
        raise _Finding("unsupported_algorithm", f"the token is {alg} but {'; '.join(mismatches)}")
    which = f"key kid {printable(kid)}" if kid is not None else f"any {alg} key"
    raise _Finding("bad_signature", f"signature does not match {which} of {jwks.origin}")


# -- shared rules ------------------------------------------------------------------


def _validate_algorithm(alg: str, allowed: tuple[str, ...], hmac: bool) -> None:
    """``alg`` must be one of ``allowed``, which holds one family only (``hmac`` or not)."""
    if not alg:
        raise _Finding("unsupported_algorithm", "the token's header has no alg")
    if alg.lower() == "none":
        raise _Finding("unsupported_algorithm", "alg none: an unsigned token is never accepted")
    if alg in allowed:
        return
    if alg in (JWKS_ALGORITHMS if hmac else HMAC_ALGORITHMS):
        family, other, instead = (
            ("a public-key", "a shared secret", "check it against a JWKS")
            if hmac
            else ("an HMAC", "a JWKS", "check it with its shared secret")
        )
        raise _Finding(
            "unsupported_algorithm",
            f"the token is {alg}, {family} algorithm, which {other} never checks; {instead}",
        )
    raise _Finding(
        "unsupported_algorithm", f"alg {printable(alg)} is not one of {', '.join(allowed)}"
    )


def _validate_claims(
    claims: Mapping[str, Any],
    audience: str | Iterable[str] | None,
    issuer: str | None,
    now: float,
    leeway: float,
) -> None:
    _validate_expiry(claims, now, leeway)
    _validate_not_before(claims, now, leeway)
    _validate_issuer(claims, issuer)
    _validate_audience(claims, audience)


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Finding("invalid_claim", f"{name} is {printable(json.dumps(value))}, not a number")
    return float(value)


def _validate_expiry(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp = _time_claim(claims, "exp")
    if exp is not None and exp <= now - leeway:
        raise _Finding("expired", f"expired {human_duration(now - exp)} ago (at {utc_time(exp)})")


def _validate_not_before(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    for name, what in (("nbf", "not valid before"), ("iat", "issued in the future, at")):
        when = _time_claim(claims, name)
        if when is not None and when > now + leeway:
            raise _Finding(
                "not_yet_valid",
                f"{what} {utc_time(when)} (in {human_duration(when - now)}; "
                f"{name} claim; clocks out of step?)",
            )


def _validate_issuer(claims: Mapping[str, Any], issuer: str | None) -> None:
    if issuer is None:
        return
    if "iss" not in claims:
        raise _Finding("wrong_issuer", f"the token has no iss claim, expected {printable(issuer)}")
    if claims["iss"] != issuer:
        raise _Finding(
            "wrong_issuer",
            f"issuer is {printable(str(claims['iss']))}, expected {printable(issuer)}",
        )


def _validate_audience(claims: Mapping[str, Any], audience: str | Iterable[str] | None) -> None:
    if audience is None:
        return
    expected = [audience] if isinstance(audience, str) else list(audience)
    want = " or ".join(printable(a) for a in expected)
    if "aud" not in claims:
        raise _Finding("wrong_audience", f"the token has no aud claim, expected {want}")
    aud = claims["aud"]
    have = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if have is None or not all(isinstance(a, str) for a in have):
        raise _Finding(
            "invalid_claim", f"aud is {printable(json.dumps(aud))}, not a string or list"
        )
    if not set(have) & set(expected):
        shown = ", ".join(printable(a) for a in have) or "empty"
        raise _Finding("wrong_audience", f"audience is {shown}, expected {want}")


# -- small helpers -----------------------------------------------------------------


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    return alg if isinstance(alg, str) else ""


def _malformed() -> Verdict:
    return Verdict(
        valid=False,
        reason="malformed",
        detail="not a JWT (expected three base64url segments, the first two JSON objects)",
    )


def _verdict(
    reason: Reason,
    detail: str,
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    checked_with: str | None,
    notes: Iterable[str] = (),
) -> Verdict:
    kid = header.get("kid")
    return Verdict(
        valid=reason == "valid",
        reason=reason,
        detail=detail,
        kid=kid if isinstance(kid, str) else None,
        alg=_alg(header) or None,
        checked_with=checked_with,
        claims=dict(claims),
        header=dict(header),
        notes=tuple(notes),
    )


def printable(text: str, limit: int = 80) -> str:
    """An untrusted string made safe to print on one line: escaped and cut."""
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def utc_time(ts: float) -> str:
    """``2026-11-22 05:00:00 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``5 h``, ``12 days``: the coarse unit a person reads at a glance."""
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} days"


# -- secret sources (the CLI's SRC) ------------------------------------------------


@dataclass(frozen=True)
class SecretSource:
    """``env:NAME``, ``file:PATH``, ``cmd:COMMAND`` or ``config:FILE#route``.

    ``env:`` and ``file:`` are read as the gateway reads ``{env: ...}`` and
    ``{file: ...}`` (one trailing newline dropped). ``cmd:`` runs COMMAND with
    ``/bin/sh -c`` and takes its stdout, one trailing newline dropped. ``config:``
    reads the hmac ``secret`` or static ``value`` of that route in that config.
    ``str()`` is the text as given; it names where the secret is, never the secret.
    """

    kind: SourceKind
    target: str
    route: str = ""

    @classmethod
    def parse(cls, text: str) -> SecretSource:
        """``ValueError`` saying the expected forms if ``text`` is none of them."""
        kind, sep, target = text.partition(":")
        if not sep or not target:
            raise ValueError(
                f"{printable(text)}: expected env:NAME, file:PATH, cmd:COMMAND or config:FILE#route"
            )
        if kind in ("env", "file", "cmd"):
            return cls(cast(SourceKind, kind), target)
        if kind == "config":
            path, sep, route = target.rpartition("#")
            if not sep or not path or not route:
                raise ValueError(f"{printable(text)}: expected config:FILE#route")
            return cls("config", path, route)
        raise ValueError(
            f"{printable(text)}: unknown source {printable(kind)!r}; "
            "expected env:NAME, file:PATH, cmd:COMMAND or config:FILE#route"
        )

    def __str__(self) -> str:
        suffix = f"#{self.route}" if self.kind == "config" else ""
        return f"{self.kind}:{self.target}{suffix}"

    def read(self, *, timeout: float = 10.0) -> bytes:
        """The secret's bytes, or ``SecretUnavailable`` saying why not (never with the secret)."""
        if self.kind == "cmd":
            return _run_command(self.target, timeout)
        if self.kind == "config":
            ref = _config_secret(self.target, self.route)
        elif self.kind == "env":
            ref = SecretRef(kind="env", name=self.target)
        else:
            ref = SecretRef(kind="file", name=str(Path(self.target).expanduser()))
        try:
            return SecretReader(ref).read()
        except MissingSecret as e:
            raise SecretUnavailable(str(e)) from None


def _config_secret(path: str, route_name: str) -> SecretRef:
    try:
        cfg = configmod.load(path)
    except configmod.ConfigError as e:
        raise SecretUnavailable(f"{path}: {e}") from None
    for route in cfg.routes:
        if route.name == route_name:
            token = route.token
            if token is None:
                if route.verify is not None and route.verify.secret is not None:
                    return route.verify.secret
                raise SecretUnavailable(f"route {route_name} has no shared secret")
            if token.type == "hmac":
                return token.secret
            if token.type == "static":
                return token.value
            raise SecretUnavailable(f"route {route_name} is type sts: it has no shared secret")
    names = ", ".join(r.name for r in cfg.routes)
    raise SecretUnavailable(f"{path} has no route {printable(route_name)} (routes: {names})")


def _run_command(command: str, timeout: float) -> bytes:
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SecretUnavailable(f"command did not finish within {timeout:g} s") from None
    except OSError as e:
        raise SecretUnavailable(f"cannot run /bin/sh: {e.strerror}") from None
    if done.returncode != 0:
        # stderr names the failure (permission denied, not found); stdout may hold the secret.
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        said = f": {printable(lines[-1], 200)}" if lines else ""
        raise SecretUnavailable(f"command exited with status {done.returncode}{said}")
    out = done.stdout
    out = out[:-2] if out.endswith(b"\r\n") else out.removesuffix(b"\n")
    if not out:
        raise SecretUnavailable("command printed nothing")
    return out


# -- verify routes (the addon) -----------------------------------------------------


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
    ) -> None:
        self.route = route
        self.config = config
        self._clock = clock
        self._secret = SecretReader(config.secret) if config.secret is not None else None
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
            with warnings.catch_warnings():  # a short secret is the config's business
                warnings.simplefilter("ignore")
                return verify_hmac(
                    token, secret, audience=audience, issuer=c.issuer, now=self._clock()
                )
        jwks = await self._load_jwks(force=False)
        verdict = verify_jwks(token, jwks, audience=audience, issuer=c.issuer, now=self._clock())
        if verdict.reason == "unknown_kid" and self._clock() - self._fetched_at > (
            self._refetch_after
        ):
            jwks = await self._load_jwks(force=True)  # keys may have rotated
            verdict = verify_jwks(
                token, jwks, audience=audience, issuer=c.issuer, now=self._clock()
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
