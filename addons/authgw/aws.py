"""What every AWS-backed part shares (STS tokens, SigV4 signing, Secrets Manager and SSM
secrets): the region fallback, botocore's loggers kept quiet, STS's signing algorithms.

Imports neither boto3 nor botocore: those are imported only by the modules of the
routes that need them (``sources.build``, ``decision._sigv4``).
"""

from __future__ import annotations

import logging
import os

# What GetWebIdentityToken signs with (its SigningAlgorithm).
STS_SIGNING_ALGORITHMS = ("RS256", "ES384")

# At DEBUG, botocore logs canonical requests and whole response bodies (an STS token, a
# Secrets Manager value); mitmdump's `termlog_verbosity=debug` would print them.
_SDK_LOGGERS = ("botocore", "boto3", "urllib3")


def region(configured: str | None) -> str | None:
    """The region a route or secret names, else ``AWS_REGION``, else None: boto3's own
    chain then decides (``AWS_DEFAULT_REGION``, the profile's ``region``).

    boto3 reads ``AWS_DEFAULT_REGION`` but not ``AWS_REGION``, which the AWS CLI and the
    other SDKs honour (and put first); authgw does as they do.
    """
    return configured or os.environ.get("AWS_REGION") or None


def quiet_sdk_loggers() -> None:
    """Stop the AWS SDK's loggers at INFO, whatever the root logger's level."""
    for name in _SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
