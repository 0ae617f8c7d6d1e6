"""End-to-end harness: real mitmdump gateways for the tests, started and stopped.

    Gateway           one `mitmdump -s addons/auth_gateway.py` process (scripts/launcher.py
                      runs it), ready once mitmdump passed its start-up checks
    GatewayFactory    starts gateways for one test and stops them all afterwards
    gateway_env       the environment a gateway gets: os.environ without proxy variables

The servers and clients the tests put around a gateway live next to this module:
upstreams.py (recording upstreams, TLS or not) and clients.py (proxy_request,
direct_request, wait_until). Everything listens on and connects to loopback only,
on ports the OS picks. conftest.py wraps these as fixtures; this module has no pytest
dependency.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scripts.launcher import LOOPBACK_ANY_PORT, MITMDUMP, LaunchError, Mitmdump
from scripts.loopback import free_port

REPO = Path(__file__).resolve().parents[2]
ADDON_SCRIPT = REPO / "addons" / "auth_gateway.py"

# Removed (whatever their case) from the environment a gateway inherits.
PROXY_ENV_VARS = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"})

STARTUP_TIMEOUT = 20.0


class GatewayError(RuntimeError):
    """mitmdump did not start (or did not exit when expected); the message has its output."""


READY_MARKER = "authgw-e2e-harness: ready"

# mitmdump logs "... listening at ..." *before* its start-up error check, and exits
# right after it when an addon logged an error (e.g. OptionsError from configure).
# This stand-in addon announces readiness only once that check has passed.
_READY_ADDON = f"""\
import asyncio
import json

from mitmproxy import ctx


class HarnessReady:
    def running(self):
        asyncio.get_running_loop().call_later(0.2, self.announce)

    def announce(self):
        errorcheck = ctx.master.addons.get("errorcheck")
        if getattr(getattr(errorcheck, "logger", None), "has_errored", None):
            return  # mitmdump is exiting
        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = [list(a[:2]) for a in proxyserver.listen_addrs()] if proxyserver else []
        print({READY_MARKER!r} + " " + json.dumps(addrs), flush=True)


addons = [HarnessReady()]
"""

_LISTENING = re.compile(r"listening at \[?([0-9A-Fa-f.:]+?)\]?:(\d+)")


def gateway_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A copy of os.environ without proxy variables, with `overrides` on top.

    An override of None removes the variable; explicit overrides may set proxy variables.
    """
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_ENV_VARS}
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the harness as they are written
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _ready_ports(line: str) -> list[int] | None:
    """The ports in the stand-in addon's ready line; None for any other line."""
    if not line.startswith(READY_MARKER):
        return None
    return [int(port) for _host, port in json.loads(line[len(READY_MARKER) :])]


class Gateway:
    """One mitmdump process with the authgw addon (or another `script`, or none).

    Files live in a fresh directory under `tmp_dir` (also the process's cwd):
    `gateway.yaml` (the config, if any), `mitmdump.log` (all output), `confdir/`
    (mitmproxy's CA, created on first start), `harness_ready.py`.
    """

    def __init__(
        self,
        config_text: str | None,
        tmp_dir: Path,
        *,
        upstream_ca: Path | None = None,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-", dir=tmp_dir))
        self.confdir = self.dir / "confdir"
        self.log_path = self.dir / "mitmdump.log"
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = self.dir / "gateway.yaml"
            self.config_path.write_text(config_text, encoding="utf-8")
        self._ready_script = self.dir / "harness_ready.py"
        self._ready_script.write_text(_READY_ADDON, encoding="utf-8")
        self.upstream_ca = upstream_ca
        self.env = gateway_env(env)
        self.extra_args = list(extra_args)
        self.script = script
        self.startup_timeout = startup_timeout
        # error_tail=None: a GatewayError carries all of mitmdump's output.
        self.process = Mitmdump(
            self.command(), env=self.env, cwd=self.dir, log_path=self.log_path, error_tail=None
        )

    def command(self) -> list[str]:
        """The argv mitmdump is started with."""
        cmd = list(MITMDUMP)
        if self.script is not None:
            cmd += ["-s", str(self.script)]
        cmd += ["-s", str(self._ready_script)]
        if self.config_path is not None:
            cmd += ["--set", f"authgw_config={self.config_path}"]
        cmd += LOOPBACK_ANY_PORT
        cmd += ["--set", f"confdir={self.confdir}"]
        if self.upstream_ca is not None:
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={self.upstream_ca}"]
        return cmd + self.extra_args

    # lifecycle

    def start(self) -> Gateway:
        """Start mitmdump and wait until it listens and passed its start-up checks.

        Raises GatewayError with everything mitmdump printed if it exits first or
        `startup_timeout` passes.
        """
        try:
            self.process.start(self.startup_timeout, ready=_ready_ports)
        except LaunchError as e:
            raise GatewayError(str(e)) from None
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL; join the output reader. Idempotent."""
        self.process.stop()

    def run_until_exit(self, timeout: float = STARTUP_TIMEOUT) -> tuple[int, str]:
        """Start mitmdump and wait for it to exit on its own: (returncode, output).

        Raises GatewayError (and kills it) if it is still running after `timeout`.
        """
        try:
            returncode = self.process.run_to_exit(timeout)
        except LaunchError as e:
            raise GatewayError(str(e)) from None
        return returncode, self.output

    @classmethod
    def run_to_exit(
        cls,
        config_text: str | None,
        tmp_dir: Path,
        *,
        upstream_ca: Path | None = None,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        timeout: float = STARTUP_TIMEOUT,
    ) -> tuple[int, str]:
        """Run a mitmdump expected to refuse to start: (returncode, output)."""
        gateway = cls(
            config_text,
            tmp_dir,
            upstream_ca=upstream_ca,
            env=env,
            extra_args=extra_args,
            script=script,
        )
        return gateway.run_until_exit(timeout)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # state

    @property
    def port(self) -> int:
        """The first port mitmdump listens on."""
        if not self.process.ports:
            raise RuntimeError("gateway not started")
        return self.process.port

    @property
    def ports(self) -> list[int]:
        """Every port mitmdump listens on (one per --mode)."""
        return self.process.ports

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def lines(self) -> list[str]:
        return self.process.lines

    @property
    def output(self) -> str:
        """Everything mitmdump printed so far (stdout and stderr, interleaved)."""
        return self.process.output

    @property
    def ca_cert_path(self) -> Path:
        """mitmproxy's CA certificate (no key): what a client trusts for interception."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def wait_for_output(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait for a line of output matching regex `pattern` (searched); return the match."""
        return self.process.wait_for_output(pattern, timeout)

    def listening_lines(self) -> list[tuple[str, int, str]]:
        """(host, port, line) for each "... listening at HOST:PORT." log line so far."""
        found = []
        for line in self.lines:
            if m := _LISTENING.search(line):
                found.append((m.group(1), int(m.group(2)), line))
        return found


class GatewayFactory:
    """Starts gateways sharing a tmp dir and upstream CA; `stop_all()` stops them all."""

    def __init__(self, tmp_dir: Path, *, upstream_ca: Path | None = None) -> None:
        self.tmp_dir = tmp_dir
        self.upstream_ca = upstream_ca
        self.gateways: list[Gateway] = []

    def start(
        self,
        config_text: str | None,
        *,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> Gateway:
        """Start a gateway and wait until it is ready (GatewayError if it is not)."""
        gateway = Gateway(
            config_text,
            self.tmp_dir,
            upstream_ca=self.upstream_ca,
            env=env,
            extra_args=extra_args,
            script=script,
            startup_timeout=startup_timeout,
        )
        self.gateways.append(gateway)
        return gateway.start()

    __call__ = start

    def run_to_exit(
        self,
        config_text: str | None,
        *,
        env: Mapping[str, str | None] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = ADDON_SCRIPT,
        timeout: float = STARTUP_TIMEOUT,
    ) -> tuple[int, str]:
        """Run a gateway expected to refuse to start: (returncode, output)."""
        return Gateway.run_to_exit(
            config_text,
            self.tmp_dir,
            upstream_ca=self.upstream_ca,
            env=env,
            extra_args=extra_args,
            script=script,
            timeout=timeout,
        )

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for gateway in reversed(self.gateways):
            try:
                gateway.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        if errors:
            raise errors[0]


def start_with_metrics(
    factory: GatewayFactory,
    make_config: Callable[[int], str],
    *,
    env: Mapping[str, str | None],
    extra_args: Callable[[int], Sequence[str]] = lambda port: (),
) -> tuple[Gateway, int]:
    """Start a gateway with metrics on a free loopback port; (gateway, metrics port).

    The port is found free and then released, so another process may take it in
    between: then mitmdump refuses to start ("cannot listen") and we try another.
    """
    for attempt in range(3):
        port = free_port()
        try:
            return factory.start(make_config(port), env=env, extra_args=extra_args(port)), port
        except GatewayError as e:
            if "cannot listen" not in str(e) or attempt == 2:
                raise
    raise AssertionError("unreachable")
