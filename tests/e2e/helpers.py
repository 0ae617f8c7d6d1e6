"""Helpers for authgw end-to-end tests: JWT checks, flow log reading, raw requests, redaction.

These restate the contract (shared/DESIGN.md) on their own instead of importing the
addon's code, so a test fails when the addon drifts from the contract.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt

from tests.e2e.clients import Response, wait_until


def new_secret() -> str:
    """A fresh 80-byte secret: above RFC 7518's minimum for HS512, so PyJWT never warns."""
    return secrets.token_hex(40)


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, the way editors and secret managers do."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def fingerprint(secret: str | bytes) -> str:
    """DESIGN.md: `sha256:` + the first 12 hex digits of SHA-256 over the secret bytes."""
    data = secret.encode() if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


def fingerprints(values: Iterable[str]) -> list[str]:
    """Fingerprints of credentials, to compare them without a failure message showing them."""
    return [fingerprint(v) for v in values]


def bearer_token(value: str | None) -> str:
    """The token in an `Authorization: Bearer <token>` value (AssertionError if not one)."""
    assert value is not None, "no Authorization header"
    scheme, _, token = value.partition(" ")
    assert scheme == "Bearer" and token, "not a Bearer credential"
    return token


def verify_jwt(
    token: str, secret: str, algorithm: str, *, audience: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of `token` after checking its signature, exp and aud with PyJWT."""
    header = jwt.get_unverified_header(token)
    options = {"verify_aud": audience is not None}
    claims = jwt.decode(
        token, secret, algorithms=[algorithm], audience=audience, options=options, leeway=5
    )
    return header, claims


def read_flowlog(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines flow log ([] if the file does not exist yet)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for_records(
    path: Path, path_prefix: str, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Wait for `count` flow log records whose path starts with `path_prefix`; return them.

    Waits a moment longer to catch a record written twice for one flow.
    """

    def matching() -> list[dict[str, Any]]:
        return [r for r in read_flowlog(path) if str(r.get("path", "")).startswith(path_prefix)]

    wait_until(lambda: len(matching()) >= count, timeout, message=f"{count} flow log record(s)")
    time.sleep(0.1)
    return matching()


def raw_request(port: int, head: bytes, body: bytes = b"", *, timeout: float = 10.0) -> Response:
    """Send `head` (request line and headers, without the final blank line) to 127.0.0.1.

    For header values http.client would refuse to send. Adds `Connection: close`.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n\r\n" + body)
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            payload = resp.read()
        finally:
            resp.close()
        return Response(resp.status, resp.reason, resp.getheaders(), payload)


def leaks(texts: Mapping[str, str], needles: Iterable[str]) -> list[str]:
    """Where any of `needles` occurs in `texts` (name -> text), as "name: fingerprint".

    Failure messages name fingerprints, never the secret or token itself.
    """
    found = []
    for needle in set(needles):
        for name, text in texts.items():
            if needle and needle in text:
                found.append(f"{name}: {fingerprint(needle)}")
    return sorted(found)
