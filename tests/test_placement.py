"""Credentials a client uses but never holds, through the addon's hooks: ``type: basic``,
``query:``, placeholders (headers, Basic, URL, body) and per-principal routes."""

from __future__ import annotations

import asyncio
import base64
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from authgw.addon import AuthGateway
from authgw.config import ConfigError
from authgw.config import load as load_config
from tests.fakes import hook, run_and_capture

PASSWORD = "ghp_realGitHubToken0123456789abcdef"
STATIC = "sk-realApiKey/with+odd=chars0123456789"
PH_GIT = "ph-github-7Qm2xV9aLk3R"
PH_API = "ph-api-key-0123456789ab"

pytestmark = pytest.mark.usefixtures("task_factory")

CONFIG = f"""\
version: 1
routes:
  - name: github
    hosts: [github.com]
    placeholder: {PH_GIT}
    header: null
    token:
      type: basic
      username: x-access-token
      password: {{env: T_PASSWORD}}
  - name: api
    hosts: [api.example]
    placeholder: {PH_API}
    placeholder_in_body: true
    query: api_key
    token: {{type: static, value: {{env: T_STATIC}}}}
  - name: basic_header
    hosts: [registry.example]
    token: {{type: basic, username: bob, password: {{env: T_PASSWORD}}}}
  - name: agent_a
    hosts: [llm.example]
    principals: [agent_a]
    token: {{type: static, value: {{env: T_STATIC}}}}
"""


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("T_PASSWORD", PASSWORD)
    monkeypatch.setenv("T_STATIC", STATIC)
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    yield path


def send(config: Path, f: http.HTTPFlow, response: http.Response | None = None) -> None:
    """The request hooks on ``f``, then (given a ``response`` and no answer of the
    gateway's own) the response hook on that response."""
    run_and_capture(config, f, lambda: None, response)


def flow(host: str, path: str = "/", headers: dict[str, str] | None = None, **kw: Any) -> Any:
    req = tutils.treq(host=host, port=443, scheme=b"https", path=path.encode(), **kw)
    for name, value in (headers or {}).items():
        req.headers[name] = value
    f = tflow.tflow(req=req)
    wire: dict[str, Any] = {}

    def capture() -> None:  # what the last word leaves on the wire, before redaction
        wire["headers"] = [(k, bytes(v)) for k, v in f.request.headers.fields]
        wire["path"] = bytes(f.request.data.path)
        wire["body"] = f.request.raw_content

    return f, wire, capture


def test_basic_sets_authorization_basic(gateway: Path) -> None:
    f, wire, capture = flow("registry.example")
    run_and_capture(gateway, f, capture)
    sent = dict(wire["headers"])[b"Authorization"]
    assert sent == b"Basic " + base64.b64encode(f"bob:{PASSWORD}".encode())
    assert PASSWORD not in repr(f.get_state())  # the saved flow holds the redaction


def test_a_placeholder_in_a_basic_credential_becomes_the_password(gateway: Path) -> None:
    held = base64.b64encode(f"x-access-token:{PH_GIT}".encode()).decode()
    f, wire, capture = flow("github.com", headers={"Authorization": f"Basic {held}"})
    run_and_capture(gateway, f, capture)
    sent = dict(wire["headers"])[b"Authorization"]
    assert base64.b64decode(sent[6:]) == f"x-access-token:{PASSWORD}".encode()
    assert f.request.headers["Authorization"] == f"Basic {held}"  # the flow: what was sent


def test_a_placeholder_in_the_url_header_and_body_and_the_query_parameter(
    gateway: Path,
) -> None:
    f, wire, capture = flow(
        "api.example",
        path=f"/v1/{PH_API}/x?api_key=client-sent&api%5Fkey=dodge&q=1",
        headers={"X-Api-Key": PH_API, "Content-Type": "application/json"},
        content=f'{{"key": "{PH_API}"}}'.encode(),
    )
    run_and_capture(gateway, f, capture)
    quoted = "sk-realApiKey%2Fwith%2Bodd%3Dchars0123456789"
    assert wire["path"] == f"/v1/{quoted}/x?q=1&api_key={quoted}".encode()
    assert dict(wire["headers"])[b"X-Api-Key"] == STATIC.encode()
    assert wire["body"] == f'{{"key": "{STATIC}"}}'.encode()
    assert dict(wire["headers"])[b"content-length"] == str(len(wire["body"])).encode()
    assert b"Authorization" not in dict(wire["headers"])  # query: alone sets no header
    state = repr(f.get_state())  # once sent: what the client sent, never the key
    assert STATIC not in state and quoted not in state
    assert f.request.path == f"/v1/{PH_API}/x?q=1&api_key={PH_API}"


def test_a_route_with_principals_matches_only_those_clients(gateway: Path) -> None:
    f, wire, capture = flow("llm.example")
    run_and_capture(gateway, f, capture)
    assert b"Authorization" not in dict(wire["headers"])  # no principal: passthrough
    g, wire, capture = flow("llm.example")
    g.metadata["proxyauth"] = ("agent_a", "pw")
    run_and_capture(gateway, g, capture)
    assert dict(wire["headers"])[b"Authorization"] == f"Bearer {STATIC}".encode()


def test_principals_need_proxyauth_at_start(gateway: Path) -> None:
    from types import SimpleNamespace

    from authgw import optionchecks

    async def main() -> None:
        with taddons.context(AuthGateway()):  # no proxyauth option set
            with pytest.raises(ConfigError, match="agent_a have principals"):
                optionchecks.principals(load_config(gateway), SimpleNamespace(proxyauth=None))
            optionchecks.principals(load_config(gateway), SimpleNamespace(proxyauth="any"))

    asyncio.run(main())


def test_an_echo_gives_the_client_its_placeholder_back(gateway: Path) -> None:
    f, _, _ = flow("api.example", path="/echo")
    echo = http.Response.make(200, f'{{"url": "/echo?api_key={STATIC}"}}'.encode())
    send(gateway, f, echo)
    assert f.response.content == f'{{"url": "/echo?api_key={PH_API}"}}'.encode()


def test_a_basic_routes_echo_hides_the_password_and_the_credential(gateway: Path) -> None:
    f, _, _ = flow("registry.example")
    b64 = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    echo = http.Response.make(200, f"auth=Basic {b64} password={PASSWORD}".encode())
    send(gateway, f, echo)
    body = f.response.content
    assert PASSWORD.encode() not in body and b64.encode() not in body
    assert body.count(b"<authgw redacted sha256:") == 2


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("placeholder: short, token: {type: static, value: {env: X}}", "16 or more printable"),
        (f"placeholder: {PH_API}, verify: {{secret: {{env: X}}}}", "needs a token"),
        ("placeholder_env: X, token: {type: static, value: {env: X}}", "needs placeholder"),
        (f"placeholder: {PH_API}, token: {{type: sigv4, service: s3}}", "not apply to a sigv4"),
        ("query: 'a b', token: {type: static, value: {env: X}}", "query parameter name"),
        ("principals: [], token: {type: static, value: {env: X}}", "non-empty list"),
    ],
)
def test_config_errors(tmp_path: Path, route: str, message: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"version: 1\nroutes:\n  - {{name: r, hosts: [h], {route}}}\n"))
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert PH_API not in str(caught.value)


# -- the leak check ------------------------------------------------------------------


def outcome(config: Path, f: Any) -> tuple[int | None, str | None]:
    """(the gateway's own answer's status or None if forwarded, its X-Authgw-Error)."""
    run_and_capture(config, f, lambda: None)
    if f.response is None:
        return None, None
    return f.response.status_code, f.response.headers.get("X-Authgw-Error")


B64 = base64.b64encode(STATIC.encode()).decode()
QUOTED_LOWER = "sk-realApiKey%2fwith%2bodd%3dchars0123456789"


@pytest.mark.parametrize(
    ("where", "make"),
    [
        ("a placeholder in a header", lambda: flow("elsewhere.example", headers={"X": PH_API})),
        ("a placeholder in the URL", lambda: flow("elsewhere.example", path=f"/?k={PH_API}")),
        ("the secret in a header", lambda: flow("elsewhere.example", headers={"X": STATIC})),
        (
            "the secret percent-encoded",
            lambda: flow("elsewhere.example", path=f"/?k={QUOTED_LOWER}"),
        ),
        ("the secret in base64", lambda: flow("elsewhere.example", headers={"X": B64})),
        (
            "the password in a BASIC credential",
            lambda: flow(
                "elsewhere.example",
                headers={"X-Auth": "BASIC " + base64.b64encode(f"me:{PASSWORD}".encode()).decode()},
            ),
        ),
        (
            "the password in a Basic credential",
            lambda: flow(
                "elsewhere.example",
                headers={
                    "Authorization": "Basic " + base64.b64encode(f"me:{PASSWORD}".encode()).decode()
                },
            ),
        ),
        (
            "the secret in a JSON body",
            lambda: flow("elsewhere.example", content=f'{{"k": "{STATIC}"}}'.encode()),
        ),
        (
            "the placeholder to another route's host",
            lambda: flow("registry.example", headers={"X": PH_GIT}),
        ),
    ],
)
def test_a_credential_sent_elsewhere_is_403(gateway: Path, where: str, make: Any) -> None:
    f, _, _ = make()
    assert outcome(gateway, f) == (403, "credential_elsewhere"), where


def test_the_same_credentials_toward_their_own_hosts_pass(gateway: Path) -> None:
    f, _, _ = flow("api.example", headers={"X": STATIC}, content=f"k={PH_API}".encode())
    assert outcome(gateway, f) == (None, None)
    g, _, _ = flow("elsewhere.example", headers={"X": "nothing-secret-here"})
    assert outcome(gateway, g) == (None, None)


def test_observe_forwards_and_off_does_not_look(gateway: Path) -> None:
    for mode in ("observe", "off"):
        gateway.write_text(CONFIG.replace("version: 1\n", f"version: 1\nleak_check: {mode}\n"))
        f, _, _ = flow("elsewhere.example", headers={"X": PH_API})
        assert outcome(gateway, f) == (None, None), mode


def test_a_token_the_gateway_issued_is_blocked_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("T_HMAC", "hmac-secret-for-the-leak-check-0123456789")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\nroutes:\n  - {name: dash, hosts: [dash.example], "
        "token: {type: hmac, secret: {env: T_HMAC}, claims: {sub: a}}}\n"
    )
    issued: list[str] = []

    async def main() -> None:
        addon = AuthGateway()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=str(path))
            f, wire, capture = flow("dash.example")
            await hook(addon.requestheaders(f))
            await hook(addon.request(f))
            capture()
            issued.append(dict(wire["headers"])[b"Authorization"].decode()[7:])
            addon.decider.leaks._looked = float("-inf")  # the once-a-second look, now
            g, _, _ = flow("elsewhere.example", headers={"X-Stolen": issued[0]})
            await hook(addon.requestheaders(g))
            assert g.response is not None and g.response.status_code == 403
            addon.done()

    asyncio.run(main())


def test_a_leak_check_that_fails_on_the_body_answers_502_not_forwards(
    gateway: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from authgw.leaks import LeakCheck

    real = LeakCheck.search

    def broken(self: LeakCheck, rt: Any, text: str, route: str | None) -> Any:
        if "body-marker" in text:
            raise RuntimeError("matcher broke")
        return real(self, rt, text, route)

    monkeypatch.setattr(LeakCheck, "search", broken)
    f, _, _ = flow("elsewhere.example", content=b"body-marker")
    assert outcome(gateway, f) == (502, "internal")


# -- from the review: what a client builds around the placeholder ---------------------


def test_a_basic_credential_the_client_built_comes_back_as_it_built_it(gateway: Path) -> None:
    """The client picks the user name; the base64 on the wire is then none the gateway
    made itself, and the echo must not hand it back."""
    held = base64.b64encode(f"me:{PH_API}".encode()).decode()
    f, _, _ = flow("api.example", headers={"Authorization": f"Basic {held}"})
    real = base64.b64encode(f"me:{STATIC}".encode()).decode()
    echo = http.Response.make(200, f'{{"auth": "Basic {real}"}}'.encode())
    send(gateway, f, echo)
    assert f.response.content == f'{{"auth": "Basic {held}"}}'.encode()


@pytest.mark.parametrize(
    ("where", "make"),
    [
        ("a header name", lambda: flow("elsewhere.example", headers={PH_API: "1"})),
        ("the host", lambda: flow(f"{PH_API}.evil.example")),
        (
            "a Basic value without padding, after a tab",
            lambda: flow(
                "elsewhere.example",
                headers={
                    "X": "Basic\t" + base64.b64encode(f"a:{PASSWORD}".encode()).decode().rstrip("=")
                },
            ),
        ),
        (
            "base64 of the secret one byte into a group",
            lambda: flow(
                "elsewhere.example",
                headers={"X": base64.b64encode(b"a" + STATIC.encode()).decode()},
            ),
        ),
    ],
)
def test_what_the_review_slipped_past_the_leak_check_is_403(
    gateway: Path, where: str, make: Any
) -> None:
    f, _, _ = make()
    assert outcome(gateway, f) == (403, "credential_elsewhere"), where


def test_a_secret_in_request_trailers_is_403(gateway: Path) -> None:
    f, _, _ = flow("elsewhere.example")
    f.request.trailers = http.Headers(x_leak=STATIC)
    assert outcome(gateway, f) == (403, "credential_elsewhere")
