"""Checking a bearer token against a shared secret or a JWK Set, with the answer as a value.

``verify_hmac`` checks a token against a secret, ``verify_jwks`` against a JWK Set
(a file, a JWKS URL or an issuer URL, see ``JwksSource``). Both return a
``Verdict``: valid or not, a short machine ``reason`` and a ``detail`` sentence
saying why. Nothing here prints; no detail holds a secret or a token, only
fingerprints (``authgw.tokens.fingerprint``).

Checks run in this order, and the first that fails is the reason:

==========================  ================================================
``malformed``               not a compact JWS with JSON header and claims
``unsupported_algorithm``   ``alg`` does not fit the key: never ``none``, no
                            HS* against a JWKS, no RS*/ES*/PS*/EdDSA against
                            a secret
``unknown_kid``             the JWKS has no key for the token
``bad_signature``           the signature does not match the key
``invalid_claim``           ``exp``/``nbf``/``iat`` is not a number
``expired``                 ``exp`` has passed
``not_yet_valid``           ``nbf`` or ``iat`` is in the future
``wrong_issuer``            ``iss`` is not the expected issuer
``wrong_audience``          ``aud`` does not hold the expected audience
``valid``                   all of the above passed
==========================  ================================================

Claims are believed only once the signature matched. When a check cannot be made
at all (no secret, no JWKS), a ``VerifyError`` says why (``errors``).

Layout: ``check`` (verify_hmac, verify_jwks), ``verdict`` (Verdict and the rules on
algorithm and claims), ``jwks`` (JWK Sets and where they come from), ``errors``,
``secret_sources`` (the CLI's SRC), ``route`` (RouteVerifier, for verify routes),
``text`` (printable, utc_time, human_duration).
"""

from authgw.jwtutil import HMAC_ALGORITHMS, JWKS_ALGORITHMS
from authgw.verify.check import verify_hmac, verify_jwks
from authgw.verify.errors import JwksUnavailable, SecretUnavailable, VerifyError
from authgw.verify.jwks import Jwks, JwksSource
from authgw.verify.route import RouteVerifier
from authgw.verify.secret_sources import SecretSource, SourceKind
from authgw.verify.text import human_duration, printable, utc_time
from authgw.verify.verdict import Reason, Verdict

__all__ = [
    "HMAC_ALGORITHMS",
    "JWKS_ALGORITHMS",
    "Jwks",
    "JwksSource",
    "JwksUnavailable",
    "Reason",
    "RouteVerifier",
    "SecretSource",
    "SecretUnavailable",
    "SourceKind",
    "Verdict",
    "VerifyError",
    "human_duration",
    "printable",
    "utc_time",
    "verify_hmac",
    "verify_jwks",
]
