"""What the gateway decided for one flow, kept from its request until its response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mitmproxy import http

from authgw.cache import CacheKey
from authgw.config import Route
from authgw.flowlog import FlowRecord
from authgw.tokens import Token

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials  # botocore: sigv4 routes only


@dataclass
class FlowState:
    """What the gateway decided for one flow, kept until its response."""

    record: FlowRecord
    target: tuple[bytes, str, int] | None = None  # (scheme, host, port) the token was chosen for
    route: Route | None = None
    key: CacheKey | None = None
    token: Token | None = None
    headers_before: tuple[tuple[bytes, bytes], ...] = ()
    routed_by: tuple[object, ...] = ()  # decision.routed_by as the decision left the flow
    redacted: bool = False
    client_claims: Mapping[str, Any] | None = None  # of a client token verify accepted
    request_before: http.Request | None = None  # the request at authgw's request hook
    # (before map_remote, modify_* and later addons), kept on retry_on_401 routes
    sigv4: ReadOnlyCredentials | None = None  # a sigv4 route's credentials
    signed: bool = False  # a sigv4 route's signature is final (made with the body known)
    presigned: bool = False  # ... or at least made (before the body was known)
    signature: str | None = None  # its Signature=, scrubbed from AWS's error answers
    body_shown: bytes | None = None  # the body as the client sent it (placeholder_in_body)
    placed: tuple[tuple[str, str], ...] = ()  # Basic credentials rewritten: (sent, client's)
