"""A config error at start is one line on stderr and exit 2, from `mitmdump -s` and from
`authgw run` alike, on mitmproxy 11 and 12: no traceback, no "listening" line."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.launcher import Mitmdump
from tests.e2e.clients import proxy_request
from tests.e2e.harness import ADDON_SCRIPT, GatewayFactory, gateway_env
from tests.e2e.upstreams import Upstream

pytestmark = pytest.mark.e2e

ROUTE = "version: 1\nroutes:\n  - name: api\n    hosts: {hosts}\n    token:\n{token}"
HMAC = "      type: hmac\n      secret: {env: AUTHGW_E2E_KEY}\n"


def route(token: str = HMAC, hosts: str = "[api.example.com]", top: str = "") -> str:
    return top + ROUTE.format(hosts=hosts, token=token)


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def cases(busy: int, tmp_path: Path) -> dict[str, tuple[str, list[str], str]]:
    """name -> (config, extra mitmdump args, the line stderr must be)."""
    unwritable = tmp_path / "no-such-dir" / "flows.jsonl"
    return {
        "field": (
            route(HMAC + "      algorithm: HS999\n"),
            [],
            "authgw_config: routes[0].token.algorithm: is not one of HS256, HS384, HS512 "
            "(a string) (gateway.yaml:8)",
        ),
        "missing_secret": (
            route("      type: hmac\n      secret: {env: AUTHGW_E2E_UNSET}\n"),
            [],
            "authgw_config: routes[0].token.secret: env var AUTHGW_E2E_UNSET is not set or empty",
        ),
        "metrics_option": (
            route(),
            ["--set", f"authgw_metrics=127.0.0.1:{busy}"],
            f"authgw_metrics: cannot listen on 127.0.0.1:{busy}: Address already in use",
        ),
        "metrics_field": (
            route(top=f'metrics: "127.0.0.1:{busy}"\n'),
            [],
            f"authgw_config: metrics: cannot listen on 127.0.0.1:{busy}: Address already in use",
        ),
        "flowlog_option": (
            route(),
            ["--set", f"authgw_flowlog={unwritable}"],
            f"authgw_flowlog: cannot open {unwritable} for writing: No such file or directory",
        ),
    }


CASES = ["field", "missing_secret", "metrics_option", "metrics_field", "flowlog_option"]


@pytest.mark.parametrize("via", ["mitmdump", "authgw run"])
@pytest.mark.parametrize("case", CASES)
def test_a_config_error_at_start_is_one_line_and_exit_2(
    tmp_path: Path, busy_port: int, case: str, via: str
) -> None:
    text, extra, line = cases(busy_port, tmp_path)[case]
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    listen = ["--listen-host", "127.0.0.1", "--listen-port", "0"]
    if via == "mitmdump":
        argv = [sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()"]
        argv += ["-s", str(ADDON_SCRIPT), "--set", f"authgw_config={config}", *listen, *extra]
    else:
        argv = [sys.executable, "-m", "authgw.cli", "run", "-c", str(config), "--"]
        argv += [*listen, *extra]
    env = gateway_env({"AUTHGW_E2E_KEY": "k" * 32, "AUTHGW_E2E_UNSET": None})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert done.stderr.splitlines() == [line], output
    assert "Traceback" not in output and "listening" not in output, output


_SETTER = """\
from mitmproxy import ctx, exceptions, http


class Setter:
    def request(self, flow):
        if flow.request.pretty_host == "authgw-set.invalid":
            try:
                ctx.options.update(authgw_config=flow.request.query["path"])
                said = "set"
            except exceptions.OptionsError as e:
                said = "OptionsError: " + str(e)
            flow.response = http.Response.make(200, said)


addons = [Setter()]
"""


def test_after_start_a_bad_config_is_refused_and_the_proxy_serves_on(
    gateway_factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """`:set authgw_config=...` once mitmproxy runs: an OptionsError, no exit, and the
    running config goes on injecting."""
    setter = tmp_path / "setter.py"
    setter.write_text(_SETTER)
    bad = tmp_path / "bad.yaml"
    bad.write_text(route(HMAC + "      algorithm: HS999\n"))
    good = route(hosts=f'["127.0.0.1:{upstream.port}"]')
    gateway = gateway_factory(
        good, env={"AUTHGW_E2E_KEY": "k" * 32}, extra_args=["-s", str(setter)]
    )
    said = proxy_request(gateway.port, "GET", f"http://authgw-set.invalid/?path={bad}")
    assert said.body.decode().startswith("OptionsError: authgw_config: routes[0].token.algorithm")
    assert proxy_request(gateway.port, "GET", f"{upstream.url}/after").status == 200
    assert (upstream.last.header("Authorization") or "").startswith("Bearer ")
    assert gateway.returncode is None


def test_authgw_run_listens_on_loopback_unless_told(tmp_path: Path) -> None:
    """Anyone who can reach the port gets the routes' tokens: `authgw run` binds
    127.0.0.1, and `-- --listen-host` (later on mitmdump's line) still decides."""
    config = tmp_path / "gateway.yaml"
    config.write_text(route())
    env = gateway_env({"AUTHGW_E2E_KEY": "k" * 32})
    run = [sys.executable, "-m", "authgw.cli", "run", "-c", str(config), "--"]
    for extra, host in ((["--listen-port", "0"], "127.0.0.1"), (LOOPBACK_V6, "::1")):
        with Mitmdump([*run, *extra], env=env, cwd=tmp_path).start(timeout=30) as gateway:
            said = gateway.wait_for_output(r"listening at (\[[^\]]+\]|[^:\s]+):\d+")
            assert said.group(1).strip("[]") == host, gateway.output
            assert "without proxyauth" not in gateway.output


LOOPBACK_V6 = ["--listen-host", "::1", "--listen-port", "0"]
