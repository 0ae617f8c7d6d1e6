"""``type: sigv4``: AWS Signature Version 4 on each request, made by botocore's signer.

Not a token source: nothing is cached or fetched. The request decision takes the
credentials (``credentials``, which may refresh them: botocore's refreshable
credentials, from the default chain or a profile) and, once every other addon has had
its say, ``sign`` hands the request to botocore (``SigV4Auth``; ``S3SigV4Auth`` for
``s3``) and returns the headers to set. The query string is put in canonical form
first (``canonical_query``), and the request is sent with that form, so what is signed
is what the upstream reads. botocore is imported here, so only a gateway with a sigv4
route pays for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import botocore.config
import botocore.exceptions
import botocore.session
from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from authgw import aws
from authgw.config.schema import HOP_BY_HOP_HEADERS, SigV4TokenConfig
from authgw.sources.base import Clock, next_generation
from authgw.tokens import MissingSecret, fingerprint

logger = logging.getLogger(__name__)
aws.quiet_sdk_loggers()  # botocore logs canonical requests at DEBUG

# The headers the signature is made of: every end-to-end header but these, which a hop
# may add, drop or rewrite (hop-by-hop, framing, the proxy's own), and Date (botocore
# would sign Date instead of setting X-Amz-Date).
UNSIGNED_HEADERS = HOP_BY_HOP_HEADERS | {"content-length", "expect", "date", "user-agent"}
# What sign() sets, and what a client's request must not bring along.
SIGV4_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Security-Token")


def canonical_query(query: str) -> str:
    """``query`` as SigV4 canonicalises it: each name and value decoded (``+`` as a space,
    as AWS's SDKs read it) and percent-encoded again except ``A-Za-z0-9-_.~``, pairs sorted
    by name, then value; a name without ``=`` gets an empty value."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((_encode(name), _encode(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_path(path: str) -> str:
    """An S3 path as S3 canonicalises it: each segment decoded and percent-encoded once
    again except ``A-Za-z0-9-_.~`` (``+`` is a plus). botocore signs an S3 path as given,
    and S3 re-encodes what it decodes, so the request is sent in this form."""
    return "/".join(quote(unquote_to_bytes(segment), safe="-_.~") for segment in path.split("/"))


def _encode(text: str) -> str:
    return quote(unquote_to_bytes(text.replace("+", " ")), safe="-_.~")


class SigV4Signer:
    kind = "sigv4"

    def __init__(self, route: str, config: SigV4TokenConfig, *, clock: Clock = time.time) -> None:
        self.route = route
        self.generation = next_generation()  # which settings built it (nothing is cached)
        self.config = config
        self._clock = clock
        self._session = botocore.session.Session(profile=config.profile)
        region = aws.region(config.region) or self._session.get_config_variable("region")
        if not region:
            raise botocore.exceptions.NoRegionError()
        self.region: str = region
        self._signer = S3SigV4Auth if config.service == "s3" else SigV4Auth
        self._credentials: Credentials | None = None
        self._looked = False
        self._key_fp: str | None = None

    def check(self) -> None:
        if self._chain() is None:
            raise MissingSecret(
                "no AWS credentials (the default chain: environment, profile, SSO, "
                "container, instance metadata)"
            )

    def _chain(self) -> Credentials | None:
        if not self._looked:
            self._credentials = self._session.get_credentials()
            self._looked = True
        return self._credentials

    def needs_refresh(self) -> bool:
        """True if ``credentials`` may block: refreshable credentials about to expire."""
        creds = self._chain()
        refresh = getattr(creds, "refresh_needed", None)
        return bool(refresh is not None and refresh())

    def credentials(self) -> ReadOnlyCredentials:
        """The credentials to sign with now (botocore refreshes them when due); raises
        ``MissingSecret`` if there are none."""
        creds = self._chain()
        if creds is None:
            self.check()
        assert creds is not None
        frozen = creds.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            raise MissingSecret("the AWS credentials have no access key or secret key")
        self._key_fp = fingerprint(frozen.access_key)
        return frozen

    def sign(
        self,
        credentials: ReadOnlyCredentials,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
    ) -> list[tuple[str, str]]:
        """The headers that sign this request: Authorization, X-Amz-Date,
        X-Amz-Content-SHA256 and, with session credentials, X-Amz-Security-Token. ``body``
        None: not known (streamed), so the payload is unsigned whatever the config says."""
        request = AWSRequest(method=method, url=url, data=body or b"")
        for name, value in headers:
            if name.lower() not in UNSIGNED_HEADERS:
                request.headers[name] = value  # appends: a repeated header keeps each value
        signer = self._signer(
            Credentials(
                credentials.access_key or "", credentials.secret_key or "", credentials.token
            ),
            self.config.service,
            self.region,
        )
        if self.config.payload == "unsigned" or body is None:
            request.context["payload_signing_enabled"] = False
            request.context["client_config"] = botocore.config.Config(
                s3={"payload_signing_enabled": False}
            )
            request.headers["X-Amz-Content-SHA256"] = UNSIGNED_PAYLOAD
        else:
            request.headers["X-Amz-Content-SHA256"] = signer.payload(request)
        signer.add_auth(request)
        return [(n, request.headers[n]) for n in SIGV4_HEADERS if n in request.headers]

    def key_id(self) -> str | None:
        """The fingerprint of the access key id last signed with (the flow log's kid); None
        before the first request. Never reads the credentials: on refreshable ones that
        may run the refresh, here on the event loop."""
        return self._key_fp

    def upstream_rejected(self) -> None:
        pass  # botocore refreshes credentials itself; nothing here is stale

    async def settle(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        creds = self._credentials
        return {
            "source": self.kind,
            "service": self.config.service,
            "region": self.region,
            "payload": self.config.payload,
            "profile": self.config.profile,
            "credentials": getattr(creds, "method", None),
            "secret_fingerprint": self.key_id(),  # of the access key id, as the flow log's kid
        }
