"""The routes: list and verify: sections (authgw.config.routes), through config.parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgw import config
from tests.configs import MINIMAL, error, parse


def test_duplicate_route_names() -> None:
    text = MINIMAL + MINIMAL.split("routes:\n")[1]
    e = error(text)
    assert str(e).startswith("routes[1].name: 'dash' is used by an earlier route")
    assert e.line == 8


def test_verify_routes(tmp_path: Path) -> None:
    cfg = parse("""\
        version: 1
        routes:
          - name: dash
            hosts: [dash.example.com]
            verify: {secret: {env: S}, audience: dynamic, issuer: me, enforce: true}
          - name: partner
            hosts: [p.example]
            verify: {jwks: keys/jwks.json}
            token: {type: static, value: {env: T}}
          - name: sts
            hosts: [s.example]
            verify: {jwks: "http://127.0.0.1:8090"}
    """)
    dash, partner, sts = cfg.routes
    assert dash.token is None
    assert dash.verify == config.VerifyConfig(
        secret=config.SecretRef(kind="env", name="S"), audience="dynamic", issuer="me", enforce=True
    )
    assert partner.verify is not None and partner.verify.jwks == "/etc/authgw/keys/jwks.json"
    assert partner.token is not None
    assert sts.verify is not None and sts.verify.jwks == "http://127.0.0.1:8090"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("{name: a, hosts: [a]}", "routes[0].token: is required (or verify:, or both)"),
        (
            "{name: a, hosts: [a], verify: {}}",
            "routes[0].verify: needs exactly one of secret, jwks",
        ),
        (
            "{name: a, hosts: [a], verify: {secret: {env: S}, jwks: x}}",
            "routes[0].verify: needs exactly one of secret, jwks",
        ),
        (
            "{name: a, hosts: [a], verify: {jwks: x, enforce: yes}}",
            "routes[0].verify.enforce: must be true or false",
        ),
        (
            "{name: a, hosts: [a], verify: {jwks: x, mode: strict}}",
            "routes[0].verify: unknown key",
        ),
    ],
)
def test_verify_errors(route: str, message: str) -> None:
    assert str(error(f"version: 1\nroutes:\n  - {route}\n")).startswith(message)


WITH_SECRET = (
    "version: 1\nroutes:\n  - {{name: r, hosts: [h], token: {{type: hmac, secret: {}}}}}\n"
)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("{cmd: 'pass show dash'}", ("cmd", "pass show dash", None, 300.0, 5.0)),
        ("{cmd: x, refresh: 60, timeout: 2}", ("cmd", "x", None, 60.0, 2.0)),
        (
            "{aws_secretsmanager: dash, field: hmac}",
            ("aws_secretsmanager", "dash", "hmac", 300.0, 5.0),
        ),
        ("{aws_ssm: /dash/key, refresh: 30}", ("aws_ssm", "/dash/key", None, 30.0, 5.0)),
    ],
)
def test_secrets_read_where_they_are_kept(secret: str, expected: tuple[object, ...]) -> None:
    cfg = parse(WITH_SECRET.format(secret))
    token = cfg.routes[0].token
    assert isinstance(token, config.HmacTokenConfig)
    ref = token.secret
    assert (ref.kind, ref.name, ref.field, ref.refresh, ref.timeout) == expected and ref.remote


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("{cmd: x, field: y}", "routes[0].token.secret.field: does not go with cmd"),
        ("{env: X, refresh: 3}", "routes[0].token.secret.refresh: does not go with env"),
        ("{cmd: x, aws_ssm: y}", "routes[0].token.secret: must have exactly one of"),
        ("{cmd: x, refresh: 0}", "routes[0].token.secret.refresh: is out of range"),
    ],
)
def test_secret_source_errors(secret: str, message: str) -> None:
    assert str(error(WITH_SECRET.format(secret))).startswith(message)


def test_verify_leeway() -> None:
    cfg = parse(
        "version: 1\nroutes:\n  - {name: v, hosts: [h], verify: {secret: {env: S}, leeway: 5}}\n"
    )
    assert cfg.routes[0].verify is not None and cfg.routes[0].verify.leeway == 5
