"""A route's token: section (authgw.config.tokens), through config.parse."""

from __future__ import annotations

import pytest

from authgw import config, sources
from authgw.config import ConfigError
from tests.configs import MINIMAL, error, parse


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("{type: sts, audience: []}", "routes[0].token.audience: must be dynamic or a list"),
        (
            "{type: sts, audience: [" + ",".join(["a"] * 11) + "]}",
            "routes[0].token.audience: must be dynamic or a list of 1 to 10",
        ),
        (
            "{type: sts, audience: dynamic, duration: 59}",
            "routes[0].token.duration: is out of range (from 60 to 3600)",
        ),
        (
            "{type: sts, audience: dynamic, duration: 3601}",
            "routes[0].token.duration: is out of range",
        ),
        (
            "{type: sts, audience: dynamic, signing_algorithm: HS256}",
            "routes[0].token.signing_algorithm: is not one of RS256, ES384",
        ),
        (
            "{type: sts, audience: dynamic, tags: {"
            + ",".join(f"k{i}: v" for i in range(51))
            + "}}",
            "routes[0].token.tags: has 51 tags; STS takes at most 50",
        ),
        (
            "{type: sts, audience: dynamic, endpoint_url: 'ftp://x'}",
            "routes[0].token.endpoint_url: is not an http(s) URL",
        ),
        ("{type: static}", "routes[0].token.value: is required"),
        ("{type: static, value: ''}", "routes[0].token.value: must not be empty"),
    ],
)
def test_token_errors(token: str, message: str) -> None:
    text = MINIMAL.split("    token:")[0] + f"    token: {token}\n"
    assert str(error(text)).startswith(message)


def test_single_sts_audience_string_is_a_list_of_one() -> None:
    text = MINIMAL.split("    token:")[0] + "    token: {type: sts, audience: svc}\n"
    token = parse(text).routes[0].token
    assert isinstance(token, config.StsTokenConfig) and token.audience == ("svc",)


@pytest.mark.parametrize(
    ("token", "named"),
    [
        ("{type: sts, audience: dynamic, duration: 60}", "routes[0].token.duration is 60 s"),
        ("{type: hmac, secret: {env: S}, lifetime: 45}", "routes[0].token.lifetime is 45 s"),
    ],
)
def test_refresh_ahead_at_or_above_a_token_life_is_warned(token: str, named: str) -> None:
    cfg = parse(f"version: 1\nroutes:\n  - {{name: r, hosts: [h], token: {token}}}\n")
    warned = [w for w in cfg.warnings if "refresh_ahead" in w]
    assert len(warned) == 1
    assert named in warned[0] and "cache.refresh_ahead is 60 s" in warned[0]


def test_refresh_ahead_below_the_life_is_not_warned() -> None:
    cfg = parse(
        "version: 1\nroutes:\n  - {name: r, hosts: [h], token: {type: sts, audience: dynamic}}\n"
    )
    assert not [w for w in cfg.warnings if "refresh_ahead" in w]


def test_hmac_typ_backdate_and_not_before() -> None:
    route = "  - {name: r, hosts: [h], token: {type: hmac, secret: {env: S}, %s}}\n"
    cfg = parse("version: 1\nroutes:\n" + route % "typ: null, backdate: 30, not_before: true")
    token = cfg.routes[0].token
    assert isinstance(token, config.HmacTokenConfig)
    assert (token.typ, token.backdate, token.not_before) == (None, 30, True)
    default = parse("version: 1\nroutes:\n" + route % "kid: none").routes[0].token
    assert isinstance(default, config.HmacTokenConfig)
    assert (default.typ, default.backdate, default.not_before) == ("JWT", 0, False)
    assert "routes[0].token.backdate: is out of range" in str(
        error("version: 1\nroutes:\n" + route % "backdate: -1")
    )


def test_sts_scope_and_subject_mode() -> None:
    route = "  - {name: r, hosts: [h], token: {type: sts, audience: [a], %s}}\n"
    token = (
        parse("version: 1\nroutes:\n" + route % "scope: 'read write', subject_mode: OriginIdentity")
        .routes[0]
        .token
    )
    assert isinstance(token, config.StsTokenConfig)
    assert (token.scope, token.subject_mode) == ("read write", "OriginIdentity")
    unset = parse("version: 1\nroutes:\n" + route % "region: us-east-1").routes[0].token
    assert isinstance(unset, config.StsTokenConfig)
    assert (unset.scope, unset.subject_mode) == (None, None)
    assert "routes[0].token.scope: must be scope values" in str(
        error("version: 1\nroutes:\n" + route % "scope: 'a  b'")
    )
    assert "routes[0].token.subject_mode: is not one of AWSIdentity, OriginIdentity" in str(
        error("version: 1\nroutes:\n" + route % "subject_mode: Me")
    )


OAUTH2 = "  - {name: r, hosts: [h], token: {type: oauth2, %s}}\n"
IDS = "client_id: my-app, client_secret: {env: S}"


def test_oauth2_token() -> None:
    cfg = parse(
        "version: 1\nroutes:\n"
        + OAUTH2
        % f"token_url: 'https://idp.example/oauth2/token', {IDS}, scope: read, "
        "audience: dynamic, params: {resource: 'https://api.example'}, "
        "auth_method: client_secret_post"
    )
    token = cfg.routes[0].token
    assert isinstance(token, config.OAuth2TokenConfig)
    assert token.client_id.literal == "my-app" and token.client_secret.name == "S"
    assert (token.scope, token.audience, token.auth_method) == (
        "read",
        "dynamic",
        "client_secret_post",
    )
    assert token.params == (("resource", "https://api.example"),)
    assert not [w for w in cfg.warnings if "client_id" in w]  # a client id is no secret


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (f"token_url: 'http://idp.example/t', {IDS}", "plain http is accepted only to loopback"),
        (f"token_url: 'https://u:p@idp.example/t', {IDS}", "must not hold credentials"),
        (f"token_url: 'https://idp.example/t', {IDS}, params: {{scope: x}}", "scope are set by"),
        (f"{IDS}", "token_url: is required"),
    ],
)
def test_oauth2_errors(settings: str, message: str) -> None:
    assert message in str(error("version: 1\nroutes:\n" + OAUTH2 % settings))


def test_oauth2_token_url_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the emulator prints it: AUTHGW_OAUTH2_TOKEN_URL=..."""
    settings = f"token_url: {{env: AUTHGW_T_URL}}, {IDS}"
    monkeypatch.delenv("AUTHGW_T_URL", raising=False)
    assert "token_url: env AUTHGW_T_URL is not set" in str(
        error("version: 1\nroutes:\n" + OAUTH2 % settings)
    )
    monkeypatch.setenv("AUTHGW_T_URL", "http://127.0.0.1:9/token")
    token = parse("version: 1\nroutes:\n" + OAUTH2 % settings).routes[0].token
    assert isinstance(token, config.OAuth2TokenConfig)
    assert token.token_url == "http://127.0.0.1:9/token"
    monkeypatch.setenv("AUTHGW_T_URL", "http://idp.example/token")  # the same rules apply
    assert "plain http is accepted only to loopback" in str(
        error("version: 1\nroutes:\n" + OAUTH2 % settings)
    )
    assert "must be an http(s) URL, or {env: NAME}" in str(
        error("version: 1\nroutes:\n" + OAUTH2 % f"token_url: {{file: x}}, {IDS}")
    )


def test_oauth2_token_url_over_plain_http_to_loopback_is_fine() -> None:
    cfg = parse("version: 1\nroutes:\n" + OAUTH2 % f"token_url: 'http://127.0.0.1:9/t', {IDS}")
    assert cfg.routes[0].token is not None


@pytest.mark.parametrize(
    ("unset", "field"), [("AUTHGW_T_ID", "client_id"), ("AUTHGW_T_SECRET", "client_secret")]
)
def test_a_missing_oauth2_variable_names_its_own_field(
    monkeypatch: pytest.MonkeyPatch, unset: str, field: str
) -> None:
    """Start and `authgw check` name the field whose variable is missing."""
    monkeypatch.setenv("AUTHGW_T_ID", "my-app")
    monkeypatch.setenv("AUTHGW_T_SECRET", "s3cret-value")
    monkeypatch.delenv(unset)
    settings = (
        "token_url: 'https://idp.example/t', client_id: {env: AUTHGW_T_ID}, "
        "client_secret: {env: AUTHGW_T_SECRET}"
    )
    cfg = parse("version: 1\nroutes:\n" + OAUTH2 % settings)
    with pytest.raises(ConfigError) as caught:
        sources.build_all(cfg)
    assert caught.value.path == f"routes[0].token.{field}"
    assert unset in str(caught.value) and "s3cret-value" not in str(caught.value)
