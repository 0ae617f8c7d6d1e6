"""authgw: an auth gateway that lives inside mitmproxy.

Per upstream host it injects a bearer token (an HMAC-signed JWT, an AWS STS
``GetWebIdentityToken`` JWT, or a static token), caches it with bounded eviction,
refreshes it before expiry and fails closed when it cannot get one.
"""

__version__ = "0.1.0"
