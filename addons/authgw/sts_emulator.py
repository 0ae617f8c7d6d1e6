"""A local AWS STS that answers ``GetWebIdentityToken``, for offline demos and tests.

It speaks the AWS query protocol (API version 2011-06-15) on a loopback HTTP port,
so an unmodified boto3 client pointed at it with ``endpoint_url`` (or the
``AWS_ENDPOINT_URL_STS`` environment variable) gets real, verifiable JWTs:

- ``POST /`` with ``Action=GetWebIdentityToken``: validates the request the way
  the service model does and returns a JWT signed with a per-process RSA-2048
  (RS256) or EC P-384 (ES384) key.
- ``GET /.well-known/openid-configuration`` and ``GET /.well-known/jwks.json``:
  OIDC discovery; the ``iss`` claim is the emulator's own URL, so verifiers that
  discover keys from the issuer work against it.
- ``/_emulator/faults`` and ``/_emulator/calls``: fault injection (any AWS error
  code, for the next N calls or all of them; added latency) and the call record,
  for tests and demos that run the emulator as its own process. The same
  controls exist as methods on :class:`StsEmulator`.

What it does not do: it never verifies a SigV4 signature (it only requires an
``AWS4-HMAC-SHA256`` ``Authorization`` header and reads the access key id and
region from its credential scope), it knows no IAM users, roles, policies or
accounts (the caller's ARN is derived from the access key id), and it implements
no other STS action. Its keys live only as long as the process. Do not expose it
beyond loopback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

logger = logging.getLogger(__name__)

API_VERSION = "2011-06-15"
XML_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
STS_CLAIM = "https://sts.amazonaws.com/"
SIGNING_ALGORITHMS = ("RS256", "ES384")
DEFAULT_DURATION = 300
MIN_DURATION = 60
MAX_DURATION = 3600
MAX_AUDIENCES = 10
MAX_TAGS = 50
MAX_BODY_BYTES = 1 << 20
RESULT_OK = "OK"

#: What ``serve()`` tells a user to export; the credentials are never checked.
DEMO_REGION = "us-east-1"
DEMO_ACCESS_KEY_ID = "AKIDSTSEMULATOR"
DEMO_SECRET_ACCESS_KEY = "sts-emulator-dummy-secret"


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
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


@dataclass(frozen=True)
class CallRecord:
    """One ``GetWebIdentityToken`` request as the emulator saw it."""

    audiences: tuple[str, ...]
    algorithm: str
    duration: int | None  # None when DurationSeconds was not an integer
    tags: dict[str, str] = field(hash=False)
    timestamp: float  # when the call arrived, on the emulator's clock
    result: str  # RESULT_OK or the AWS error code answered
    access_key_id: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class _Fault:
    code: str
    remaining: int | None  # None: every call
    message: str


@dataclass(frozen=True)
class _SigningKey:
    algorithm: str
    kid: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]


@dataclass(frozen=True)
class _Caller:
    access_key_id: str
    region: str


class _StsError(Exception):
    """An AWS error to answer; ``code`` is a key of AWS_ERRORS."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message if message is not None else AWS_ERRORS[code].message


@dataclass
class _Request:
    """GetWebIdentityToken parameters as sent; validated separately."""

    audiences: list[str] | None = None
    algorithm: str | None = None
    duration_raw: str | None = None
    tags: list[tuple[str | None, str | None]] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def duration(self) -> int | None:
        if self.duration_raw is None:
            return DEFAULT_DURATION
        try:
            return int(self.duration_raw)
        except ValueError:
            return None

    def record(self, caller: _Caller | None, timestamp: float, result: str) -> CallRecord:
        return CallRecord(
            audiences=tuple(self.audiences or ()),
            algorithm=self.algorithm or "",
            duration=self.duration,
            tags={k: v or "" for k, v in self.tags or () if k is not None},
            timestamp=timestamp,
            result=result,
            access_key_id=caller.access_key_id if caller else None,
            region=caller.region if caller else None,
        )


def _member_list(params: Mapping[str, str], name: str) -> list[str] | None:
    """Read a query-protocol list ``Name.member.N``; ``Name=`` is the empty list."""
    prefix = f"{name}.member."
    members: dict[int, str] = {}
    for key, value in params.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            members[int(key[len(prefix) :])] = value
    if members:
        return [members[i] for i in sorted(members)]
    return [] if name in params else None


def _tag_list(params: Mapping[str, str]) -> list[tuple[str | None, str | None]] | None:
    """Read ``Tags.member.N.Key`` / ``Tags.member.N.Value`` pairs in order."""
    pattern = re.compile(r"Tags\.member\.(\d+)\.(Key|Value)")
    members: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = pattern.fullmatch(key)
        if match:
            members.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if members:
        return [(members[i].get("Key"), members[i].get("Value")) for i in sorted(members)]
    return [] if "Tags" in params else None


def _is_tag_text(text: str) -> bool:
    """The service model's ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` for every character."""
    return all(unicodedata.category(c)[0] in "LZN" or c in _TAG_PUNCTUATION for c in text)


def _constraint(value: object, member: str, constraint: str) -> str:
    # AWS renders values the Java way: null, 'text', '[a, b]'.
    if value is None:
        shown = "null"
    elif isinstance(value, list):
        shown = "'[" + ", ".join(str(v) for v in value) + "]'"
    else:
        shown = f"'{value}'"
    return f"Value {shown} at '{member}' failed to satisfy constraint: Member must {constraint}"


def _validate_audiences(request: _Request) -> None:
    audiences = request.audiences
    if audiences is None:
        request.problems.append(_constraint(None, "audience", "not be null"))
        return
    if not audiences:
        request.problems.append(
            _constraint(audiences, "audience", "have length greater than or equal to 1")
        )
    elif len(audiences) > MAX_AUDIENCES:
        request.problems.append(
            _constraint(audiences, "audience", f"have length less than or equal to {MAX_AUDIENCES}")
        )
    for audience in audiences:
        if not 1 <= len(audience) <= 1000:
            request.problems.append(
                _constraint(audience, "audience.member", "have length between 1 and 1000")
            )


def _validate_algorithm(request: _Request) -> None:
    if request.algorithm is None:
        request.problems.append(_constraint(None, "signingAlgorithm", "not be null"))
    elif request.algorithm not in SIGNING_ALGORITHMS:
        request.problems.append(
            _constraint(
                request.algorithm,
                "signingAlgorithm",
                "satisfy enum value set: [" + ", ".join(SIGNING_ALGORITHMS) + "]",
            )
        )


def _validate_duration(request: _Request) -> None:
    duration = request.duration
    if duration is None:
        request.problems.append(_constraint(request.duration_raw, "durationSeconds", "be a number"))
    elif duration < MIN_DURATION:
        request.problems.append(
            _constraint(
                duration, "durationSeconds", f"have value greater than or equal to {MIN_DURATION}"
            )
        )
    elif duration > MAX_DURATION:
        request.problems.append(
            _constraint(
                duration, "durationSeconds", f"have value less than or equal to {MAX_DURATION}"
            )
        )


def _validate_tags(request: _Request) -> None:
    tags = request.tags or []
    if len(tags) > MAX_TAGS:
        request.problems.append(
            _constraint(len(tags), "tags", f"have length less than or equal to {MAX_TAGS}")
        )
    seen: set[str] = set()
    for key, value in tags:
        if key is None or value is None:
            request.problems.append(_constraint(None, "tags.member.key/value", "not be null"))
            continue
        if not 1 <= len(key) <= 128 or not _is_tag_text(key):
            request.problems.append(
                _constraint(key, "tags.member.key", "have length between 1 and 128 and match tag")
            )
        if len(value) > 256 or not _is_tag_text(value):
            request.problems.append(
                _constraint(value, "tags.member.value", "have length at most 256 and match tag")
            )
        if key.lower() in seen:
            request.problems.append(_constraint(key, "tags.member.key", "be unique"))
        seen.add(key.lower())


def _validate(request: _Request) -> None:
    """Raise ValidationError listing every broken constraint, as AWS does."""
    _validate_audiences(request)
    _validate_algorithm(request)
    _validate_duration(request)
    _validate_tags(request)
    problems = request.problems
    if problems:
        noun = "error" if len(problems) == 1 else "errors"
        raise _StsError(
            "ValidationError", f"{len(problems)} validation {noun} detected: " + "; ".join(problems)
        )


def _caller_from_authorization(header: str | None) -> _Caller:
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
    return _Caller(access_key_id=scope[0], region=scope[2])


def _make_key(algorithm: str) -> _SigningKey:
    """A fresh key for ``algorithm``; its kid is derived from the public key."""
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        private_key = ec.generate_private_key(ec.SECP384R1())
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = hashlib.sha256(der).hexdigest()[:16]
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return _SigningKey(algorithm=algorithm, kid=kid, private_key=private_key, jwk=dict(jwk))


def _iso8601(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its own timeout) is not the emulator's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    emulator: StsEmulator


class _Server6(_Server):
    address_family = socket.AF_INET6


class StsEmulator:
    """A local STS ``GetWebIdentityToken`` endpoint on its own HTTP server thread.

    Use as ``with StsEmulator() as sts: ...`` or ``start()`` / ``stop()``. ``url``,
    ``issuer`` and ``jwks_url`` are valid once started. Fault and latency controls
    and the call record are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        account: str = "123456789012",
    ) -> None:
        self._host = host
        self._port = port
        self._clock = clock
        self._account = account
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._fault: _Fault | None = None
        self._latency = 0.0
        self._calls: list[CallRecord] = []
        self._in_flight = 0
        self._keys: dict[str, _SigningKey] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> StsEmulator:
        """Generate signing keys, bind, and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("StsEmulator already started")
        self._stopping.clear()
        self._keys = {alg: _make_key(alg) for alg in SIGNING_ALGORITHMS}
        server_class = _Server6 if ":" in self._host else _Server
        server = server_class((self._host, self._port), _Handler)
        server.emulator = self
        host, port = server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        # A wildcard bind is reachable on loopback; the issuer must be a URL clients can use.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sts-emulator-{port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("sts emulator listening on %s", self._url)
        return self

    def stop(self) -> None:
        """Stop serving; calls waiting out an injected latency answer at once. Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        logger.info("sts emulator on %s stopped", self._url)

    def __enter__(self) -> StsEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; boto3's ``endpoint_url``."""
        if self._url is None:
            raise RuntimeError("StsEmulator not started")
        return self._url

    @property
    def issuer(self) -> str:
        """The ``iss`` claim of every token: the emulator's own URL (OIDC discovery)."""
        return self.url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    @property
    def account(self) -> str:
        return self._account

    # -- fault injection and call record -------------------------------------------

    def fail_with(self, code: str, times: int | None = None, message: str | None = None) -> None:
        """Answer the next ``times`` GetWebIdentityToken calls (all if None) with ``code``.

        ``code`` must be a key of AWS_ERRORS; the HTTP status is the one STS uses.
        """
        if code not in AWS_ERRORS:
            raise ValueError(f"unknown AWS error code {code!r}; known: {', '.join(AWS_ERRORS)}")
        if times is not None and (isinstance(times, bool) or times < 1):
            raise ValueError(f"times must be a positive integer or None, not {times!r}")
        fault = _Fault(code, times, message if message is not None else AWS_ERRORS[code].message)
        with self._lock:
            self._fault = fault

    def set_latency(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each GetWebIdentityToken call."""
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, not {seconds!r}")
        with self._lock:
            self._latency = float(seconds)

    def reset(self) -> None:
        """Clear injected faults and latency (the call record stays)."""
        with self._lock:
            self._fault = None
            self._latency = 0.0

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    @property
    def calls(self) -> list[CallRecord]:
        """A snapshot of the recorded GetWebIdentityToken calls, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._calls)

    @property
    def in_flight(self) -> int:
        """GetWebIdentityToken calls being answered right now (e.g. waiting out latency)."""
        with self._lock:
            return self._in_flight

    def faults_state(self) -> dict[str, Any]:
        """The current fault and latency as JSON-ready data."""
        with self._lock:
            fault = self._fault
            return {
                "fault": None
                if fault is None
                else {"code": fault.code, "remaining": fault.remaining, "message": fault.message},
                "latency": self._latency,
            }

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                left = fault.remaining - 1
                self._fault = _Fault(fault.code, left, fault.message) if left > 0 else None
            return fault

    # -- the STS action --------------------------------------------------------------

    def _get_web_identity_token(self, params: Mapping[str, str], authorization: str | None) -> str:
        """Answer one call: the response XML, or raise _StsError. Records the call."""
        request = _Request(
            audiences=_member_list(params, "Audience"),
            algorithm=params.get("SigningAlgorithm"),
            duration_raw=params.get("DurationSeconds"),
            tags=_tag_list(params),
        )
        caller: _Caller | None = None
        result = "InternalFailure"
        received = self._clock()
        with self._lock:
            self._in_flight += 1
        try:
            caller = _caller_from_authorization(authorization)
            with self._lock:
                latency = self._latency
            if latency and self._stopping.wait(latency):
                raise _StsError("ServiceUnavailable", "The emulator is shutting down.")
            fault = self._take_fault()
            if fault is not None:
                raise _StsError(fault.code, fault.message)
            _validate(request)
            body = self._issue(request, caller)
            result = RESULT_OK
            return body
        except _StsError as e:
            result = e.code
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
                self._calls.append(request.record(caller, received, result))
            logger.info(
                "sts emulator: action=GetWebIdentityToken audiences=%d algorithm=%s result=%s",
                len(request.audiences or ()),
                request.algorithm or "-",
                result,
            )

    def _issue(self, request: _Request, caller: _Caller) -> str:
        audiences = request.audiences or []
        algorithm = request.algorithm or ""
        duration = request.duration or DEFAULT_DURATION
        key = self._keys[algorithm]
        now = int(self._clock())
        expires = now + duration
        role = _ROLE_NAME_UNSAFE.sub("-", caller.access_key_id)
        principal = f"arn:aws:iam::{self._account}:role/emulated-{role}"
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audiences[0] if len(audiences) == 1 else list(audiences),
            "sub": principal,
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
        token = jwt.encode(
            claims, key.private_key, algorithm=algorithm, headers={"kid": key.kid, "typ": "JWT"}
        )
        return (
            f'<GetWebIdentityTokenResponse xmlns="{XML_NAMESPACE}">'
            "<GetWebIdentityTokenResult>"
            f"<WebIdentityToken>{token}</WebIdentityToken>"
            f"<Expiration>{_iso8601(expires)}</Expiration>"
            "</GetWebIdentityTokenResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</GetWebIdentityTokenResponse>"
        )

    # -- discovery --------------------------------------------------------------------

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
            "claims_supported": ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", STS_CLAIM],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(key.jwk) for key in self._keys.values()]}


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


def _fault_settings(data: object) -> tuple[str | None, int | None, float | None, str | None]:
    """Parse a ``POST /_emulator/faults`` body; ValueError names the bad field."""
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    unknown = set(data) - {"code", "times", "latency", "message"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    code, times, latency, message = (data.get(k) for k in ("code", "times", "latency", "message"))
    if code is not None and not isinstance(code, str):
        raise ValueError("code must be a string or null")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
        raise ValueError("times must be an integer or null")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise ValueError("latency must be a number or null")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be a string or null")
    if code is None and (times is not None or message is not None):
        raise ValueError("times and message need a code")
    return code, times, None if latency is None else float(latency), message


class _Handler(BaseHTTPRequestHandler):
    server_version = "authgw-sts-emulator"
    # HTTP/1.0: one request per connection, so stop() leaves no idle keep-alive threads.
    protocol_version = "HTTP/1.0"

    @property
    def emulator(self) -> StsEmulator:
        return cast(_Server, self.server).emulator

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log; calls are logged by the emulator."""

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload), "application/json")

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "bad body length"})
            return None
        return self.rfile.read(length)

    @property
    def _path(self) -> str:
        return urlsplit(self.path).path

    def do_GET(self) -> None:
        emulator = self.emulator
        path = self._path
        if path == "/.well-known/openid-configuration":
            self._send_json(HTTPStatus.OK, emulator.openid_configuration())
        elif path == "/.well-known/jwks.json":
            self._send_json(HTTPStatus.OK, emulator.jwks())
        elif path == "/_emulator/calls":
            calls = [asdict(call) for call in emulator.calls]
            self._send_json(HTTPStatus.OK, {"call_count": len(calls), "calls": calls})
        elif path == "/_emulator/faults":
            self._send_json(HTTPStatus.OK, emulator.faults_state())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_DELETE(self) -> None:
        path = self._path
        if path == "/_emulator/faults":
            self.emulator.reset()
            self._send_json(HTTPStatus.OK, self.emulator.faults_state())
        elif path == "/_emulator/calls":
            self.emulator.clear_calls()
            self._send_json(HTTPStatus.OK, {"call_count": 0, "calls": []})
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        path = self._path
        if path == "/_emulator/faults":
            self._post_faults()
        elif path == "/":
            self._post_query()
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _post_faults(self) -> None:
        body = self._read_body()
        if body is None:
            return
        emulator = self.emulator
        try:
            code, times, latency, message = _fault_settings(json.loads(body or b"{}"))
            if code is not None:
                emulator.fail_with(code, times, message)
            if latency is not None:
                emulator.set_latency(latency)
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        self._send_json(HTTPStatus.OK, emulator.faults_state())

    def _post_query(self) -> None:
        body = self._read_body()
        if body is None:
            return
        query = urlsplit(self.path).query + "&" + body.decode("utf-8", errors="replace")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        action = params.get("Action", "")
        authorization = self.headers.get("Authorization")
        try:
            if action != "GetWebIdentityToken":
                _caller_from_authorization(authorization)
                logger.info("sts emulator: action=%s result=InvalidAction", action or "-")
                raise _StsError(
                    "InvalidAction",
                    f"Could not find operation {action} for version {API_VERSION}",
                )
            body_xml = self.emulator._get_web_identity_token(params, authorization)
        except _StsError as e:
            status, error_xml = _error_xml(e.code, e.message)
            self._send(status, error_xml, "text/xml")
            return
        except Exception:
            # A bug (or a failing injected clock) answers like AWS would, not with a dropped socket.
            logger.exception("sts emulator: action=%s failed", action)
            status, error_xml = _error_xml("InternalFailure", AWS_ERRORS["InternalFailure"].message)
            self._send(status, error_xml, "text/xml")
            return
        self._send(HTTPStatus.OK, body_xml, "text/xml")


def serve(host: str = "127.0.0.1", port: int = 8090) -> None:
    """Run an emulator in the foreground until Ctrl-C, after printing how to use it."""
    with StsEmulator(host, port) as sts:
        lines = [
            f"authgw sts-emulator listening on {sts.url}",
            f"# issuer {sts.issuer}, JWKS {sts.jwks_url}",
            "# point boto3 / the AWS CLI at it with these environment variables:",
            f"AWS_ENDPOINT_URL_STS={sts.url}",
            f"AWS_REGION={DEMO_REGION}",
            f"AWS_ACCESS_KEY_ID={DEMO_ACCESS_KEY_ID}",
            f"AWS_SECRET_ACCESS_KEY={DEMO_SECRET_ACCESS_KEY}",
        ]
        print("\n".join(lines), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
