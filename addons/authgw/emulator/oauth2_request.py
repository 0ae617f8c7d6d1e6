"""One OAuth2 client-credentials token request: its form, its client, its checks, its record.

``TokenRequest.parse`` reads what came in on ``POST /oauth2/token`` without judging it
(so even a refused call has a record); ``check`` then applies RFC 6749: client
authentication by ``client_secret_basic`` (section 2.3.1) or ``client_secret_post``,
``grant_type=client_credentials`` (section 4.4) and scope syntax (section 3.3), raising
``OAuth2Refusal`` with the section 5.2 error code. The client secret is kept only to be
compared: the record holds its fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus

from authgw.tokens import fingerprint

GRANT_TYPE = "client_credentials"
BASIC = "client_secret_basic"
POST = "client_secret_post"
FORM_TYPE = "application/x-www-form-urlencoded"
# RFC 8707 and token exchange let these repeat; RFC 6749 3.1 forbids it for the rest.
REPEATABLE = frozenset({"audience", "resource"})
KNOWN_FIELDS = frozenset({"grant_type", "scope", "client_id", "client_secret"}) | REPEATABLE
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

#: The client ``StsEmulator`` registers when it is given none, so a demo needs no setup.
DEMO_OAUTH2_CLIENT_ID = "authgw-demo"
DEMO_OAUTH2_CLIENT_SECRET = "authgw-demo-client-secret"


class OAuth2Refusal(Exception):
    """An OAuth2 error to answer; ``code`` is a key of OAUTH2_ERRORS."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(code)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class OAuth2Client:
    """A registered client; ``allowed_scopes`` None lets it ask for any scope."""

    client_id: str
    client_secret: str = field(repr=False)
    allowed_scopes: frozenset[str] | None = None


def client_registry(
    clients: Mapping[str, str] | Iterable[OAuth2Client] | None,
) -> dict[str, OAuth2Client]:
    """Clients by id from ``{id: secret}`` or ``OAuth2Client``s; None: the demo client."""
    if clients is None:
        return {
            DEMO_OAUTH2_CLIENT_ID: OAuth2Client(DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET)
        }
    if isinstance(clients, Mapping):
        return {cid: OAuth2Client(cid, secret) for cid, secret in clients.items()}
    return {client.client_id: client for client in clients}


@dataclass(frozen=True)
class OAuth2CallRecord:
    """One token request as the emulator saw it; never the client secret."""

    client_id: str | None  # as the request named it, authenticated or not
    auth_method: str | None  # client_secret_basic, client_secret_post, or None
    secret_fingerprint: str | None  # sha256: + 12 hex of the secret sent
    grant_type: str | None
    scope: str | None
    audience: tuple[str, ...]
    resource: tuple[str, ...]
    params: tuple[str, ...]  # the name of every form field, in the order sent
    extra: dict[str, str] = field(hash=False)  # fields the endpoint does not interpret
    timestamp: float  # when the call arrived, on the emulator's clock
    result: str  # RESULT_OK, the OAuth2 error code answered, or the bad-answer mode


@dataclass
class TokenRequest:
    """A token request as sent; ``check`` judges it."""

    fields: list[tuple[str, str]]
    authorization: str | None
    form_problem: str | None = None  # why the body is not a usable form, if it is not

    @classmethod
    def parse(
        cls, content_type: str | None, body: bytes, authorization: str | None
    ) -> TokenRequest:
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type != FORM_TYPE:
            return cls([], authorization, f"the body must be {FORM_TYPE}")
        try:
            fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return cls([], authorization, "the body is not UTF-8")
        return cls(fields, authorization)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def get(self, name: str) -> str | None:
        values = self.values(name)
        return values[-1] if values else None

    @property
    def basic(self) -> tuple[str, str] | None:
        """(client id, secret) of an ``Authorization: Basic`` header; None without one.

        Raises OAuth2Refusal for a Basic header that does not decode.
        """
        scheme, _, credentials = (self.authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        client_id, colon, secret = decoded.partition(":")
        if not colon or not client_id:
            raise OAuth2Refusal("invalid_client", "The Basic credentials do not decode.")
        # RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding.
        return unquote_plus(client_id), unquote_plus(secret)

    def credentials(self) -> tuple[str | None, str | None, str | None]:
        """(auth method, client id, secret) as sent, without judging them."""
        try:
            basic = self.basic
        except OAuth2Refusal:
            return BASIC, None, None
        if basic is not None:
            return BASIC, *basic
        if self.get("client_secret") is not None:
            return POST, self.get("client_id"), self.get("client_secret")
        return None, self.get("client_id"), None

    def record(self, timestamp: float, result: str) -> OAuth2CallRecord:
        method, client_id, secret = self.credentials()
        return OAuth2CallRecord(
            client_id=client_id,
            auth_method=method,
            secret_fingerprint=None if secret is None else fingerprint(secret),
            grant_type=self.get("grant_type"),
            scope=self.get("scope"),
            audience=tuple(self.values("audience")),
            resource=tuple(self.values("resource")),
            params=tuple(key for key, _ in self.fields),
            extra={key: value for key, value in self.fields if key not in KNOWN_FIELDS},
            timestamp=timestamp,
            result=result,
        )

    def check(self, clients: Mapping[str, OAuth2Client]) -> OAuth2Client:
        """The authenticated client of a valid request; else raise OAuth2Refusal."""
        _validate_form(self)
        client = _authenticate(self, clients)
        _validate_grant_type(self)
        _validate_scope(self, client)
        return client


def _validate_form(request: TokenRequest) -> None:
    if request.form_problem is not None:
        raise OAuth2Refusal("invalid_request", f"The request is malformed: {request.form_problem}.")
    names = [key for key, _ in request.fields if key not in REPEATABLE]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise OAuth2Refusal("invalid_request", f"Parameters repeated: {', '.join(repeated)}.")


def _authenticate(request: TokenRequest, clients: Mapping[str, OAuth2Client]) -> OAuth2Client:
    basic = request.basic
    if basic is not None and request.get("client_secret") is not None:
        raise OAuth2Refusal(
            "invalid_request", "The request uses more than one client authentication method."
        )
    if basic is not None:
        client_id, secret = basic
        form_id = request.get("client_id")
        if form_id is not None and form_id != client_id:
            raise OAuth2Refusal("invalid_request", "client_id differs from the Basic credentials.")
    else:
        client_id = request.get("client_id") or ""
        secret = request.get("client_secret") or ""
        if not client_id or request.get("client_secret") is None:
            raise OAuth2Refusal("invalid_client", "Client authentication is required.")
    client = clients.get(client_id)
    # Compare against something even for an unknown id, so timing tells nothing either.
    expected = client.client_secret if client is not None else "\0"
    if not hmac.compare_digest(secret.encode(), expected.encode()) or client is None:
        raise OAuth2Refusal("invalid_client", "Client authentication failed.")
    return client


def _validate_grant_type(request: TokenRequest) -> None:
    grant_type = request.get("grant_type")
    if grant_type is None:
        raise OAuth2Refusal("invalid_request", "The grant_type parameter is missing.")
    if grant_type != GRANT_TYPE:
        raise OAuth2Refusal(
            "unsupported_grant_type", f"Only the {GRANT_TYPE} grant type is supported."
        )


def _validate_scope(request: TokenRequest, client: OAuth2Client) -> None:
    scope = request.get("scope")
    if scope is None:
        return
    values = scope.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(value) for value in values):
        raise OAuth2Refusal("invalid_scope", "The scope is malformed (RFC 6749 section 3.3).")
    if client.allowed_scopes is not None:
        refused = sorted(set(values) - client.allowed_scopes)
        if refused:
            raise OAuth2Refusal(
                "invalid_scope", f"The client may not ask for: {', '.join(refused)}."
            )
