"""``authgw exec`` (run a command behind a gateway of its own) and ``authgw env``.

``exec`` marks itself non-dumpable, starts mitmdump with the gateway on 127.0.0.1 (a
free port unless given; with ``--principal``, mitmproxy's ``proxyauth`` for that name
and a one-time password only the child's proxy URL holds), waits until it listens, and
runs COMMAND with the proxy and CA variables set, each route's ``placeholder_env`` set to
its placeholder, and every variable the config reads a secret from removed. The gateway
marks itself non-dumpable before mitmproxy starts (``nondumpable`` below: the attribute
does not survive ``execve``, so the new process sets it) and gets SIGTERM when ``exec``
dies (``PR_SET_PDEATHSIG``). SIGINT and SIGTERM go to COMMAND; its exit status is
``exec``'s; the gateway stops when it ends. The boundary this draws for a child of the
same user is that: ``/proc/PID/environ``, ``/proc/PID/mem`` and ptrace of the gateway
and of ``exec`` are refused (docs/sandbox.md says what it is not).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from authgw import config as configmod
from authgw.cli.run_check import MITMDUMP, mitmdump_argv
from authgw.config import Config, ConfigError
from authgw.kinds import kind_of

PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
CA_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "AWS_CA_BUNDLE",
    "DENO_CERT",
)
# What lets a process act as the gateway's AWS identity (botocore's chain): removed when
# a route reads AWS (sts, sigv4, a secret in Secrets Manager or SSM).
AWS_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)
START_TIMEOUT = 30.0
# The gateway's first lines: PR_SET_DUMPABLE 0 (execve reset it), and the proxyauth
# setting taken from the environment, which the mark protects, rather than from argv,
# which /proc/PID/cmdline shows every user.
GATEWAY_START = (
    "import ctypes, os, sys; ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0); "
    "auth = os.environ.pop('AUTHGW_EXEC_PROXYAUTH', None); "
    "sys.argv += ['--set', 'proxyauth=' + auth] if auth else []; " + MITMDUMP
)


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def nondumpable() -> None:
    """This process: no core dump, no /proc/PID/environ or mem, no ptrace for its user."""
    _prctl(PR_SET_DUMPABLE, 0)


def secret_variables(cfg: Config, also: Sequence[str] = ()) -> set[str]:
    """Every environment variable the config reads a secret from (``{env: NAME}``), AWS's
    credential variables when a route reads AWS (sts, sigv4, ``aws_secretsmanager``,
    ``aws_ssm``), and ``also`` (``--unset``: what a ``cmd:`` source's command reads)."""
    names = set(also)
    for route in cfg.routes:
        refs = list(kind_of(route.token).secrets(route.token)) if route.token else []
        if route.verify is not None and route.verify.secret is not None:
            refs.append(route.verify.secret)
        names |= {ref.name for ref in refs if ref.kind == "env"}
        aws = route.token is not None and route.token.type in ("sts", "sigv4")
        if aws or any(ref.kind in ("aws_secretsmanager", "aws_ssm") for ref in refs):
            names |= set(AWS_CREDENTIALS)
    return names


def ca_bundle(mitmproxy_ca: Path, directory: Path) -> Path:
    """The system's CAs and mitmproxy's, in one file any user may read."""
    paths = ssl.get_default_verify_paths()
    system = Path(paths.cafile or paths.openssl_cafile or "/etc/ssl/certs/ca-certificates.crt")
    text = system.read_text() if system.is_file() else ""
    bundle = directory / "ca-bundle.pem"
    bundle.write_text(text.rstrip("\n") + "\n" + mitmproxy_ca.read_text())
    bundle.chmod(0o644)
    return bundle


def child_environment(
    base: Mapping[str, str],
    cfg: Config,
    proxy: str,
    bundle: Path,
    mitmproxy_ca: Path,
    also: Sequence[str] = (),
) -> dict[str, str]:
    """COMMAND's environment: the proxy and CA variables, the placeholders, no secret."""
    secret = secret_variables(cfg, also)
    env = {k: v for k, v in base.items() if k not in secret}
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    env.update(dict.fromkeys(PROXY_VARIABLES, proxy))
    env.update(dict.fromkeys(CA_VARIABLES, str(bundle)))
    env["NODE_EXTRA_CA_CERTS"] = str(mitmproxy_ca)
    for route in cfg.routes:
        if route.placeholder_env and route.placeholder:
            env[route.placeholder_env] = route.placeholder
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _gateway_argv(config: Path, port: int, confdir: Path) -> list[str]:
    extra = ["--listen-port", str(port), "--set", f"confdir={confdir}"]
    extra += ["--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]
    return mitmdump_argv(config, extra, start=GATEWAY_START)


def _die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def cmd_exec(args: argparse.Namespace) -> int:
    nondumpable()
    if not args.command:
        print("authgw exec: no command (authgw exec -c FILE -- COMMAND [ARG...])", file=sys.stderr)
        return 2
    path = Path(args.config).resolve()
    try:
        cfg = configmod.load(str(path))
    except ConfigError as e:
        print(f"authgw_config: {e}", file=sys.stderr)
        return 2
    if args.listen_port and _listening(args.listen_port):
        print(f"authgw exec: 127.0.0.1:{args.listen_port} is taken", file=sys.stderr)
        return 2
    port = args.listen_port or _free_port()
    password = secrets.token_urlsafe(24) if args.principal else None
    auth = f"{args.principal}:{password}" if args.principal else None
    confdir = Path(args.confdir).expanduser()
    gateway_env = {**os.environ, **({"AUTHGW_EXEC_PROXYAUTH": auth} if auth else {})}
    gateway = subprocess.Popen(
        _gateway_argv(path, port, confdir),
        env=gateway_env,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        start_new_session=True,  # a terminal's Ctrl-C is for COMMAND, which exec passes on
    )
    workdir = Path(tempfile.mkdtemp(prefix="authgw-exec-"))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(port):
            if gateway.poll() is not None or time.monotonic() > deadline:
                print(
                    "authgw exec: the gateway did not start (its output is above)", file=sys.stderr
                )
                return 2
            time.sleep(0.05)
        time.sleep(0.2)
        if gateway.poll() is not None:  # another process answered on the port, not ours
            print("authgw exec: the gateway did not start (its output is above)", file=sys.stderr)
            return 2
        workdir.chmod(0o755)  # a child running as another user reads the bundle too
        ca = workdir / "mitmproxy-ca-cert.pem"
        shutil.copy(confdir / "mitmproxy-ca-cert.pem", ca)
        ca.chmod(0o644)
        who = f"{args.principal}:{password}@" if auth else ""
        proxy = f"http://{who}127.0.0.1:{port}"
        env = child_environment(os.environ, cfg, proxy, ca_bundle(ca, workdir), ca, args.unset)
        return _run(args.command, env)
    finally:
        gateway.terminate()
        try:
            gateway.wait(10)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _run(command: Sequence[str], env: Mapping[str, str]) -> int:
    """COMMAND to its end, with SIGINT and SIGTERM passed on; its exit status."""
    try:
        child = subprocess.Popen(list(command), env=dict(env), preexec_fn=_die_with_parent)  # noqa: PLW1509
    except OSError as e:
        print(f"authgw exec: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        return 127

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status if status >= 0 else 128 - status


def cmd_env(args: argparse.Namespace) -> int:
    """``export`` lines for a gateway already running on 127.0.0.1:PORT."""
    try:
        cfg = configmod.load(args.config)
    except ConfigError as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 2
    confdir = Path(args.confdir).expanduser()
    mitmproxy_ca = confdir / "mitmproxy-ca-cert.pem"
    if not mitmproxy_ca.is_file():
        print(
            f"authgw env: no mitmproxy CA at {mitmproxy_ca} (start the gateway first)",
            file=sys.stderr,
        )
        return 2
    bundle = ca_bundle(mitmproxy_ca, confdir)
    password = os.environ.get("AUTHGW_PROXY_PASSWORD", "")
    who = f"{args.principal}:{password}@" if args.principal else ""
    env = child_environment({}, cfg, f"http://{who}127.0.0.1:{args.port}", bundle, mitmproxy_ca)
    for name, value in sorted(env.items()):
        print(f"export {name}={shlex.quote(value)}")
    for name in sorted({"NO_PROXY", "no_proxy", *secret_variables(cfg, args.unset)}):
        print(f"unset {name}")
    return 0
