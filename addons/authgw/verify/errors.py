"""Why a token cannot be checked at all, as opposed to a verdict that it is invalid::

    VerifyError             the input cannot be used to check a token
    ├── SecretUnavailable   a secret source (env:, file:, cmd:, config:) gave nothing
    └── JwksUnavailable     a JWK Set could not be fetched, read or parsed

The CLI answers any of them with exit status 2.
"""

from __future__ import annotations

from authgw.errors import AuthgwError


class VerifyError(AuthgwError):
    """The input cannot be used to check a token (the CLI's exit status 2)."""


class SecretUnavailable(VerifyError):
    """A secret source gave no secret: unset, missing, unreadable, empty or failed."""


class JwksUnavailable(VerifyError):
    """A JWK Set could not be fetched, read or parsed, or holds no usable key."""
