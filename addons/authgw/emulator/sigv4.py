"""The emulator's SigV4 echo endpoint: a request's Signature Version 4, checked as AWS does.

``SigV4Verifier.check`` recomputes the signature with botocore's own signer
(``SigV4Auth``; ``S3SigV4Auth`` for service ``s3``) from what was received: the method,
the path and query as sent, the headers named in ``SignedHeaders``, and the body's
SHA-256 against ``X-Amz-Content-Sha256``. It knows the credentials it was given (the
demo key by default), checks a session credential's ``X-Amz-Security-Token`` and the
request time (15 minutes either way, as AWS does), and says why a request fails in
AWS's words (``SignatureDoesNotMatch``, ``InvalidClientTokenId``, ...). The answer never
holds a secret key, a session token or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SIGV4_PATH = "/_sigv4/"  # everything below echoes a request whose signature checks out
MAX_SKEW = 15 * 60  # seconds, as AWS allows
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class SigV4Credential:
    access_key: str
    secret_key: str = ""
    token: str | None = None


@dataclass(frozen=True)
class SigV4Verdict:
    ok: bool
    code: str  # "ok", or the AWS error code
    message: str
    service: str | None = None
    region: str | None = None
    access_key: str | None = None
    signed_headers: tuple[str, ...] = ()


class SigV4Verifier:
    """Checks requests against the credentials it holds (access key id -> credential)."""

    def __init__(
        self, credentials: Iterable[SigV4Credential], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._credentials = {c.access_key: c for c in credentials}
        self._clock = clock

    def add(self, credential: SigV4Credential) -> None:
        self._credentials[credential.access_key] = credential

    def check(
        self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> SigV4Verdict:
        received = [(k.lower(), v) for k, v in headers]
        lookup: dict[str, list[str]] = {}
        for k, v in received:
            lookup.setdefault(k, []).append(v)
        auth = (lookup.get("authorization") or [""])[0]
        m = _AUTH.fullmatch(auth.strip())
        if m is None:
            return _no("MissingAuthenticationToken", "no AWS4-HMAC-SHA256 Authorization header")
        known = self._credentials.get(m["key"])
        if known is None:
            return _no("InvalidClientTokenId", "the access key id is not one this emulator holds")
        signed = tuple(m["signed"].split(";"))
        verdict = _Scope(m["service"], m["region"], m["key"], signed)
        for name in ("host", "x-amz-date"):
            if name not in signed or name not in lookup:
                return verdict.no("SignatureDoesNotMatch", f"{name} is not among SignedHeaders")
        unsigned = sorted({k for k in lookup if k.startswith("x-amz-")} - set(signed))
        if unsigned:
            return verdict.no("AccessDenied", f"x-amz-* headers not signed: {', '.join(unsigned)}")
        if "#" in url:
            return verdict.no("InvalidURI", "the request target holds a '#'")
        stamp = (lookup.get("x-amz-date") or [""])[0]
        try:
            at = timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return verdict.no("IncompleteSignature", "X-Amz-Date is not YYYYMMDDTHHMMSSZ")
        if stamp[:8] != m["date"]:
            reason = "the credential scope's date is not X-Amz-Date's"
            return verdict.no("SignatureDoesNotMatch", reason)
        if abs(self._clock() - at) > MAX_SKEW:
            return verdict.no("RequestExpired", "X-Amz-Date is more than 15 minutes away")
        tokens = lookup.get("x-amz-security-token", [])
        if known.token is not None:
            if tokens != [known.token]:
                return verdict.no("InvalidClientTokenId", "the session token is missing or wrong")
            if "x-amz-security-token" not in signed:
                return verdict.no("SignatureDoesNotMatch", "the session token is not signed")
        elif tokens:
            return verdict.no("InvalidClientTokenId", "a session token for long-term credentials")
        payloads = lookup.get("x-amz-content-sha256") or []
        payload = payloads[0] if payloads else None
        s3 = m["service"] == "s3"
        if s3 and payload is None:
            return verdict.no("InvalidRequest", "S3 needs x-amz-content-sha256")
        if payload == UNSIGNED_PAYLOAD and not s3:
            # S3 takes UNSIGNED-PAYLOAD; the other services hash the body themselves.
            return verdict.no("SignatureDoesNotMatch", "UNSIGNED-PAYLOAD outside S3")
        if payload is not None and payload != UNSIGNED_PAYLOAD:
            if not hmac.compare_digest(payload, hashlib.sha256(body).hexdigest()):
                return verdict.no("XAmzContentSHA256Mismatch", "the body's SHA-256 differs")
        request = AWSRequest(method=method, url=url, data=body)
        for k, v in received:
            if k in signed:
                request.headers[k] = v  # appends: a repeated header keeps every value
        request.context["timestamp"] = stamp
        creds = Credentials(known.access_key, known.secret_key, known.token)
        signer_class = S3SigV4Auth if m["service"] == "s3" else SigV4Auth
        signer = signer_class(creds, m["service"], m["region"])
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, m["signature"]):
            return verdict.no(
                "SignatureDoesNotMatch",
                "the signature we calculated does not match the one sent (check the method, "
                "path, query, signed headers and body)",
            )
        return SigV4Verdict(True, "ok", "signature valid", *verdict.fields())


@dataclass(frozen=True)
class _Scope:
    service: str
    region: str
    access_key: str
    signed: tuple[str, ...]

    def fields(self) -> tuple[str, str, str, tuple[str, ...]]:
        return self.service, self.region, self.access_key, self.signed

    def no(self, code: str, message: str) -> SigV4Verdict:
        return SigV4Verdict(False, code, message, *self.fields())


def _no(code: str, message: str) -> SigV4Verdict:
    return SigV4Verdict(False, code, message)


def echo(verdict: SigV4Verdict, method: str, path: str, body: bytes) -> dict[str, Any]:
    """What the echo endpoint answers a request that verified: no credential in it."""
    return {
        "verified": verdict.ok,
        "service": verdict.service,
        "region": verdict.region,
        "signed_headers": list(verdict.signed_headers),
        "method": method,
        "path": path,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_length": len(body),
    }
