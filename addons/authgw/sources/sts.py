"""``type: sts``: a JWT from AWS STS ``GetWebIdentityToken`` (outbound identity federation).

boto3 is imported here and nowhere else, so a gateway without an STS route never
pays for it. One client per (region, profile, endpoint, timeouts), made once and
shared (and closed once no route uses those settings). Calls run on a small thread pool
of the source's own (stopped with it), off the event loop, and off the loop's default
executor (which asyncio also uses for DNS lookups: a slow STS must not hold up name
resolution for every other flow).

botocore settings, chosen for a proxy where a request is waiting:
``connect_timeout`` 2 s, ``read_timeout`` 5 s, ``max_attempts`` 2 in ``standard``
retry mode (one retry, with botocore's jittered backoff, for throttling and
transient errors). All three can be set per route. Beyond that the cache's own
error backoff keeps a failing STS from being hammered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from authgw import aws
from authgw.config import Config, StsTokenConfig
from authgw.sources.base import Clock, next_generation
from authgw.tokens import MissingSecret, Token, TokenUnavailable, token_from_jwt

logger = logging.getLogger(__name__)
aws.quiet_sdk_loggers()  # an STS response body is a token

# What to check, by error class: the log line says it so nobody has to look it up.
HINTS = {
    "OutboundWebIdentityFederationDisabledException": (
        "the AWS account has not enabled outbound identity federation "
        "(IAM console, or `aws iam enable-outbound-web-identity-federation`)"
    ),
    "AccessDenied": "the caller's IAM policy must allow sts:GetWebIdentityToken",
    "SessionDurationEscalationException": (
        "duration outlives the caller's session; lower token.duration"
    ),
    "JWTPayloadSizeExceededException": "too many or too long tags; trim token.tags",
    "Throttling": "STS is throttling this caller; the gateway backs off",
    "ExpiredToken": "the AWS credentials the gateway runs with have expired",
    "InvalidClientTokenId": "the AWS access key the gateway runs with is not valid",
    "transport": "STS endpoint unreachable; check endpoint_url, region and network",
    "timeout": "STS did not answer in time; see connect_timeout and read_timeout",
}

ClientKey = tuple[str | None, str | None, str | None, float, float, int]

_clients: dict[ClientKey, Any] = {}
_clients_lock = threading.Lock()


def _client_for(config: StsTokenConfig) -> Any:
    """The shared STS client for this route's settings; raises botocore errors."""
    key = _client_key(config)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            session = boto3.session.Session(
                profile_name=config.profile, region_name=aws.region(config.region)
            )
            client = session.client(
                "sts",
                endpoint_url=config.endpoint_url,
                config=botocore.config.Config(
                    connect_timeout=config.connect_timeout,
                    read_timeout=config.read_timeout,
                    retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
                ),
            )
            if client.meta.region_name is None:
                # With an endpoint URL botocore makes the client, then fails each call.
                raise botocore.exceptions.NoRegionError()
            _clients[key] = client
        return client


def _client_key(config: StsTokenConfig) -> ClientKey:
    return (
        config.region,
        config.profile,
        config.endpoint_url,
        config.connect_timeout,
        config.read_timeout,
        config.max_attempts,
    )


def release(configs: Iterable[Config]) -> None:
    """Close the clients (their connection pools) that no sts route of ``configs`` uses."""
    used = {
        _client_key(r.token)
        for config in configs
        for r in config.routes
        if isinstance(r.token, StsTokenConfig)
    }
    with _clients_lock:
        closing = [_clients.pop(k) for k in list(_clients) if k not in used]
    for client in closing:
        client.close()


def classify(error: BaseException) -> tuple[str, str]:
    """(error_class, message) for an exception raised by a boto3 STS call."""
    if isinstance(error, botocore.exceptions.ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code") or "ClientError")
        return code, f"STS {code}: {err.get('Message', '')}".rstrip(": ")
    if isinstance(
        error, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError
    ):
        return "timeout", f"STS timed out ({type(error).__name__})"
    if isinstance(
        error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return "missing_secret", f"no usable AWS credentials ({type(error).__name__})"
    if isinstance(error, botocore.exceptions.BotoCoreError | OSError):
        return "transport", f"STS unreachable ({type(error).__name__})"
    return "internal", f"STS call failed ({type(error).__name__})"


class StsSource:
    kind = "sts"

    def __init__(
        self,
        route: str,
        config: StsTokenConfig,
        *,
        clock: Clock = time.time,
        call: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        """``call`` replaces the boto3 client's ``get_web_identity_token`` (tests)."""
        self.route = route
        self.generation = next_generation()
        self.config = config
        self._clock = clock
        self._call = call
        self._executor: ThreadPoolExecutor | None = None  # made at the first fetch
        self._closed = False

    def check(self) -> None:
        """Make the client now, so a missing region or unknown profile stops the start."""
        if self._call is None:
            self._call = _client_for(self.config).get_web_identity_token

    def cache_params(self) -> Hashable:
        c = self.config
        return (
            c.signing_algorithm,
            c.duration,
            c.tags,
            c.region,
            c.profile,
            c.endpoint_url,
            c.scope,
            c.subject_mode,
        )

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        if not audience:
            raise TokenUnavailable("internal", f"route {self.route}: no audience")
        kwargs: dict[str, Any] = {
            "Audience": list(audience),
            "SigningAlgorithm": self.config.signing_algorithm,
            "DurationSeconds": self.config.duration,
        }
        if self.config.tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in self.config.tags]
        if self.config.scope is not None:
            kwargs["Scope"] = self.config.scope
        if self.config.subject_mode is not None:
            kwargs["SubjectMode"] = self.config.subject_mode
        loop = asyncio.get_running_loop()
        try:
            self.check()
            assert self._call is not None
            response = await loop.run_in_executor(self._pool(), partial(self._call, **kwargs))
        except Exception as e:  # noqa: BLE001 - every failure becomes an error class
            error_class, message = classify(e)
            hint = HINTS.get(error_class)
            message = f"route {self.route}: {message}" + (f" - {hint}" if hint else "")
            if error_class == "missing_secret":
                raise MissingSecret(message) from None
            raise TokenUnavailable(error_class, message) from None
        value = response.get("WebIdentityToken")
        if not isinstance(value, str) or not value:
            raise TokenUnavailable("invalid_token", f"route {self.route}: STS sent no token")
        expiration = response.get("Expiration")
        expires_at = expiration.timestamp() if isinstance(expiration, datetime) else None
        return token_from_jwt(value, self.kind, expires_at=expires_at)

    def _pool(self) -> ThreadPoolExecutor:
        """This source's threads for STS calls (up to 8 at once), made when first needed."""
        if self._closed:
            raise TokenUnavailable("internal", f"route {self.route}: dropped by a reload")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="authgw-sts")
        return self._executor

    def close(self) -> None:
        """Stop the threads (a reload replaced this source, or the gateway stops); a call
        under way ends on its own, and no new one starts."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def upstream_rejected(self) -> None:
        pass  # STS makes a fresh token on the next miss; nothing here is stale

    async def settle(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "source": self.kind,
            "audience": c.audience if isinstance(c.audience, str) else list(c.audience),
            "signing_algorithm": c.signing_algorithm,
            "duration": c.duration,
            "tags": dict(c.tags),
            "region": c.region,
            "profile": c.profile,
            "endpoint_url": c.endpoint_url,
        }
