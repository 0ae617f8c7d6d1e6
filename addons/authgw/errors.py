"""authgw's exceptions: one root, one class per rule, as PyJWT's ``PyJWTError``.

    AuthgwError                     every error authgw raises for a caller to catch
     ├── ConfigError                config/schema.py: a config field is wrong (a ValueError)
     ├── TemplateError              templates.py: a claim template does not parse (a ValueError)
     ├── TokenUnavailable           tokens.py: no token for a request (answered 502)
     │    ├── MissingSecret         the secret is not there
     │    └── InsecureUpstream      a token over plain http to a non-loopback host
     ├── MissingClaimInput          templates.py: a claim's input is missing (answered 400)
     ├── ReadFailed                 sources/remote.py: a read of a kept secret failed
     └── VerifyError                verify/errors.py: a token cannot be checked
          ├── SecretUnavailable
          └── JwksUnavailable

A 4xx the gateway answers is no exception: the decision returns it as a value
(``decision.Answer``). Not under the root, because no caller catches them:
``verify.verdict.Finding`` (a check's finding on its way to the verdict) and the
emulator's own refusals (turned into HTTP answers there).
"""

from __future__ import annotations


class AuthgwError(Exception):
    """Every error authgw raises for a caller to catch."""
