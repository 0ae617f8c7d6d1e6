"""The gateway's YAML config (version 1) as validated, frozen dataclasses.

``load(path)`` and ``parse(text)`` either return a ``Config`` or raise ``ConfigError``
naming the field path and the reason, with the line in the file where ruamel.yaml
knows it: ``routes[1].token.algorithm: HS999 is not one of HS256, HS384, HS512
(gateway.yaml:14)``. Parsing never reads secrets; ``sources.build`` does that.

Modules::

    schema     the dataclasses (Config, Route, the token configs) and ConfigError
    loader     load() and parse(): the YAML, the top-level keys, cache:
    routes     routes: each route's keys, hosts and verify:
    tokens     a route's token: section, one parser per type
    fields     FieldReader: typed getters that name the field and line of an error

Import from here: the modules' split is not part of the interface.
"""

from authgw.config.loader import listen_address, load, parse
from authgw.config.schema import (
    DYNAMIC,
    BasicTokenConfig,
    CacheSettings,
    Config,
    ConfigError,
    HmacTokenConfig,
    OAuth2TokenConfig,
    Route,
    SecretRef,
    SigV4TokenConfig,
    StaticTokenConfig,
    StsTokenConfig,
    TokenConfig,
    VerifyConfig,
    claim_template,
)

__all__ = [
    "BasicTokenConfig",
    "DYNAMIC",
    "CacheSettings",
    "Config",
    "ConfigError",
    "HmacTokenConfig",
    "Route",
    "SecretRef",
    "OAuth2TokenConfig",
    "SigV4TokenConfig",
    "StaticTokenConfig",
    "StsTokenConfig",
    "TokenConfig",
    "VerifyConfig",
    "claim_template",
    "listen_address",
    "load",
    "parse",
]
