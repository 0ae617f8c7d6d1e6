"""The AWS STS query protocol (API version 2011-06-15) with one action, ``GetWebIdentityToken``.

``StsService.answer`` takes what came in on ``POST /`` and returns the status and
XML to send: a JWT for the caller, or an AWS error document. It never verifies a
SigV4 signature: it only requires an ``AWS4-HMAC-SHA256`` ``Authorization`` header
and reads the access key id and region from its credential scope; the caller's ARN
is derived from the access key id. With ``SubjectMode=OriginIdentity`` the ``sub``
claim is the emulator's origin subject, standing for the trusted identity propagation
context of a session. Injected faults and latency apply to every call, and every call
is recorded.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from authgw.emulator.controls import CallLog, Faults
from authgw.emulator.keys import SigningKey
from authgw.emulator.sts_request import (
    DEFAULT_DURATION,
    ORIGIN_IDENTITY,
    RESULT_OK,
    Caller,
    CallRecord,
    TokenRequest,
    rule_violation,
    validate,
)

logger = logging.getLogger(__name__)

API_VERSION = "2011-06-15"
XML_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
STS_CLAIM = "https://sts.amazonaws.com/"
TOKEN_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "scope", "subject_mode", STS_CLAIM)

#: What ``serve()`` tells a user to export; the credentials are never checked.
DEMO_REGION = "us-east-1"
DEMO_ACCESS_KEY_ID = "AKIDSTSEMULATOR"
DEMO_SECRET_ACCESS_KEY = "sts-emulator-dummy-secret"
#: The ``sub`` of OriginIdentity tokens unless the emulator is given another.
DEMO_ORIGIN_SUBJECT = "emulated-user@example.com"


@dataclass(frozen=True)
class AwsError:
    """How the emulator answers one AWS error code."""

    status: int
    message: str

    @property
    def fault_type(self) -> str:
        return "Receiver" if self.status >= 500 else "Sender"


#: Every error code the emulator can answer, with the HTTP status STS uses for it.
AWS_ERRORS: Mapping[str, AwsError] = {
    # Modelled errors of GetWebIdentityToken (botocore maps them to client.exceptions.*).
    "SessionDurationEscalationException": AwsError(
        403, "The requested token duration would extend the session beyond its expiration."
    ),
    "OutboundWebIdentityFederationDisabledException": AwsError(
        403, "Outbound web identity federation is not enabled for this account."
    ),
    "JWTPayloadSizeExceededException": AwsError(
        400, "The requested token payload size exceeds the maximum allowed size."
    ),
    # Common errors of every query-protocol service.
    "AccessDenied": AwsError(403, "User is not authorized to perform: sts:GetWebIdentityToken"),
    "Throttling": AwsError(400, "Rate exceeded"),
    "ValidationError": AwsError(400, "1 validation error detected"),
    "InvalidClientTokenId": AwsError(403, "The security token included in the request is invalid."),
    "ExpiredToken": AwsError(400, "The security token included in the request is expired"),
    "MissingAuthenticationToken": AwsError(403, "Request is missing Authentication Token"),
    "IncompleteSignature": AwsError(403, "Authorization header is incomplete."),
    "InvalidAction": AwsError(400, "Could not find operation for version 2011-06-15"),
    "ServiceUnavailable": AwsError(503, "Service is unavailable. Please try again later."),
    "InternalFailure": AwsError(500, "An internal error occurred."),
}

_ROLE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9+=,.@_-]")


class _StsError(Exception):
    """An AWS error to answer; ``code`` is a key of AWS_ERRORS."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message if message is not None else AWS_ERRORS[code].message


class StsService:
    """Answers STS query-protocol requests, signing with ``keys`` as ``issuer``.

    ``stopping`` set cuts short a call waiting out an injected latency. ``origin_subject``
    is the ``sub`` of OriginIdentity tokens (None: such requests are a ValidationError).
    """

    def __init__(
        self,
        *,
        issuer: str,
        account: str,
        keys: Mapping[str, SigningKey],
        clock: Callable[[], float],
        faults: Faults,
        calls: CallLog[CallRecord],
        stopping: threading.Event,
        origin_subject: str | None = DEMO_ORIGIN_SUBJECT,
    ) -> None:
        self._issuer = issuer
        self._account = account
        self._keys = keys
        self._clock = clock
        self._faults = faults
        self._calls = calls
        self._stopping = stopping
        self._origin_subject = origin_subject

    def answer(self, url_query: str, body: bytes, authorization: str | None) -> tuple[int, str]:
        """The HTTP status and XML for one ``POST /`` (parameters in its query or form body)."""
        query = url_query + "&" + body.decode("utf-8", errors="replace")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        action = params.get("Action", "")
        try:
            if action != "GetWebIdentityToken":
                _caller_from_authorization(authorization)
                logger.info("sts emulator: action=%s result=InvalidAction", action or "-")
                raise _StsError(
                    "InvalidAction",
                    f"Could not find operation {action} for version {API_VERSION}",
                )
            return HTTPStatus.OK, self._get_web_identity_token(params, authorization)
        except _StsError as e:
            return _error_xml(e.code, e.message)
        except Exception:
            # A bug (or a failing injected clock) answers like AWS would, not with a dropped socket.
            logger.exception("sts emulator: action=%s failed", action)
            return _error_xml("InternalFailure", AWS_ERRORS["InternalFailure"].message)

    def _get_web_identity_token(self, params: Mapping[str, str], authorization: str | None) -> str:
        """Answer one call: the response XML, or raise _StsError. Records the call."""
        request = TokenRequest.from_params(params)
        caller: Caller | None = None
        result = "InternalFailure"
        received = self._clock()
        self._calls.begin()
        try:
            caller = _caller_from_authorization(authorization)
            if not self._faults.wait_turn(self._stopping):
                raise _StsError("ServiceUnavailable", "The emulator is shutting down.")
            fault = self._faults.take()
            if fault is not None:
                raise _StsError(fault.code, fault.message)
            problems = validate(request)
            if problems:  # every broken constraint at once, as AWS does
                noun = "error" if len(problems) == 1 else "errors"
                raise _StsError(
                    "ValidationError",
                    f"{len(problems)} validation {noun} detected: " + "; ".join(problems),
                )
            violation = rule_violation(request, self._origin_subject)
            if violation is not None:
                raise _StsError(*violation)
            body = self._issue(request, caller)
            result = RESULT_OK
            return body
        except _StsError as e:
            result = e.code
            raise
        finally:
            self._calls.end(request.record(caller, received, result))
            logger.info(
                "sts emulator: action=GetWebIdentityToken audiences=%d algorithm=%s "
                "subject_mode=%s scope=%s result=%s",
                len(request.audiences or ()),
                request.algorithm or "-",
                request.subject_mode or "-",
                request.scope or "-",
                result,
            )

    def _issue(self, request: TokenRequest, caller: Caller) -> str:
        audiences = request.audiences or []
        algorithm = request.algorithm or ""
        duration = request.duration or DEFAULT_DURATION
        key = self._keys[algorithm]
        now = int(self._clock() - self._faults.skew)
        expires = now + duration
        role = _ROLE_NAME_UNSAFE.sub("-", caller.access_key_id)
        principal = f"arn:aws:iam::{self._account}:role/emulated-{role}"
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": audiences[0] if len(audiences) == 1 else list(audiences),
            "sub": self._origin_subject if request.origin_identity else principal,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": str(uuid.uuid4()),
            STS_CLAIM: {
                "aws_account": self._account,
                "source_region": caller.region,
                "principal_id": principal,
                "request_tags": {k: v for k, v in request.tags or () if k is not None},
            },
        }
        if request.origin_identity:
            claims["subject_mode"] = ORIGIN_IDENTITY
        if request.scope is not None:  # copied exactly as sent
            claims["scope"] = request.scope
        token = key.sign(claims)
        return (
            f'<GetWebIdentityTokenResponse xmlns="{XML_NAMESPACE}">'
            "<GetWebIdentityTokenResult>"
            f"<WebIdentityToken>{token}</WebIdentityToken>"
            f"<Expiration>{_iso8601(expires)}</Expiration>"
            "</GetWebIdentityTokenResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</GetWebIdentityTokenResponse>"
        )


def _caller_from_authorization(header: str | None) -> Caller:
    """Read the access key id and region from a SigV4 header, without verifying it."""
    if not header:
        raise _StsError("MissingAuthenticationToken")
    if not header.startswith("AWS4-HMAC-SHA256 "):
        raise _StsError(
            "IncompleteSignature", "Authorization header must use the AWS4-HMAC-SHA256 algorithm."
        )
    parts = dict(
        item.strip().partition("=")[::2] for item in header[len("AWS4-HMAC-SHA256 ") :].split(",")
    )
    scope = parts.get("Credential", "").split("/")
    # AKID/yyyymmdd/region/service/aws4_request
    if len(scope) != 5 or not scope[0] or not scope[2] or scope[4] != "aws4_request":
        raise _StsError(
            "IncompleteSignature",
            "Authorization header requires a 'Credential' parameter of the form "
            "AKID/date/region/service/aws4_request.",
        )
    if "Signature" not in parts or "SignedHeaders" not in parts:
        raise _StsError(
            "IncompleteSignature",
            "Authorization header requires 'Signature' and 'SignedHeaders' parameters.",
        )
    return Caller(access_key_id=scope[0], region=scope[2])


def _iso8601(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_xml(code: str, message: str) -> tuple[int, str]:
    error = AWS_ERRORS[code]
    body = (
        f'<ErrorResponse xmlns="{XML_NAMESPACE}">'
        f"<Error><Type>{error.fault_type}</Type><Code>{code}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )
    return error.status, body
