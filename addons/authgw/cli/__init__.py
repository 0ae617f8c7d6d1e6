"""The ``authgw`` command: run the gateway and diagnose token trouble.

Each verb is a ``cmd_<verb>(args) -> int`` registered in ``build_parser``; exit
codes: 0 good, 1 a finding (invalid config, no token, invalid token, drift), 2
unusable input (bad arguments, unreadable secret, unfetchable JWKS, not a JWT; ``run``
with an invalid config, as mitmdump exits with it).
No verb prints a secret; only ``authgw token`` (without ``--decode``) prints a
token, because that is what it is for. Secrets and tokens show as fingerprints.

The verbs live by job: ``run_check`` (run, check), ``tokens`` (decode, token,
verify), ``drift``, ``status``, ``emulator`` (and its alias sts-emulator); ``table`` prints
their listings. This module only wires them to the command line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from typing import Any

from authgw.cli.drift import cmd_drift
from authgw.cli.emulator import cmd_emulator
from authgw.cli.run_check import addon_script, cmd_check, cmd_run, mitmdump_argv
from authgw.cli.sandbox import cmd_env, cmd_exec
from authgw.cli.status import cmd_status
from authgw.cli.tokens import cmd_decode, cmd_token, cmd_verify

__all__ = ["addon_script", "build_parser", "main", "mitmdump_argv"]

DEFAULT_CONFIG = "gateway.yaml"

SRC_FORMS = (
    "env:NAME, file:PATH, cmd:COMMAND, aws_secretsmanager:NAME[#FIELD], aws_ssm:NAME "
    "or config:FILE#route"
)


def _pair(sep: str) -> Any:
    """An argparse type: ``NAME<sep>VALUE`` as (NAME, VALUE), spaces around both stripped."""

    def parse(text: str) -> tuple[str, str]:
        name, found, value = text.partition(sep)
        if not found or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME{sep}VALUE")
        return name.strip(), value.strip()

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authgw", description="An auth gateway that lives inside mitmproxy."
    )
    parser.add_argument("--version", action="version", version=f"authgw {_version()}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    p = verb("run", "run mitmdump with the gateway (arguments after -- go to mitmdump)")
    p.usage = "authgw run [-h] [-c CONFIG] [-- MITMDUMP_ARGS...]"
    p.epilog = "e.g. authgw run -c gateway.yaml -- --listen-port 8081 --mode reverse:https://api"
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.set_defaults(func=cmd_run, mitmdump_args=[])

    p = verb("exec", "run COMMAND behind a gateway of its own: placeholders only, no secret")
    p.usage = "authgw exec [-h] [-c CONFIG] [--principal NAME] [--listen-port P] -- COMMAND..."
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.add_argument("--principal", metavar="NAME", help="the proxyauth name COMMAND acts as")
    p.add_argument("--listen-port", type=int, default=0, metavar="P", help="proxy port (free)")
    p.add_argument("--confdir", default="~/.mitmproxy", help="mitmproxy's confdir (its CA)")
    p.add_argument(
        "--unset",
        action="append",
        default=[],
        metavar="NAME",
        help="also remove this variable (what a cmd: secret's command reads; repeatable)",
    )
    p.set_defaults(func=cmd_exec, command=[])

    p = verb("env", "print export lines for a client of a gateway already running")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.add_argument(
        "--principal",
        metavar="NAME",
        help="the proxyauth name (password from AUTHGW_PROXY_PASSWORD)",
    )
    p.add_argument("--port", type=int, required=True, help="the gateway's proxy port")
    p.add_argument("--confdir", default="~/.mitmproxy", help="mitmproxy's confdir (its CA)")
    p.add_argument("--unset", action="append", default=[], metavar="NAME", help="also unset")
    p.set_defaults(func=cmd_env)

    p = verb("check", "validate a config file and list its routes with secret fingerprints")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.set_defaults(func=cmd_check)

    p = verb("decode", "show a JWT's header and claims, without verifying it")
    p.add_argument("token", help="the token, or - to read it from stdin")
    p.set_defaults(func=cmd_decode)

    p = verb("token", "print the token the gateway would inject for HOST (or decode it)")
    p.add_argument("host", metavar="HOST", help="host or host:port, as a client would ask for it")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.add_argument("--decode", action="store_true", help="show header and claims, not the token")
    p.add_argument(
        "--scheme", choices=("https", "http"), default="https", help="request scheme (https)"
    )
    p.add_argument("--method", default="GET", help="request method, for ${method} and sigv4 (GET)")
    p.add_argument(
        "--principal",
        metavar="NAME",
        help="the proxyauth name the client acts as (routes' principals)",
    )
    p.add_argument("--path", default="/", help="request path and query, for sigv4 (/)")
    p.add_argument("--body", default=None, help="request body, for sigv4 (empty)")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        type=_pair(":"),
        metavar="NAME:VALUE",
        help="a request header, for ${header:NAME} (repeatable)",
    )
    p.add_argument(
        "--client-claim",
        action="append",
        default=[],
        type=_pair("="),
        metavar="CLAIM=VALUE",
        help="a claim of the client's verified token, for ${client:CLAIM} (repeatable)",
    )
    p.set_defaults(func=cmd_token)

    p = verb("verify", "check a token's signature, times, issuer and audience")
    p.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--secret", metavar="SRC", help=f"HMAC secret: {SRC_FORMS}")
    key.add_argument(
        "--jwks", metavar="SRC", help="JWKS file, JWKS URL, or issuer URL (+/.well-known/jwks.json)"
    )
    p.add_argument("--audience", metavar="A", help="the audience the token must carry")
    p.add_argument("--issuer", metavar="I", help="the issuer the token must name")
    p.add_argument(
        "--leeway", type=float, default=0.0, metavar="S", help="seconds of clock skew allowed (0)"
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for a fetch or cmd: (5)")
    p.set_defaults(func=cmd_verify)

    p = verb("drift", "compare secrets from several places by fingerprint")
    p.add_argument("sources", nargs="+", metavar="SRC", help=SRC_FORMS)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each cmd: (10)")
    p.set_defaults(func=cmd_drift)

    p = verb("status", "show a running gateway's routes, cached tokens and last errors")
    p.add_argument("--url", help="the gateway's metrics address, e.g. http://127.0.0.1:9464")
    p.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help="take the address from this config's `metrics` (gateway.yaml)",
    )
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    p.set_defaults(func=cmd_status)

    about = "run a local STS (GetWebIdentityToken), OAuth2 token endpoint and JWKS"
    p = sub.add_parser("emulator", aliases=["sts-emulator"], help=about, description=about)
    p.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="listen port (8090)")
    p.add_argument(
        "--oauth2-client",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="register an OAuth2 client (repeatable); with none, the demo client",
    )
    p.add_argument(
        "--oauth2-clients",
        metavar="FILE",
        help='register the OAuth2 clients of a JSON {"id": "secret"}',
    )
    p.set_defaults(func=cmd_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        hint = " (mitmdump's go after --: authgw run -c FILE -- ARGS)" if args.verb == "run" else ""
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if passthrough:
        if args.verb == "exec":
            args.command = passthrough
        elif args.verb != "run":
            print("authgw: arguments after -- are for `authgw run` and `exec`", file=sys.stderr)
            return 2
        else:
            args.mitmdump_args = passthrough
    try:
        result: Any = args.func(args)
    except BrokenPipeError:  # `authgw token ... | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit flush must not fail again
        return 0
    return int(result)


def _version() -> str:
    try:
        return importlib.metadata.version("authgw")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"
