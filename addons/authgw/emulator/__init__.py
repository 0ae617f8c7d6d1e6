"""A local AWS STS that answers ``GetWebIdentityToken``, and an OAuth2 token endpoint,
for offline demos and tests.

It speaks the AWS query protocol (API version 2011-06-15) on a loopback HTTP port,
so an unmodified boto3 client pointed at it with ``endpoint_url`` (or the
``AWS_ENDPOINT_URL_STS`` environment variable) gets real, verifiable JWTs:

- ``POST /`` with ``Action=GetWebIdentityToken``: validates the request the way
  the service model does (``Scope`` and ``SubjectMode`` included) and returns a JWT
  signed with a per-process RSA-2048 (RS256) or EC P-384 (ES384) key.
- ``POST /oauth2/token``: the OAuth2 client-credentials grant (RFC 6749 4.4) for
  registered clients (by default one demo client, ``DEMO_OAUTH2_CLIENT_ID`` /
  ``DEMO_OAUTH2_CLIENT_SECRET``); the access token is a JWT signed with the RS256 key.
- ``GET /.well-known/openid-configuration`` and ``GET /.well-known/jwks.json``:
  OIDC discovery; the ``iss`` claim is the emulator's own URL, so verifiers that
  discover keys from the issuer work against it.
- ``/_emulator/faults`` and ``/_emulator/calls`` (STS), ``/_emulator/oauth2/faults``
  and ``/_emulator/oauth2/calls`` (OAuth2): fault injection (any AWS or OAuth2 error
  code, or a bad OAuth2 answer, for the next N calls or all of them; added latency)
  and the call records, for tests and demos that run the emulator as its own
  process. The same controls exist as methods on :class:`StsEmulator`.

What it does not do: it never verifies a SigV4 signature (it only requires an
``AWS4-HMAC-SHA256`` ``Authorization`` header and reads the access key id and
region from its credential scope), it knows no IAM users, roles, policies or
accounts (the caller's ARN is derived from the access key id), and it implements
no other STS action; its OAuth2 endpoint knows no grant but client credentials. Its
keys live only as long as the process. Do not expose it beyond loopback.

Layout: ``server`` (lifecycle and controls: ``StsEmulator``, ``serve``), ``handler``
(path dispatch), ``sts`` (the STS query protocol and its errors), ``sts_request`` (one
GetWebIdentityToken request: parameters, validation, record), ``oauth2`` (the token
endpoint, its errors and bad answers), ``oauth2_request`` (one token request: client
authentication, validation, record), ``keys`` (signing keys, JWKS, OIDC discovery),
``controls`` (injected faults, latency, call log).
"""

from authgw.emulator.oauth2 import OAUTH2_ANSWERS, OAUTH2_ERRORS, OAuth2Error
from authgw.emulator.oauth2_request import (
    DEMO_OAUTH2_CLIENT_ID,
    DEMO_OAUTH2_CLIENT_SECRET,
    OAuth2CallRecord,
    OAuth2Client,
)
from authgw.emulator.server import StsEmulator, serve
from authgw.emulator.sts import (
    API_VERSION,
    AWS_ERRORS,
    DEMO_ACCESS_KEY_ID,
    DEMO_ORIGIN_SUBJECT,
    DEMO_REGION,
    DEMO_SECRET_ACCESS_KEY,
    STS_CLAIM,
    AwsError,
)
from authgw.emulator.sts_request import RESULT_OK, SIGNING_ALGORITHMS, SUBJECT_MODES, CallRecord

__all__ = [
    "API_VERSION",
    "AWS_ERRORS",
    "DEMO_ACCESS_KEY_ID",
    "DEMO_OAUTH2_CLIENT_ID",
    "DEMO_OAUTH2_CLIENT_SECRET",
    "DEMO_ORIGIN_SUBJECT",
    "DEMO_REGION",
    "DEMO_SECRET_ACCESS_KEY",
    "OAUTH2_ANSWERS",
    "OAUTH2_ERRORS",
    "RESULT_OK",
    "SIGNING_ALGORITHMS",
    "STS_CLAIM",
    "SUBJECT_MODES",
    "AwsError",
    "CallRecord",
    "OAuth2CallRecord",
    "OAuth2Client",
    "OAuth2Error",
    "StsEmulator",
    "serve",
]
