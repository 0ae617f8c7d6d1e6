"""Claim templates: parsed once, rendered per request, the rendered claims in the cache key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jwt
import pytest
from mitmproxy.test import taddons

from authgw import config as configmod
from authgw.addon import AuthGateway
from authgw.config import ConfigError
from authgw.templates import Inputs, MissingClaimInput, TemplateError, compile_claims
from tests.fakes import hook, wire
from tests.test_addon import SECRET, _client_token, flow, with_gateway

pytestmark = pytest.mark.usefixtures("task_factory")


def inputs(
    headers: dict[str, list[str]] | None = None,
    client: dict[str, Any] | None = None,
    host: str = "api.example",
    method: str = "get",
) -> Inputs:
    given = {k.lower(): v for k, v in (headers or {}).items()}
    return Inputs(lambda name: given.get(name.lower(), []), client, host, method)


def test_claims_without_placeholders_are_no_template() -> None:
    assert compile_claims({"sub": "svc", "n": 1, "price": "$5", "open": "${"}) is None


def test_every_kind_of_placeholder_is_filled_in() -> None:
    template = compile_claims(
        {
            "sub": "${client:sub}",
            "roles": "${client:roles}",
            "user": "${header:X-Debug-User}",
            "ctx": {"host": "${host}", "line": "${method} by ${header:x-debug-user} $$1"},
            "list": ["${method}", 2],
            "fixed": "kept",
        }
    )
    assert template is not None and template.headers == ("X-Debug-User", "x-debug-user")
    claims, text = template.render(
        inputs(
            {"X-Debug-User": ["alice"]},
            {"sub": "alice@corp", "roles": ["admin", "dev"]},
            host="API.Example.",
            method="post",
        )
    )
    assert claims == {
        "sub": "alice@corp",
        "roles": ["admin", "dev"],  # a whole-value placeholder keeps the claim's type
        "user": "alice",
        "ctx": {"host": "api.example", "line": "POST by alice $1"},
        "list": ["POST", 2],
        "fixed": "kept",
    }
    assert json.loads(text) == claims and text == json.dumps(
        claims, sort_keys=True, separators=(",", ":")
    )


@pytest.mark.parametrize(
    ("headers", "client", "body"),
    [
        ({}, {"sub": "a"}, "missing claim input X-User"),
        ({"X-User": [""]}, {"sub": "a"}, "missing claim input X-User"),
        ({"X-User": ["  "]}, {"sub": "a"}, "missing claim input X-User"),
        ({"X-User": ["a", "b"]}, {"sub": "a"}, "bad claim input X-User: sent 2 times"),
        ({"X-User": ["x" * 1025]}, {"sub": "a"}, "bad claim input X-User: longer than 1024"),
        ({"X-User": ["al\udcffice"]}, {"sub": "a"}, "bad claim input X-User: not printable"),
        ({"X-User": ["alice\r\n admin"]}, {"sub": "a"}, "bad claim input X-User: not printable"),
        ({"X-User": ["u"]}, {"sub": "\ud800"}, "bad claim input sub: not printable"),
        ({"X-User": ["u"]}, None, "missing claim input sub"),
        ({"X-User": ["u"]}, {"sub": ""}, "missing claim input sub"),
        ({"X-User": ["u"]}, {"sub": None}, "missing claim input sub"),
    ],
)
def test_a_missing_input_is_refused_never_signed_empty(
    headers: dict[str, list[str]], client: dict[str, Any] | None, body: str
) -> None:
    template = compile_claims({"user": "${header:X-User}", "sub": "${client:sub}"})
    assert template is not None
    with pytest.raises(MissingClaimInput) as caught:
        template.render(inputs(headers, client))
    assert caught.value.body.startswith(body)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("G" * 1100, "bad claim input method: longer than 1024 characters"),
        ("G\x00ET", "bad claim input method: not printable UTF-8 text"),
    ],
)
def test_the_method_is_under_the_input_rules(method: str, body: str) -> None:
    template = compile_claims({"m": "${method}"})
    assert template is not None
    with pytest.raises(MissingClaimInput) as caught:
        template.render(inputs(method=method))
    assert caught.value.body == body


def test_unicode_whitespace_in_a_header_is_kept() -> None:
    """HTTP strips only SP and HTAB around a field value; U+00A0 and U+3000 are the
    client's, and the Rust reporter signs them too."""
    template = compile_claims({"user": "${header:X-User}"})
    assert template is not None
    claims, _ = template.render(inputs({"X-User": [" \t\u00a0alice\u3000\t "]}))
    assert claims == {"user": "\u00a0alice\u3000"}


@pytest.mark.parametrize(
    "value", ["${user}", "${header:}", "${header:X User}", "${client:}", "${host:x}", "${}"]
)
def test_an_unknown_placeholder_is_a_template_error(value: str) -> None:
    with pytest.raises(TemplateError, match=r"claims\.a: a placeholder must be"):
        compile_claims({"a": value})


def _load(tmp_path: Path, token: str, extra: str = "") -> configmod.Config:
    path = tmp_path / "gateway.yaml"
    route = f"""\
        version: 1
        routes:
          - name: api
            hosts: [api.example]
        {textwrap.indent(extra, "    ")}
            token:
              type: hmac
              secret: {{env: DASH_SECRET}}
        {textwrap.indent(token, "      ")}
        """
    path.write_text(textwrap.dedent(route))
    return configmod.load(path)


@pytest.mark.parametrize(
    ("token", "extra", "message"),
    [
        (
            'claims: {a: "${nope:x}"}',
            "",
            r"routes\[0\]\.token\.claims\.a: a placeholder must be .*found \$\{nope\.\.\.\}",
        ),
        (
            'claims: {sub: "${client:sub}"}',
            "",
            r"routes\[0\]\.token\.claims: \$\{client:\.\.\.\} needs a verify: section",
        ),
        (
            'claims: {a: "${header:authorization}"}',
            "",
            r"routes\[0\]\.token\.claims: \$\{header:authorization\} names a header that carries",
        ),
        (
            'claims: {a: "${header:X-Orig}"}',
            "inbound: keep-as:x-orig",
            r"names a header that carries the route's credential",
        ),
        (
            'claims: {a: "${header:Transfer-Encoding}"}',
            "",
            r"\$\{header:Transfer-Encoding\} names a header that frames or routes the request",
        ),
        ('claims: {a: "${header:host}"}', "", r"frames or routes the request"),
    ],
)
def test_templates_the_config_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, extra: str, message: str
) -> None:
    monkeypatch.setenv("DASH_SECRET", SECRET)
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, token, extra)


def test_a_template_may_not_read_the_upstream_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASH_SECRET", SECRET)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\nupstream_header: X-Route-To\nroutes:\n  - name: api\n"
        "    hosts: [api.example]\n    token: {type: hmac, secret: {env: DASH_SECRET}, "
        'claims: {a: "${header:x-route-to}"}}\n'
    )
    with pytest.raises(ConfigError, match="frames or routes the request"):
        configmod.load(str(path))


TEMPLATED = """\
version: 1
cache: {max_entries: %d}
routes:
  - name: debug
    hosts: [api.example]
    token:
      type: hmac
      secret: {env: DASH_SECRET}
      lifetime: 300
      claims: {sub: "${header:X-Debug-User}", host: "${host}", method: "${method}", team: core}
  - name: translate
    hosts: [relay.example]
    verify: {secret: {env: CLIENT_SECRET}}
    token:
      type: hmac
      secret: {env: DASH_SECRET}
      claims: {sub: "${client:sub}", via: gateway}
"""
CLIENT_SECRET = "client-side-secret-of-at-least-32-bytes!"


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_entries: int = 1024) -> Path:
    monkeypatch.setenv("DASH_SECRET", SECRET)
    monkeypatch.setenv("CLIENT_SECRET", CLIENT_SECRET)
    path = tmp_path / "gateway.yaml"
    path.write_text(TEMPLATED % max_entries)
    return path


def _claims(f: Any) -> dict[str, Any]:
    token = wire(f.request.headers, "Authorization").removeprefix("Bearer ")
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    return claims


def test_each_user_gets_a_token_of_their_own_and_the_header_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        seen = {}
        for user in ("alice", "bob", "alice"):
            f = flow("api.example", headers={"X-Debug-User": user})
            await hook(addon.request(f))
            assert f.response is None
            assert "X-Debug-User" not in f.request.headers
            seen.setdefault(user, []).append(wire(f.request.headers, "Authorization"))
            claims = _claims(f)
            assert claims == {
                "sub": user,
                "host": "api.example",
                "method": "POST",
                "team": "core",
                "iat": claims["iat"],
                "exp": claims["iat"] + 300,
            }
        assert seen["alice"][0] == seen["alice"][1] != seen["bob"][0]  # cached per user
        assert addon.status()["cache"]["entries"] == 2

    with_gateway(_config(tmp_path, monkeypatch), body)


def test_a_missing_header_is_400_missing_claim_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("api.example", headers={"Authorization": "Bearer client"})
        await hook(addon.request(f))
        assert f.response is not None and f.response.status_code == 400
        assert f.response.get_text() == "missing claim input X-Debug-User\n"
        assert f.response.headers["X-Authgw-Error"] == "missing_claim_input"
        assert f.comment.startswith("rejected: missing_claim_input (authgw, route debug)")
        assert 'outcome="rejected",route="debug"' in addon.metrics.text().decode()

    with_gateway(_config(tmp_path, monkeypatch), body)


def test_a_verified_clients_sub_is_carried_to_the_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _client_token(CLIENT_SECRET, sub="carol")
    forged = _client_token("not-the-client-secret-but-long-enough!!", sub="mallory")

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("relay.example", headers={"Authorization": f"Bearer {good}"})
        await hook(addon.request(f))
        assert f.response is None
        assert _claims(f) == {"sub": "carol", "via": "gateway"}
        # observe mode forwards a bad client token, but its claims are not used
        f = flow("relay.example", headers={"Authorization": f"Bearer {forged}"})
        await hook(addon.request(f))
        assert f.response is not None and f.response.status_code == 400
        assert f.response.get_text() == "missing claim input sub\n"

    with_gateway(_config(tmp_path, monkeypatch), body)


def test_ten_thousand_users_through_one_route_stay_within_max_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = 10_000

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        for i in range(users):
            f = flow("api.example", headers={"X-Debug-User": f"user-{i}"})
            await hook(addon.request(f))
            assert f.response is None
            if i % 997 == 0:  # a sample: each token is its own user's
                assert _claims(f)["sub"] == f"user-{i}"
            assert addon.status()["cache"]["entries"] <= 100 if i % 1000 == 0 else True
        assert addon.status()["cache"]["entries"] == 100
        text = addon.metrics.text().decode()
        assert "authgw_token_cache_entries 100.0" in text
        assert "authgw_token_cache_evictions_total 9900.0" in text
        assert 'authgw_token_cache_misses_total{route="debug"} 10000.0' in text

    with_gateway(_config(tmp_path, monkeypatch, max_entries=100), body)
