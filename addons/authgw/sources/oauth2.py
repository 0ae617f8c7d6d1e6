"""OAuth2 client credentials (RFC 6749 4.4): a bearer token from a token endpoint.

The call goes through tornado's ``AsyncHTTPClient`` (mitmproxy brings tornado), on the
event loop without blocking it. The client authenticates with HTTP Basic
(``client_secret_basic``, RFC 6749 2.3.1: id and secret form-urlencoded first) or in
the form (``client_secret_post``). A token's life is ``expires_in``, else its JWT
``exp``, else ``cache.default_ttl``. Failures are error classes: the OAuth2 ``error``
code of the answer (``invalid_client``, ``invalid_scope``, ...), ``timeout``,
``transport``, or ``invalid_token`` for a 200 without an ``access_token``. The client
secret is in no log line, error or status field; only its fingerprint.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import time
from collections.abc import Hashable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError  # what the default client raises

from authgw.config import OAuth2TokenConfig
from authgw.sources.base import Clock, SecretLike, SecretReader, next_generation, settled
from authgw.tokens import Token, TokenUnavailable, token_from_jwt

logger = logging.getLogger(__name__)

# The token endpoint error codes that RFC 6749 (5.2, 4.1.2.1), RFC 8707, RFC 7009,
# RFC 8628, RFC 9396, RFC 9449 and the IANA "OAuth Extensions Error" registry define.
# Only these become an error_class (a metric label, a header, a log line): any other
# code, whatever the endpoint invents, is "oauth2_error", so labels stay bounded.
REGISTERED_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        "unsupported_token_type",
        "authorization_pending",
        "slow_down",
        "expired_token",
        "invalid_authorization_details",
        "invalid_dpop_proof",
        "use_dpop_nonce",
    }
)


class OAuth2Source:
    kind = "oauth2"

    def __init__(
        self,
        route: str,
        config: OAuth2TokenConfig,
        *,
        clock: Clock = time.time,
        default_ttl: float = 300.0,
        client_id: SecretLike | None = None,
        client_secret: SecretLike | None = None,
    ) -> None:
        self.route = route
        self.generation = next_generation()
        self.config = config
        self._clock = clock
        self._default_ttl = default_ttl
        self.client_id = client_id or SecretReader(config.client_id)
        self.secret = client_secret or SecretReader(config.client_secret)
        url = urlsplit(config.token_url)  # logged without its query (it might carry a secret)
        self._shown_url = f"{url.scheme}://{url.netloc}{url.path}"

    def check(self) -> None:
        self.client_id.read()
        self.secret.read()

    def cache_params(self) -> Hashable:
        c = self.config
        return (
            c.token_url,
            self.client_id.fingerprint(),
            self.secret.fingerprint(),  # a rotated secret never serves the old token
            c.scope,
            c.params,
        )

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        request = self._request(audience)
        started = self._clock()
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except HTTPTimeoutError:  # connecting, sending, or waiting in tornado's queue
            raise self._unavailable("timeout", f"no answer in {self.config.timeout:g} s") from None
        except HTTPClientError as e:  # no HTTP answer: tornado says 599
            raise self._unavailable("transport", f"no answer ({type(e).__name__})") from None
        except OSError as e:
            raise self._unavailable("transport", f"unreachable ({type(e).__name__})") from None
        body = _json(response.body)
        if response.code != 200:
            raise self._oauth2_error(response.code, body)
        return self._token(body, started)

    def _request(self, audience: tuple[str, ...]) -> HTTPRequest:
        c = self.config
        client_id = self.client_id.read().decode()
        secret = self.secret.read().decode()
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if c.scope is not None:
            form["scope"] = c.scope
        if audience:
            form["audience"] = audience[0]
        form.update(c.params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if c.auth_method == "client_secret_basic":
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form.update(client_id=client_id, client_secret=secret)
        return HTTPRequest(
            c.token_url,
            method="POST",
            headers=headers,
            body=urlencode(form),
            connect_timeout=c.timeout,
            request_timeout=c.timeout,
            follow_redirects=False,
        )

    def _oauth2_error(self, status: int, body: Any) -> TokenUnavailable:
        code = body.get("error") if isinstance(body, dict) else None
        if not isinstance(code, str):
            return self._unavailable("transport", f"answered {status} without an OAuth2 error")
        if code in REGISTERED_ERRORS:
            return self._unavailable(code, f"answered {status} {code}")
        # Its text is the endpoint's own: not repeated anywhere.
        return self._unavailable("oauth2_error", f"answered {status} with an unregistered error")

    def _token(self, body: Any, started: float) -> Token:
        value = body.get("access_token") if isinstance(body, dict) else None
        if (
            not isinstance(value, str)
            or not value
            or not value.isascii()
            or not value.isprintable()
        ):
            raise self._unavailable("invalid_token", "answered 200 without an access_token")
        expires_in = _lifetime(body.get("expires_in"))
        token = token_from_jwt(value, self.kind)
        if expires_in is not None:
            return dataclasses.replace(token, expires_at=started + expires_in)
        if token.expires_at is None:
            return dataclasses.replace(token, expires_at=started + self._default_ttl)
        return token

    def _unavailable(self, error_class: str, what: str) -> TokenUnavailable:
        where = f"route {self.route}: token endpoint {self._shown_url}"
        return TokenUnavailable(error_class, f"{where} {what}")

    def upstream_rejected(self) -> None:
        for secret in (self.client_id, self.secret):
            secret.refresh_soon()

    async def settle(self) -> None:
        for secret in (self.client_id, self.secret):
            await settled(secret)

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "source": self.kind,
            "token_url": self._shown_url,
            "auth_method": c.auth_method,
            "client_id": c.client_id.describe(),
            "secret": c.client_secret.describe(),
            "secret_fingerprint": self.secret.fingerprint_or_none(),
            **self.secret.status(),  # a secret kept elsewhere: its age, last error
        }


_MAX_LIFETIME = 366 * 86_400.0


def _lifetime(expires_in: Any) -> float | None:
    """RFC 6749 5.1's ``expires_in`` as seconds, or None where it is no lifetime (0, less,
    not a number, not finite); a few servers send it as a string of digits."""
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return None
    if not math.isfinite(expires_in) or expires_in <= 0:
        return None
    return min(float(expires_in), _MAX_LIFETIME)


def _json(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except ValueError:
        return None
