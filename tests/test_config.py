"""The whole file (authgw.config.loader) and how its errors name field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgw import config
from authgw.config import ConfigError
from tests.configs import MINIMAL, error, parse


def test_minimal_config_gets_the_documented_defaults() -> None:
    cfg = parse(MINIMAL)
    assert cfg.unmatched == "passthrough"
    assert cfg.upstream_header is None  # off unless the config names a header
    assert cfg.upstream_scheme == "https"
    assert cfg.cache == config.CacheSettings(1024, 60, 10, 5)
    assert cfg.flowlog is None and cfg.metrics is None
    (route,) = cfg.routes
    assert (route.header, route.prefix, route.keep_inbound_as, route.allow_http) == (
        "Authorization",
        "Bearer ",
        None,
        False,
    )
    assert route.token == config.HmacTokenConfig(
        secret=config.SecretRef(kind="env", name="DASH_SECRET")
    )
    assert cfg.warnings == ()


def test_design_example_parses() -> None:
    cfg = parse("""\
        version: 1
        unmatched: reject
        upstream_header: null
        upstream_scheme: http
        cache: {max_entries: 5, refresh_ahead: 30, min_ttl: 5, error_backoff: 2}
        flowlog: logs/flow.jsonl
        metrics: 127.0.0.1:9464
        routes:
          - name: status_dashboard
            hosts: [status-dashboard.example.com, "*.dashboards.example.com", "localhost:8443"]
            inbound: "keep-as:X-Forwarded-Authorization"
            allow_http: true
            token:
              type: hmac
              secret: {file: secrets/dash}
              optional: true
              algorithm: HS512
              claims: {stackmon: dummy, nested: {a: [1, 2]}}
              lifetime: 600
              audience: dynamic
              kid: none
          - name: partner_api
            hosts: ["*.partner.example"]
            token:
              type: sts
              audience: dynamic
              signing_algorithm: ES384
              duration: 900
              tags: {team: payments, cost: 42}
              region: eu-west-1
              endpoint_url: http://127.0.0.1:8090
          - name: gateway
            hosts: [gateway.internal]
            token: {type: static, value: {env: OPENCLAW_GATEWAY_TOKEN}}
    """)
    assert cfg.unmatched == "reject" and cfg.upstream_header is None
    assert cfg.flowlog == Path("/etc/authgw/logs/flow.jsonl")
    assert cfg.metrics == ("127.0.0.1", 9464)
    dash, partner, gateway = cfg.routes
    assert dash.keep_inbound_as == "X-Forwarded-Authorization"
    assert dash.token == config.HmacTokenConfig(
        secret=config.SecretRef(kind="file", name="/etc/authgw/secrets/dash"),
        optional=True,
        algorithm="HS512",
        claims={"stackmon": "dummy", "nested": {"a": [1, 2]}},
        lifetime=600,
        audience="dynamic",
        kid="none",
    )
    assert type(dash.token.claims["nested"]) is dict  # plain values, not ruamel's
    assert partner.token == config.StsTokenConfig(
        audience="dynamic",
        signing_algorithm="ES384",
        duration=900,
        tags=(("cost", "42"), ("team", "payments")),
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:8090",
    )
    assert gateway.token == config.StaticTokenConfig(
        value=config.SecretRef(kind="env", name="OPENCLAW_GATEWAY_TOKEN")
    )


def test_literal_secret_is_warned_and_kept_out_of_repr() -> None:
    cfg = parse(MINIMAL.replace("{env: DASH_SECRET}", "hunter2-literal"))
    assert cfg.warnings and "routes[0].token.secret is a literal" in cfg.warnings[0]
    assert "hunter2-literal" not in repr(cfg)
    assert "hunter2-literal" not in " ".join(cfg.warnings)


@pytest.mark.parametrize(
    ("replace", "message", "line"),
    [
        (
            ("type: hmac", "type: hmac\n      algorithm: HS999"),
            "routes[0].token.algorithm: is not one of HS256, HS384, HS512 (a string)",
            7,
        ),
        (("name: dash", "name: Dash"), "routes[0].name: must match [a-z0-9_]+", 3),
        (
            ("hosts: [dash.example.com]", "hosts: []"),
            "routes[0].hosts: must be a non-empty list of host patterns",
            4,
        ),
        (
            ("hosts: [dash.example.com]", "hosts: [dash.example.com, 'http://x']"),
            "routes[0].hosts[1]: is not a host pattern",
            4,
        ),
        (
            ("{env: DASH_SECRET}", "{env: A, file: b}"),
            "routes[0].token.secret: must have exactly one of env, file",
            7,
        ),
        (
            ("{env: DASH_SECRET}", "{vault: x}"),
            "routes[0].token.secret: unknown key; expected one of env, file",
            7,
        ),
        (
            ("type: hmac", "type: kerberos"),
            "routes[0].token.type: is not one of hmac, sts, static, basic, oauth2, sigv4"
            " (a string)",
            6,
        ),
        (
            ("type: hmac", "type: hmac\n      lifetime: 5"),
            "routes[0].token.lifetime: is not above cache.min_ttl",
            7,
        ),
        (
            ("type: hmac", "type: hmac\n      lifetime: soon"),
            "routes[0].token.lifetime: must be a whole number, not a string",
            7,
        ),
        (
            ("type: hmac", "type: hmac\n      claims: {exp: 1}"),
            "routes[0].token.claims: exp are set by lifetime, audience and not_before",
            7,
        ),
        (
            ("type: hmac", "type: hmac\n      optional: maybe"),
            "routes[0].token.optional: must be true or false, not a string",
            7,
        ),
        (
            ("    token:", "    inbound: keep\n    token:"),
            "routes[0].inbound: is not replace or keep-as:<Header-Name>",
            5,
        ),
        (
            ("    token:", "    inbound: keep-as:Authorization\n    token:"),
            "routes[0].inbound: keep-as: names the header the token goes in",
            5,
        ),
        (
            ("    token:", "    header: 'Bad Header'\n    token:"),
            "routes[0].header: is not a valid header name",
            5,
        ),
        (
            ("    token:", "    colour: blue\n    token:"),
            "routes[0]: unknown key; expected one of name, hosts",
            5,
        ),
        (("version: 1", "version: 2"), "version: is not supported (only 1)", 1),
        (
            ("version: 1", "version: 1\ncache: {max_entries: 0}"),
            "cache.max_entries: is out of range (from 1 to 1e+07)",
            2,
        ),
        (
            ("version: 1", "version: 1\nunmatched: drop"),
            "unmatched: is not one of passthrough, reject",
            2,
        ),
        (
            ("version: 1", "version: 1\nmetrics: localhost"),
            "metrics: has no port (expected host:port)",
            2,
        ),
        (("version: 1", "version: 1\ntimeout: 3"), "(top level): unknown key", 2),
        (
            ("    token:", "    retry_on_410: true\n    token:"),
            "routes[0]: unknown key 'retry_on_410' (did you mean retry_on_401?); expected",
            5,
        ),
        (
            ("{env: DASH_SECRET}", "{env: DASH_SECRET, s3cr3t-pasted-here-9f8a: 1}"),
            "routes[0].token.secret: unknown key; expected one of env, file",  # not named
            7,
        ),
    ],
)
def test_errors_name_field_reason_and_line(
    replace: tuple[str, str], message: str, line: int
) -> None:
    e = error(MINIMAL.replace(*replace))
    assert str(e).startswith(message), str(e)
    assert e.line == line
    assert str(e).endswith(f"(gateway.yaml:{line})")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a mapping, not null"),
        ("- a\n- b\n", "must be a mapping, not a list"),
        ("routes: []\n", "version: is required"),
        ("version: 1\n", "routes: is required"),
        ("version: 1\nroutes: {}\n", "routes: must be a list, not a mapping"),
        ("version: 1\nroutes: [\n", "not valid YAML"),
        ("version: 1\nversion: 1\nroutes: []\n", "not valid YAML"),
        ("version: 1\nroutes:\n\t- name: a\n", "a tab character, which YAML does not allow"),
    ],
)
def test_document_errors(text: str, message: str) -> None:
    assert message in str(error(text))


def test_load_reads_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(MINIMAL.replace("{env: DASH_SECRET}", "{file: s.txt}"))
    cfg = config.load(tmp_path / "gw.yaml")
    assert cfg.routes[0].token == config.HmacTokenConfig(
        secret=config.SecretRef(kind="file", name=str(tmp_path / "s.txt"))
    )


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "nope.yaml")


LEAKY = "s3cr3t-token-0123456789abcdef"
ROUTE = (
    "version: 1\nroutes:\n"
    "  - {{name: {name}, hosts: [{host}], {extra}token: {{type: hmac, secret: x}}}}\n"
)


@pytest.mark.parametrize(
    "text",
    [
        # a duplicate key: ruamel's message quotes both values
        f"version: 1\nroutes:\n  - name: g\n    hosts: [g]\n    token:\n      type: static\n"
        f"      value: {LEAKY}\n      value: {LEAKY}-2\n",
        # an alias to an anchor nobody defined: ruamel quotes the alias name
        f"version: 1\nroutes:\n  - name: g\n    hosts: [g]\n    token:\n      type: static\n"
        f"      value: *{LEAKY}\n",
        # a secret pasted as a key
        f"version: 1\nroutes:\n  - name: g\n    hosts: [g]\n    token:\n      type: hmac\n"
        f"      secret: {{{LEAKY}: 1}}\n",
        f"version: 1\n{LEAKY}: 1\nroutes: []\n",
        # a secret in a field that takes a choice, a number, a boolean, a header, a host
        f"version: 1\nunmatched: {LEAKY}\nroutes: []\n",
        f"version: 1\ncache: {{min_ttl: {LEAKY}}}\nroutes: []\n",
        ROUTE.format(name="g", host="g", extra=f"allow_http: {LEAKY}, "),
        ROUTE.format(name="g", host="g", extra=f"header: '{LEAKY} x', "),
        ROUTE.format(name="g", host=f"'{LEAKY}/x'", extra=""),
        ROUTE.format(name=f"'{LEAKY}'", host="g", extra=""),
        f"version: 1\nmetrics: '{LEAKY}'\nroutes: []\n",
        f"version: '{LEAKY}'\nroutes: []\n",
        # YAML syntax errors around a secret
        f'version: 1\nroutes: ["{LEAKY}\n',
        f"version: 1\n? [{LEAKY}]\n: x\n",
    ],
)
def test_a_config_error_never_quotes_a_value(text: str) -> None:
    message = str(error(text))
    assert LEAKY not in message
    assert "s3cr3t" not in message
    assert "gateway.yaml" in message


@pytest.mark.parametrize("text", ["-_", "._", "a: -_", "a: ._"])
def test_scalars_the_yaml_reader_fails_on_are_config_errors(text: str) -> None:
    # ruamel.yaml 0.19 raises IndexError/ValueError on these (hypothesis found them).
    with pytest.raises(ConfigError):
        config.parse(text)
