"""One exception root: a caller can catch every error authgw raises for it as AuthgwError."""

from __future__ import annotations

import pytest

from authgw.config import ConfigError
from authgw.errors import AuthgwError
from authgw.sources.remote import ReadFailed
from authgw.templates import MissingClaimInput, TemplateError
from authgw.tokens import InsecureUpstream, MissingSecret, TokenUnavailable
from authgw.verify.errors import JwksUnavailable, SecretUnavailable, VerifyError


@pytest.mark.parametrize(
    "error",
    [
        ConfigError,
        TemplateError,
        TokenUnavailable,
        MissingSecret,
        InsecureUpstream,
        MissingClaimInput,
        ReadFailed,
        VerifyError,
        SecretUnavailable,
        JwksUnavailable,
    ],
)
def test_every_error_a_caller_catches_is_an_authgw_error(error: type[Exception]) -> None:
    assert issubclass(error, AuthgwError)


def test_config_and_template_errors_stay_value_errors() -> None:
    # Callers that caught ValueError (the parsers' rule in mitmproxy's style) still do.
    assert issubclass(ConfigError, ValueError) and issubclass(TemplateError, ValueError)
