"""An OAuth2 client-credentials token endpoint (RFC 6749 section 4.4) at ``POST /oauth2/token``.

``OAuth2Service.answer`` takes what came in and returns the answer to send: 200 with
``{"access_token", "token_type": "Bearer", "expires_in", "scope"}`` (section 5.1), or a
section 5.2 error document. The access token is a JWT signed RS256 with the emulator's
key, so the emulator's JWKS verifies it: ``iss`` the emulator, ``sub`` and ``client_id``
the client, ``aud`` the ``audience`` field (else ``resource``) if sent, ``scope`` as
granted, ``iat``, ``exp``, ``jti``. Injected faults (an error code, or a bad-answer mode
that spoils an otherwise good answer), latency and hold apply to every call, and every
call is recorded without the client secret.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authgw.emulator.controls import CallLog, OAuth2Faults
from authgw.emulator.keys import SigningKey
from authgw.emulator.oauth2_request import (
    OAuth2CallRecord,
    OAuth2Client,
    OAuth2Refusal,
    TokenRequest,
)
from authgw.emulator.sts_request import RESULT_OK

logger = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/token"
SIGNING_ALGORITHM = "RS256"
DEFAULT_LIFETIME = 300
TOKEN_CLAIMS = ("iss", "sub", "client_id", "aud", "scope", "iat", "exp", "jti")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 5.1
CHALLENGE = 'Basic realm="authgw-emulator"'


@dataclass(frozen=True)
class OAuth2Error:
    """How the emulator answers one OAuth2 error code."""

    status: int
    description: str


#: Every error code the endpoint can answer (RFC 6749 5.2, and the two of 4.1.2.1 that
#: token endpoints use too), with its HTTP status.
OAUTH2_ERRORS: Mapping[str, OAuth2Error] = {
    "invalid_request": OAuth2Error(400, "The request is missing a parameter or is malformed."),
    "invalid_client": OAuth2Error(401, "Client authentication failed."),
    "invalid_grant": OAuth2Error(400, "The authorization grant is invalid."),
    "unauthorized_client": OAuth2Error(400, "The client may not use this grant type."),
    "unsupported_grant_type": OAuth2Error(400, "The grant type is not supported."),
    "invalid_scope": OAuth2Error(400, "The requested scope is invalid, unknown or malformed."),
    "server_error": OAuth2Error(500, "The authorization server failed unexpectedly."),
    "temporarily_unavailable": OAuth2Error(503, "The authorization server is overloaded."),
}

#: Bad answers for tests of a client's robustness: each spoils a 200 that would be good.
OAUTH2_ANSWERS: Mapping[str, str] = {
    "html": "a 200 with an HTML page instead of JSON",
    "no_access_token": "a 200 JSON without access_token",
    "expires_in_zero": "a token with expires_in 0",
    "expires_in_negative": "a token with expires_in -1",
    "expires_in_text": "a token with expires_in 'abc'",
}
_EXPIRES_IN: Mapping[str, object] = {
    "expires_in_zero": 0,
    "expires_in_negative": -1,
    "expires_in_text": "abc",
}
_HTML = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in</body></html>"


@dataclass(frozen=True)
class HttpAnswer:
    """What to send back: status, body, content type and any more headers."""

    status: int
    body: str
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def error_answer(code: str, description: str) -> HttpAnswer:
    """The RFC 6749 5.2 answer for ``code``; a 401 names the Basic scheme, as HTTP requires."""
    error = OAUTH2_ERRORS[code]
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = CHALLENGE
    body = json.dumps({"error": code, "error_description": description})
    return HttpAnswer(error.status, body, headers=headers)


@dataclass(frozen=True, kw_only=True)
class OAuth2Service:
    """Answers token requests of ``clients``, signing with ``key`` as ``issuer``.

    ``stopping`` set cuts short a call waiting out an injected latency or hold.
    """

    issuer: str
    key: SigningKey
    clients: Mapping[str, OAuth2Client]
    clock: Callable[[], float]
    faults: OAuth2Faults
    calls: CallLog[OAuth2CallRecord]
    stopping: threading.Event

    def answer(
        self, content_type: str | None, body: bytes, authorization: str | None
    ) -> HttpAnswer:
        """The answer to one ``POST /oauth2/token``. Records the call."""
        request = TokenRequest.parse(content_type, body, authorization)
        result = "server_error"
        received = self.clock()
        self.calls.begin()
        try:
            answer, result = self._answer(request)
            return answer
        except OAuth2Refusal as e:
            result = e.code
            return error_answer(e.code, e.description)
        except Exception:
            # A bug (or a failing injected clock) answers like a server would, not with a reset.
            logger.exception("oauth2 emulator: token request failed")
            return error_answer("server_error", OAUTH2_ERRORS["server_error"].description)
        finally:
            record = request.record(received, result)
            self.calls.end(record)
            logger.info(
                "oauth2 emulator: client_id=%s auth=%s grant_type=%s scope=%s result=%s",
                record.client_id or "-",
                record.auth_method or "-",
                record.grant_type or "-",
                record.scope or "-",
                result,
            )

    def _answer(self, request: TokenRequest) -> tuple[HttpAnswer, str]:
        """The answer and the result to record, or raise OAuth2Refusal."""
        if not self.faults.wait_turn(self.stopping):
            raise OAuth2Refusal("temporarily_unavailable", "The emulator is shutting down.")
        fault = self.faults.take()
        if fault is not None and fault.code in OAUTH2_ERRORS:
            raise OAuth2Refusal(fault.code, fault.message)
        client = request.check(self.clients)
        mode = fault.code if fault is not None else None
        return self._issue(request, client, mode), mode or RESULT_OK

    def _issue(self, request: TokenRequest, client: OAuth2Client, mode: str | None) -> HttpAnswer:
        if mode == "html":
            return HttpAnswer(200, _HTML, "text/html; charset=utf-8")
        lifetime = self.faults.lifetime
        now = int(self.clock())
        scope = request.get("scope")
        audience = request.values("audience") or request.values("resource")
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": client.client_id,
            "client_id": client.client_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }
        if audience:
            claims["aud"] = audience[0] if len(audience) == 1 else audience
        if scope is not None:
            claims["scope"] = scope
        payload: dict[str, Any] = {}
        if mode != "no_access_token":
            payload["access_token"] = self.key.sign(claims)
        payload["token_type"] = "Bearer"
        payload["expires_in"] = _EXPIRES_IN.get(mode or "", lifetime)
        if scope is not None:
            payload["scope"] = scope
        return HttpAnswer(200, json.dumps(payload), headers=NO_STORE)
