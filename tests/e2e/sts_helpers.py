"""Helpers for the STS end-to-end tests (tests/e2e/test_sts.py).

    sts_gateway_env       the environment a gateway needs to reach the in-process emulator,
                          with the host's own AWS configuration shut out
    TokenVerifier         verifies a JWT against the emulator's JWKS
    bearer_token          the token a recorded request carried
    max_fetches           how many fetches the cache's error backoff allows in a time span
    send_then_disconnect  a raw client that sends a request through the proxy and vanishes

Tokens never reach a failure message: `bearer_token` returns a `Bearer`, a str whose
repr is the token's fingerprint, and `TokenVerifier` reports failures by fingerprint.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from authgw.emulator import DEMO_ACCESS_KEY_ID, DEMO_REGION, DEMO_SECRET_ACCESS_KEY
from authgw.tokens import fingerprint
from scripts.loopback import free_port
from tests.e2e.upstreams import RecordedRequest

BEARER = "Bearer "


# --------------------------------------------------------------------------- gateway env


def sts_gateway_env(endpoint_url: str, tmp_dir: Path) -> dict[str, str | None]:
    """Overrides for `Gateway(env=...)`: STS at `endpoint_url`, dummy credentials.

    Every AWS_* variable of this process is removed first, and the config and
    credentials files point to files that do not exist, so neither the host's
    profiles nor instance metadata can change what boto3 does.
    """
    env: dict[str, str | None] = {k: None for k in os.environ if k.upper().startswith("AWS_")}
    env.update(
        {
            "AWS_ENDPOINT_URL_STS": endpoint_url,
            "AWS_REGION": DEMO_REGION,
            "AWS_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DEMO_SECRET_ACCESS_KEY,
            "AWS_CONFIG_FILE": str(tmp_dir / "no-such-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_dir / "no-such-aws-credentials"),
            "AWS_PROFILE": None,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def closed_loopback_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    return free_port()


# --------------------------------------------------------------------------- tokens


class Bearer(str):
    """A token value whose repr is its fingerprint, so pytest never prints the token."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<token {fingerprint(self)}>"


def bearer_token(request: RecordedRequest) -> Bearer:
    """The token in the request's Authorization header (AssertionError if there is none)."""
    values = request.header_values("Authorization")
    # No value in the assertions: pytest would print it.
    count = len(values)
    assert count == 1, f"{count} Authorization headers on {request.path}"
    is_bearer = values[0].startswith(BEARER)
    assert is_bearer, f"Authorization on {request.path} is not a bearer token"
    return Bearer(values[0][len(BEARER) :])


class TokenVerifier:
    """Checks signature, algorithm, issuer and audience of emulator tokens via its JWKS."""

    def __init__(self, jwks_url: str, issuer: str) -> None:
        self.issuer = issuer
        self._jwks = jwt.PyJWKClient(jwks_url, timeout=5)

    def verify(self, token: str, *, audience: Sequence[str], algorithm: str) -> dict[str, Any]:
        """The verified claims; `aud` must be exactly `audience` (a string when one)."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=list(audience),
                issuer=self.issuer,
                options={"require": ["aud", "exp", "iat", "iss"]},
            )
        except jwt.PyJWTError as e:
            # from None: PyJWT's frames hold the token, and pytest prints frame arguments.
            raise AssertionError(
                f"token {fingerprint(token)} does not verify: {type(e).__name__}: {e}"
            ) from None
        assert header.get("alg") == algorithm, f"alg {header.get('alg')!r}, not {algorithm}"
        expected_aud: str | list[str] = audience[0] if len(audience) == 1 else list(audience)
        assert claims["aud"] == expected_aud
        return claims


# --------------------------------------------------------------------------- backoff


def backoff_window(error_backoff: float, failures: int) -> float:
    """How long the cache remembers a failure after `failures` in a row (cache.py docstring)."""
    return min(error_backoff, error_backoff / 8 * 2.0 ** (failures - 1))


def max_fetches(elapsed: float, error_backoff: float) -> int:
    """The most fetches of a failing source the backoff allows within `elapsed` seconds.

    Fetch k+1 starts no earlier than fetch k plus the k-th window, so n+1 fetches
    need the first n windows to fit into `elapsed`.
    """
    fetches, total = 1, backoff_window(error_backoff, 1)
    while total <= elapsed:
        fetches += 1
        total += backoff_window(error_backoff, fetches)
    return fetches


# --------------------------------------------------------------------------- clients


def send_then_disconnect(proxy_port: int, url: str) -> socket.socket:
    """Send `GET url` through the proxy on a raw socket and return it, unread.

    Close it with `abort()`: the client then vanishes with a TCP reset.
    """
    parts = urlsplit(url)
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
    try:
        request = f"GET {url} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: */*\r\n\r\n"
        sock.sendall(request.encode())
    except BaseException:
        sock.close()
        raise
    return sock


def abort(sock: socket.socket) -> None:
    """Close `sock` with a reset (SO_LINGER 0) rather than an orderly FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def new_lines(lines: Sequence[str], since: int) -> str:
    """Gateway output after line `since`, for failure messages (it never holds a token)."""
    return "\n".join(lines[since:][-60:])


def by_path(requests: Sequence[RecordedRequest]) -> Mapping[str, list[RecordedRequest]]:
    grouped: dict[str, list[RecordedRequest]] = {}
    for r in requests:
        grouped.setdefault(r.path, []).append(r)
    return grouped
