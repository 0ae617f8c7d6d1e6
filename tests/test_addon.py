from __future__ import annotations

import asyncio
import json
import logging
import os
import textwrap
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from authgw.addon import AuthGateway
from authgw.tokens import Token, fingerprint
from tests.contract import FLOWLOG_FIELDS
from tests.fakes import FakeClock, hook, wire, wire_all

SECRET = "unit-test-secret-that-is-32-bytes!!"
STATIC = "static-gateway-token-value-0123456789"

# Each test runs with lazy and with eager tasks (mitmproxy on Python 3.12+).
pytestmark = pytest.mark.usefixtures("task_factory")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DASH_SECRET", SECRET)
    monkeypatch.setenv("GW_TOKEN", STATIC)
    yield


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\n" + textwrap.dedent(body))
    return path


BASIC = """\
routes:
  - name: dash
    hosts: [dash.example.com, "127.0.0.1"]
    token:
      type: hmac
      secret: {env: DASH_SECRET}
      claims: {stackmon: dummy}
  - name: gw
    hosts: [gw.internal]
    inbound: keep-as:X-Forwarded-Authorization
    token: {type: static, value: {env: GW_TOKEN}}
"""


def flow(
    host: str = "dash.example.com",
    port: int = 443,
    scheme: str = "https",
    headers: dict[str, str] | None = None,
) -> http.HTTPFlow:
    f = tflow.tflow(
        req=tutils.treq(
            host=host,
            port=port,
            scheme=scheme.encode(),
            path=b"/v1/component_status?token=abc",
            method=b"POST",
        )
    )
    for name, value in (headers or {}).items():
        f.request.headers[name] = value
    return f


Body = Callable[[taddons.context, AuthGateway], Awaitable[None]]


def with_gateway(config: Path, body: Body, *, clock: Any = None, **options: Any) -> None:
    async def main() -> None:
        addon = AuthGateway(clock=clock) if clock else AuthGateway()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=str(config), **options)
            await body(tctx, addon)
            addon.done()

    run(main())


RETARGETING = "upstream_header: X-Upstream-Host\n" + BASIC  # off unless a config names it


def test_inert_without_config() -> None:
    async def main() -> None:
        addon = AuthGateway()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, authgw_config=None)
            f = flow(headers={"Authorization": "client"})
            await hook(addon.request(f))
            assert f.response is None and wire(f.request.headers, "Authorization") == "client"

    run(main())


def test_invalid_config_is_an_options_error_naming_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASIC.replace("claims: {stackmon: dummy}", "algorithm: HS1"))

    async def main() -> None:
        addon = AuthGateway()
        with taddons.context(addon) as tctx:
            with pytest.raises(
                exceptions.OptionsError, match=r"routes\[0\]\.token\.algorithm: is not one of"
            ):
                tctx.configure(addon, authgw_config=str(path))

    run(main())


def test_missing_secret_names_its_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASH_SECRET", raising=False)
    monkeypatch.setenv("GW_TOKEN", STATIC)
    path = write_config(tmp_path, BASIC)

    async def main() -> None:
        addon = AuthGateway()
        with taddons.context(addon) as tctx:
            with pytest.raises(
                exceptions.OptionsError,
                match=r"routes\[0\]\.token\.secret: env var DASH_SECRET is not",
            ):
                tctx.configure(addon, authgw_config=str(path))

    run(main())


def test_hmac_token_injected_replacing_the_inbound_header(env: None, tmp_path: Path) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow(headers={"Authorization": "Bearer client-own"})
        await hook(addon.request(f))
        assert f.response is None
        scheme, token = wire(f.request.headers, "Authorization").split(" ")
        assert scheme == "Bearer"
        assert jwt.decode(token, SECRET, algorithms=["HS256"]) == {"stackmon": "dummy"}
        assert jwt.get_unverified_header(token)["kid"] == fingerprint(SECRET)
        assert wire_all(f.request.headers, "Authorization") == [f"Bearer {token}"]

    with_gateway(write_config(tmp_path, BASIC), body)


def test_keep_as_moves_the_inbound_value(env: None, tmp_path: Path) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow(
            "gw.internal",
            headers={"Authorization": "Bearer from-client", "X-Forwarded-Authorization": "spoofed"},
        )
        await hook(addon.request(f))
        assert wire(f.request.headers, "Authorization") == f"Bearer {STATIC}"
        assert wire_all(f.request.headers, "X-Forwarded-Authorization") == ["Bearer from-client"]
        g = flow("gw.internal", headers={"X-Forwarded-Authorization": "spoofed"})
        await hook(addon.request(g))
        assert "X-Forwarded-Authorization" not in g.request.headers

    with_gateway(write_config(tmp_path, BASIC), body)


def test_unmatched_passthrough_and_reject(env: None, tmp_path: Path) -> None:
    async def passthrough(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("other.example.com", headers={"Authorization": "mine"})
        await hook(addon.request(f))
        assert f.response is None and wire(f.request.headers, "Authorization") == "mine"

    async def reject(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("other.example.com")
        await hook(addon.request(f))
        assert f.response is not None and f.response.status_code == 403
        assert f.response.content == b"no route for host\n"

    with_gateway(write_config(tmp_path, BASIC), passthrough)
    with_gateway(write_config(tmp_path, "unmatched: reject\n" + BASIC), reject)


@pytest.mark.parametrize(
    ("value", "status", "target"),
    [
        ("dash.example.com", None, ("https", "dash.example.com", 443)),
        ("DASH.example.com:8443", None, ("https", "dash.example.com", 8443)),
        ("unknown.example.com", 403, None),
        ("dash.example.com/admin", 400, None),
        ("user@dash.example.com", 400, None),
        ("dash.example.com:99999", 400, None),
        ("dash example.com", 400, None),
    ],
)
def test_upstream_header(
    env: None, tmp_path: Path, value: str, status: int | None, target: tuple[str, str, int] | None
) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("127.0.0.2", 8080, "http", headers={"X-Upstream-Host": value})
        await hook(addon.request(f))
        assert "X-Upstream-Host" not in f.request.headers
        if status is None:
            assert f.response is None
            assert (f.request.scheme, f.request.host, f.request.port) == target
            assert wire(f.request.headers, "Authorization").startswith("Bearer ey")
        else:
            assert f.response is not None and f.response.status_code == status
            assert "Authorization" not in f.request.headers

    with_gateway(write_config(tmp_path, RETARGETING), body)


def test_without_upstream_header_a_client_cannot_retarget(env: None, tmp_path: Path) -> None:
    """Off by default: X-Upstream-Host is an ordinary header, the target stays."""

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("127.0.0.1", 8080, "http", headers={"X-Upstream-Host": "gw.internal"})
        await hook(addon.request(f))
        assert (f.request.host, f.request.port) == ("127.0.0.1", 8080)
        assert f.request.headers["X-Upstream-Host"] == "gw.internal"
        assert wire(f.request.headers, "Authorization").startswith("Bearer ey")  # dash's

    with_gateway(write_config(tmp_path, BASIC), body)


def test_upstream_header_sent_twice_is_400(env: None, tmp_path: Path) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("127.0.0.2", 8080, "http")
        f.request.headers.set_all("X-Upstream-Host", ["dash.example.com", "gw.internal"])
        await hook(addon.request(f))
        assert f.response is not None and f.response.status_code == 400

    with_gateway(write_config(tmp_path, RETARGETING), body)


@pytest.mark.parametrize(
    ("host", "allow_http", "status"),
    [
        ("dash.example.com", False, 502),
        ("dash.example.com", True, None),
        ("127.0.0.1", False, None),
    ],
)
def test_plain_http_only_to_loopback_unless_allowed(
    env: None, tmp_path: Path, host: str, allow_http: bool, status: int | None
) -> None:
    config = BASIC.replace(
        "    token:\n      type: hmac",
        f"    allow_http: {str(allow_http).lower()}\n    token:\n      type: hmac",
    )

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow(host, 80, "http")
        await hook(addon.request(f))
        if status is None:
            assert f.response is None and "Authorization" in f.request.headers
        else:
            assert f.response is not None and f.response.status_code == status
            assert f.response.headers["X-Authgw-Error"] == "insecure_upstream"
            assert f.response.content.startswith(b"token unavailable")
            assert "Authorization" not in f.request.headers

    with_gateway(write_config(tmp_path, config), body)


def _jwt_with_exp(exp: float) -> str:
    return jwt.encode({"sub": "gw", "exp": int(exp)}, "k" * 32, algorithm="HS256")


def test_expired_static_token_is_502_expired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    token_file = tmp_path / "token"
    token = _jwt_with_exp(clock() + 3600)
    token_file.write_text(token + "\n")
    config = write_config(
        tmp_path,
        """\
        routes:
          - name: gw
            hosts: [gw.internal]
            token: {type: static, value: {file: token}}
    """,
    )

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("gw.internal")
        await hook(addon.request(f))
        assert wire(f.request.headers, "Authorization") == f"Bearer {token}"
        clock.advance(3600)
        g = flow("gw.internal")
        await hook(addon.request(g))
        assert g.response is not None and g.response.status_code == 502
        assert g.response.headers["X-Authgw-Error"] == "expired"

    with caplog.at_level(logging.DEBUG):
        with_gateway(config, body, clock=clock)
    assert f"file {token_file}" in caplog.text  # the log names the source
    assert token not in caplog.text


def test_static_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token-value")
    config = write_config(
        tmp_path,
        """\
        routes:
          - name: gw
            hosts: [gw.internal]
            token: {type: static, value: {file: token}}
    """,
    )

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("gw.internal")
        await hook(addon.request(f))
        assert wire(f.request.headers, "Authorization") == "Bearer first-token-value"
        token_file.write_text("second-token-value-longer")
        os.utime(token_file, ns=(1, 1))
        await asyncio.sleep(1.05)  # files are stat-ed at most once a second
        g = flow("gw.internal")
        await hook(addon.request(g))
        assert wire(g.request.headers, "Authorization") == "Bearer second-token-value-longer"

    with_gateway(config, body)


def test_optional_secret_missing_forwards_without_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DASH_SECRET", raising=False)
    config = write_config(
        tmp_path,
        """\
        routes:
          - name: dash
            hosts: [dash.example.com]
            token: {type: hmac, secret: {env: DASH_SECRET}, optional: true}
    """,
    )

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        for _ in range(3):
            f = flow()
            await hook(addon.request(f))
            assert f.response is None and "Authorization" not in f.request.headers

    with caplog.at_level(logging.WARNING):
        with_gateway(config, body)
    assert caplog.text.count("optional, forwarding without a token") == 1


class ExplodingSource:
    kind = "hmac"
    generation = 0

    def check(self) -> None:
        pass

    def cache_params(self) -> Any:
        raise RuntimeError(f"bug that mentions {SECRET}")

    async def fetch(self, audience: tuple[str, ...]) -> Token:
        raise AssertionError("not reached")

    def describe(self) -> dict[str, Any]:
        return {}


def test_an_unexpected_error_fails_closed(
    env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        assert addon.runtime is not None
        addon.runtime.sources["dash"] = ExplodingSource()
        f = flow()
        await hook(addon.request(f))
        assert f.response is not None and f.response.status_code == 502
        assert f.response.headers["X-Authgw-Error"] == "internal"
        assert "Authorization" not in f.request.headers
        # Another route is untouched by this route's failure.
        g = flow("gw.internal")
        await hook(addon.request(g))
        assert g.response is None and wire(g.request.headers, "Authorization") == f"Bearer {STATIC}"

    with caplog.at_level(logging.INFO):
        with_gateway(write_config(tmp_path, BASIC), body)
    assert "internal error on dash (RuntimeError)" in caplog.text
    assert SECRET not in caplog.text


def test_upstream_401_drops_the_cached_token(
    env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    config = BASIC.replace("claims: {stackmon: dummy}", "lifetime: 600")

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        assert addon.runtime is not None
        f = flow()
        await hook(addon.request(f))
        assert len(addon.runtime.cache) == 1
        f.response = tutils.tresp(status_code=401)
        f.response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        addon.response(f)
        assert len(addon.runtime.cache) == 0
        clock.advance(1)
        g = flow()
        await hook(addon.request(g))
        assert wire(g.request.headers, "Authorization") != wire(f.request.headers, "Authorization")

    with caplog.at_level(logging.WARNING):
        with_gateway(write_config(tmp_path, config), body, clock=clock)
    assert "upstream answered 401 to an injected token (kid sha256:" in caplog.text
    assert "claims exp,iat" in caplog.text and "600 s left" in caplog.text
    assert 'WWW-Authenticate: Bearer error="invalid_token"' in caplog.text


def test_flow_log_records_each_flow_without_secrets(env: None, tmp_path: Path) -> None:
    log = tmp_path / "flows.jsonl"

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow(headers={"Authorization": "Bearer client-secret-value"})
        await hook(addon.request(f))
        f.response = tutils.tresp(status_code=200)
        addon.response(f)
        g = flow("gw.internal", 80, "http")
        await hook(addon.request(g))
        addon.response(g)
        h = flow("elsewhere.example")
        await hook(addon.request(h))
        h.error = tflow.terr()
        addon.error(h)

    with_gateway(write_config(tmp_path, BASIC), body, authgw_flowlog=str(log))
    text = log.read_text()
    for secret in (SECRET, STATIC, "client-secret-value", "token=abc"):
        assert secret not in text
    injected, insecure, passthrough = (json.loads(line) for line in text.splitlines())
    assert set(injected) == FLOWLOG_FIELDS
    assert injected["verify"] is None and injected["verify_detail"] is None
    assert injected["route"] == "dash" and injected["action"] == "injected"
    assert injected["path"] == "/v1/component_status" and injected["method"] == "POST"
    assert injected["kid"] == fingerprint(SECRET) and injected["status"] == 200
    assert injected["headers_set"] == ["Authorization"]
    assert insecure["action"] == "token_unavailable" and insecure["status"] == 502
    assert insecure["error_class"] == "insecure_upstream"
    assert passthrough["action"] == "passthrough" and passthrough["status"] is None


def test_unwritable_flow_log_is_a_startup_error(env: None, tmp_path: Path) -> None:
    async def main() -> None:
        addon = AuthGateway()
        with taddons.context(addon) as tctx:
            with pytest.raises(exceptions.OptionsError, match="authgw_flowlog: cannot open"):
                tctx.configure(
                    addon,
                    authgw_config=str(write_config(tmp_path, BASIC)),
                    authgw_flowlog=str(tmp_path / "no" / "such" / "dir.jsonl"),
                )

    run(main())


def test_the_token_is_on_before_a_streamed_body_is_sent(env: None, tmp_path: Path) -> None:
    """mitmproxy sends a streamed request at requestheaders time: the token must be there."""

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow()
        f.request.stream = True
        await hook(addon.requestheaders(f))
        assert wire(f.request.headers, "Authorization").startswith("Bearer ey")
        rejected = flow("127.0.0.1", 80, "http", headers={"X-Upstream-Host": "nowhere.example"})
        rejected.request.stream = True
        await hook(addon.requestheaders(rejected))
        assert rejected.response is not None and rejected.response.status_code == 403
        assert rejected.request.stream is False  # answered here: never streamed upstream

    with_gateway(write_config(tmp_path, RETARGETING), body)


def test_a_flow_retargeted_after_requestheaders_is_decided_again(env: None, tmp_path: Path) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow(headers={"Authorization": "Bearer client"})
        await hook(addon.requestheaders(f))
        assert wire(f.request.headers, "Authorization").startswith("Bearer ey")
        f.request.host = "gw.internal"  # another addon moved it to another route
        await hook(addon.request(f))
        assert wire(f.request.headers, "Authorization") == f"Bearer {STATIC}"
        assert wire(f.request.headers, "X-Forwarded-Authorization") == "Bearer client"
        g = flow()
        await hook(addon.requestheaders(g))
        g.request.host = "elsewhere.example"  # moved to a host no route covers
        await hook(addon.request(g))
        assert "Authorization" not in g.request.headers

    with_gateway(write_config(tmp_path, BASIC), body)


def test_the_token_is_redacted_from_the_flow_once_sent(env: None, tmp_path: Path) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        for name in ("response", "error"):
            f = flow()
            await hook(addon.requestheaders(f))
            await hook(addon.request(f))
            token = wire(f.request.headers, "Authorization").removeprefix("Bearer ")
            if name == "error":
                f.error = tflow.terr()
            else:
                f.response = tutils.tresp()
            getattr(addon, name)(f)
            assert f.request.headers["Authorization"] == (
                f"Bearer <authgw redacted {fingerprint(token)}>"
            )

    with_gateway(write_config(tmp_path, BASIC), body)


def test_a_response_set_by_another_addon_is_left_alone(env: None, tmp_path: Path) -> None:
    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow()
        f.response = tutils.tresp(status_code=204)
        await hook(addon.request(f))
        assert f.response.status_code == 204 and "Authorization" not in f.request.headers

    with_gateway(write_config(tmp_path, BASIC), body)


VERIFY = """\
routes:
  - name: dashboard
    hosts: [dash.example.com]
    verify: {secret: {env: DASH_SECRET}, audience: dynamic, enforce: %s}
  - name: relay
    hosts: [relay.example.com]
    inbound: keep-as:X-Client-Authorization
    verify: {secret: {env: DASH_SECRET}}
    token: {type: static, value: {env: GW_TOKEN}}
"""


def _client_token(secret: str, **claims: Any) -> str:
    return jwt.encode(
        {"stackmon": "dummy", **claims},
        secret,
        algorithm="HS256",
        headers={"kid": fingerprint(secret)},
    )


@pytest.mark.parametrize("enforce", [False, True])
def test_verify_routes_check_the_clients_token(
    env: None, tmp_path: Path, enforce: bool, caplog: pytest.LogCaptureFixture
) -> None:
    drifted = "an-old-secret-that-staging-still-has-0123456789"
    good = _client_token(SECRET, aud="https://dash.example.com")
    bad = _client_token(drifted, aud="https://dash.example.com")
    wrong_aud = _client_token(SECRET, aud="https://other.example.com")
    log = tmp_path / "flows.jsonl"

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        results = {}
        for name, header in (
            ("good", f"Bearer {good}"),
            ("bad", f"Bearer {bad}"),
            ("aud", f"Bearer {wrong_aud}"),
            ("missing", None),
        ):
            f = flow(headers={"Authorization": header} if header else {})
            await hook(addon.request(f))
            results[name] = f
        assert results["good"].response is None
        assert wire(results["good"].request.headers, "Authorization") == f"Bearer {good}"
        for name in ("bad", "aud", "missing"):
            f = results[name]
            if enforce:
                assert f.response is not None and f.response.status_code == 401, name
                assert f.response.headers["WWW-Authenticate"].startswith(
                    'Bearer error="invalid_token"'
                )
            else:
                assert f.response is None, name  # observe mode forwards
        if enforce:
            body_text = results["bad"].response.get_text()  # type: ignore[union-attr]
            assert body_text.startswith("token rejected (bad_signature)")
            assert fingerprint(drifted) in body_text and fingerprint(SECRET) in body_text
        for f in results.values():
            f.response = f.response or tutils.tresp()
            addon.response(f)
        text = addon.metrics.text().decode()
        assert (
            'authgw_verify_total{reason="bad_signature",result="invalid",route="dashboard"} 1.0'
            in text
        )
        assert 'authgw_verify_total{reason="valid",result="valid",route="dashboard"} 1.0' in text

    config = write_config(tmp_path, VERIFY % str(enforce).lower())
    with caplog.at_level(logging.WARNING):
        with_gateway(config, body, authgw_flowlog=str(log))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    verdicts = [r["verify"] for r in records]
    assert "bad_signature" in verdicts and "wrong_audience" in verdicts
    if not enforce:
        assert verdicts == ["valid", "bad_signature", "wrong_audience", "missing"]
    for secret in (SECRET, drifted, good, bad):
        assert secret not in log.read_text() and secret not in caplog.text
    assert "client token bad_signature" in caplog.text


def test_verify_and_inject_on_one_route(env: None, tmp_path: Path) -> None:
    client = _client_token(SECRET)

    async def body(tctx: taddons.context, addon: AuthGateway) -> None:
        f = flow("relay.example.com", headers={"Authorization": f"Bearer {client}"})
        await hook(addon.request(f))
        assert f.response is None
        assert wire(f.request.headers, "Authorization") == f"Bearer {STATIC}"
        assert wire(f.request.headers, "X-Client-Authorization") == f"Bearer {client}"
        status = addon.status()
        relay = next(r for r in status["routes"] if r["name"] == "relay")
        assert relay["verify"]["secret_fingerprint"] == fingerprint(SECRET)
        assert relay["verify"]["mode"] == "observe"
        dashboard = next(r for r in status["routes"] if r["name"] == "dashboard")
        assert "source" not in dashboard and dashboard["verify"]["mode"] == "enforce"

    with_gateway(write_config(tmp_path, VERIFY % "true"), body)


class _Later:
    """An addon after the gateway whose request hook may change a request."""

    def request(self, flow: http.HTTPFlow) -> None:
        pass


def test_the_last_word_hook_is_in_the_chain_only_while_a_later_addon_may_change_requests() -> None:
    async def body() -> None:
        gateway, later = AuthGateway(), _Later()
        with taddons.context(gateway) as tctx:
            tctx.configure(gateway)
            assert tctx.master.addons.get("authgw_last_word") is None  # nothing after it
            tctx.master.addons.add(later)
            gateway.running()
            assert tctx.master.addons.get("authgw_last_word") is not None
            latest = _Later()
            latest.name = "latest"  # type: ignore[attr-defined]
            tctx.master.addons.add(latest)  # joined after the last word: it goes last again
            tctx.configure(gateway)
            assert tctx.master.addons.chain[-1] is tctx.master.addons.get("authgw_last_word")
            tctx.master.addons.remove(latest)
            tctx.master.addons.remove(later)
            tctx.configure(gateway)
            assert tctx.master.addons.get("authgw_last_word") is None
            tctx.master.addons.remove(gateway)  # unloaded: nothing of it stays
            assert tctx.master.addons.get("authgw_last_word") is None

    run(body())


def test_a_reloaded_script_replaces_its_last_word_hook() -> None:
    async def body() -> None:  # in a running loop, as every taddons test here
        first, second, later = AuthGateway(), AuthGateway(), _Later()
        with taddons.context(first, later) as tctx:
            first.running()
            hook_of_first = tctx.master.addons.get("authgw_last_word")
            assert hook_of_first is not None
            tctx.master.addons.remove(later)
            tctx.master.addons.remove(first)  # a script reload: the old module's addons go,
            tctx.master.addons.add(second)  # the new one's come
            tctx.master.addons.add(later)
            second.running()
            hook_of_second = tctx.master.addons.get("authgw_last_word")
            assert hook_of_second is not None and hook_of_second is not hook_of_first

    run(body())


@pytest.mark.parametrize(
    ("listen", "warned"), [("", True), ("0.0.0.0", True), ("127.0.0.1", False), ("::1", False)]
)
def test_a_proxy_open_beyond_loopback_without_proxyauth_is_warned_about(
    env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture, listen: str, warned: bool
) -> None:
    async def body(tctx: Any, addon: AuthGateway) -> None:
        addon.running()  # said once mitmproxy runs, when its listen options are final

    with_gateway(write_config(tmp_path, BASIC), body, listen_host=listen)
    said = "without proxyauth: anyone who can reach its port gets the routes' tokens"
    assert (said in caplog.text) == warned
