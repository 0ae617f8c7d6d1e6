"""What a valid config is: frozen dataclasses, and the error an invalid one raises.

Every value here has been checked by the parser (``authgw.config.loader``); the
defaults are the documented ones. A literal secret never shows in a ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from authgw.errors import AuthgwError
from authgw.hosts import HostPattern
from authgw.templates import ClaimTemplate

DYNAMIC: Literal["dynamic"] = "dynamic"
# Headers one hop may add, drop or rewrite (RFC 9110 7.6.1, and the proxy's own): what a
# claim template may not remove, and what a SigV4 signature leaves out.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class ConfigError(AuthgwError, ValueError):
    """The config file is unreadable or invalid; says which field and why."""

    def __init__(self, path: str, reason: str, *, file: str | None = None, line: int | None = None):
        self.path = path
        self.reason = reason
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f" ({file}:{line})" if line is not None else f" ({file})"
        super().__init__(f"{path}: {reason}{where}" if path else f"{reason}{where}")


REMOTE_SECRETS = ("cmd", "aws_secretsmanager", "aws_ssm")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. A literal's value is kept out of ``repr``.

    ``env``/``file``/``literal`` are read where they are, at once; ``cmd`` (``name`` is
    the command), ``aws_secretsmanager`` (``name``: the secret's name or ARN, ``field``:
    a JSON field of its SecretString) and ``aws_ssm`` (``name``: the parameter) are
    re-read in the background every ``refresh`` seconds.
    """

    kind: Literal["env", "file", "literal", "cmd", "aws_secretsmanager", "aws_ssm"]
    name: str = ""
    literal: str | None = field(default=None, repr=False)
    field: str | None = None
    refresh: float = 300.0
    timeout: float = 5.0
    region: str | None = None

    @property
    def remote(self) -> bool:
        return self.kind in REMOTE_SECRETS

    def describe(self) -> str:
        if self.kind == "env":
            return f"env {self.name}"
        if self.kind == "file":
            return f"file {self.name}"
        if self.kind == "cmd":
            # The program only: a command line may carry more than a user wants in a log.
            return f"command {self.name.split()[0] if self.name.split() else '?'}"
        if self.kind == "aws_secretsmanager":
            where = f"{self.name}#{self.field}" if self.field else self.name
            return f"aws_secretsmanager {where}"
        if self.kind == "aws_ssm":
            return f"aws_ssm {self.name}"
        return "a literal in the config file"


@dataclass(frozen=True)
class HmacTokenConfig:
    secret: SecretRef
    optional: bool = False
    algorithm: str = "HS256"
    claims: Mapping[str, Any] = field(default_factory=dict)
    lifetime: int | None = None
    audience: str | None = None  # a literal, or DYNAMIC
    kid: str = "fingerprint"  # "fingerprint" | "none" | a literal
    typ: str | None = "JWT"  # the "typ" header; None omits it
    backdate: int = 0  # seconds iat (and nbf) lie in the past
    not_before: bool = False  # an nbf claim (= iat)
    template: ClaimTemplate | None = None  # the claims' ${...} slots; None: static claims
    type: Literal["hmac"] = "hmac"


@dataclass(frozen=True)
class StsTokenConfig:
    audience: tuple[str, ...] | Literal["dynamic"]
    signing_algorithm: str = "RS256"
    duration: int = 300
    tags: tuple[tuple[str, str], ...] = ()
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    max_attempts: int = 2
    scope: str | None = None  # GetWebIdentityToken Scope; None: not sent
    subject_mode: str | None = None  # AWSIdentity | OriginIdentity; None: not sent
    type: Literal["sts"] = "sts"


@dataclass(frozen=True)
class StaticTokenConfig:
    value: SecretRef
    type: Literal["static"] = "static"


@dataclass(frozen=True)
class BasicTokenConfig:
    """HTTP Basic (RFC 7617): ``Authorization: Basic base64(username ":" password)``."""

    username: SecretRef
    password: SecretRef
    type: Literal["basic"] = "basic"


@dataclass(frozen=True)
class OAuth2TokenConfig:
    """OAuth2 client credentials (RFC 6749 4.4) from ``token_url``."""

    token_url: str
    client_id: SecretRef
    client_secret: SecretRef
    auth_method: str = "client_secret_basic"  # | client_secret_post
    scope: str | None = None
    audience: str | None = None  # a literal, or DYNAMIC: sent as the `audience` field
    params: tuple[tuple[str, str], ...] = ()  # more form fields
    timeout: float = 5.0
    type: Literal["oauth2"] = "oauth2"


@dataclass(frozen=True)
class SigV4TokenConfig:
    """AWS Signature Version 4 on the whole request, made as late as possible."""

    service: str
    region: str | None = None
    profile: str | None = None
    payload: Literal["signed", "unsigned"] = "signed"
    type: Literal["sigv4"] = "sigv4"


TokenConfig = (
    HmacTokenConfig
    | StsTokenConfig
    | StaticTokenConfig
    | BasicTokenConfig
    | OAuth2TokenConfig
    | SigV4TokenConfig
)


def claim_template(token: TokenConfig | None) -> ClaimTemplate | None:
    """The claim template of an hmac token with ``${...}`` claims, else None."""
    return token.template if isinstance(token, HmacTokenConfig) else None


@dataclass(frozen=True)
class VerifyConfig:
    """Check the bearer token clients send to a route's hosts (``verify:``)."""

    secret: SecretRef | None = None  # an HMAC secret ...
    jwks: str | None = None  # ... or a JWKS: an http(s) URL or a file path
    audience: str | None = None  # a literal, or DYNAMIC
    issuer: str | None = None
    enforce: bool = False  # false: observe (flow log, metrics); true: 401 on failure
    leeway: float = 0.0  # seconds of clock skew allowed for exp, nbf, iat


@dataclass(frozen=True)
class Route:
    name: str
    hosts: tuple[HostPattern, ...]
    token: TokenConfig | None = None  # None: a verify-only route
    header: str = "Authorization"
    prefix: str = "Bearer "
    keep_inbound_as: str | None = None  # None: inbound value dropped ("replace")
    allow_http: bool = False
    allow_insecure_tls: bool = False  # a token to https even with mitmproxy's ssl_insecure
    verify: VerifyConfig | None = None
    retry_on_401: bool = False  # resend once with a fresh token (body not streamed)
    scrub_responses: bool = True  # the credentials sent replaced in the response (scrub.py)
    inject: bool = True  # False: `header: null` (or `query:` alone): no header is set
    query: str | None = None  # a query parameter that carries the credential
    placeholder: str | None = None  # what the client holds instead of the credential
    placeholder_env: str | None = None  # the variable `authgw exec` sets to it
    placeholder_in_body: bool = False  # also replaced in a request body (<= 1 MiB)
    principals: tuple[str, ...] = ()  # proxyauth user names the route is for; () any


@dataclass(frozen=True)
class CacheSettings:
    max_entries: int = 1024
    refresh_ahead: float = 60.0
    min_ttl: float = 10.0
    error_backoff: float = 5.0
    default_ttl: float = 300.0  # life of a token that says nothing of its expiry (oauth2)


@dataclass(frozen=True)
class Config:
    routes: tuple[Route, ...]
    unmatched: Literal["passthrough", "reject"] = "passthrough"
    upstream_header: str | None = None  # off unless the config names a header
    leak_check: Literal["block", "observe", "off"] = "block"
    leak_check_body_bytes: int = 1 << 20  # how much of a request body is searched
    upstream_scheme: Literal["http", "https"] = "https"
    cache: CacheSettings = CacheSettings()
    flowlog: Path | None = None
    metrics: tuple[str, int] | None = None
    base_dir: Path = Path(".")
    warnings: tuple[str, ...] = ()
