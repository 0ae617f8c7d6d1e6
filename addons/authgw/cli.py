"""The ``authgw`` command: run the gateway and diagnose token trouble.

Each verb is a ``_cmd_<verb>(args) -> int`` registered in ``build_parser``; exit
codes: 0 good, 1 a finding (invalid config, invalid token, drift), 2 unusable input.
No verb prints a secret; only ``authgw token`` prints a token, because that is
what it is for.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from authgw import config as configmod
from authgw import sources
from authgw.config import Config, ConfigError
from authgw.tokens import peek

DEFAULT_CONFIG = "gateway.yaml"


def addon_script() -> Path:
    """The file to pass to ``mitmdump -s`` (a top-level module next to the package)."""
    spec = importlib.util.find_spec("auth_gateway")
    if spec is not None and spec.origin:
        return Path(spec.origin)
    return Path(__file__).resolve().parent.parent / "auth_gateway.py"


def mitmdump_argv(config: Path, extra: Sequence[str] = ()) -> list[str]:
    """argv that runs mitmdump with the gateway on ``config`` in this Python."""
    return [
        sys.executable,
        "-c",
        "from mitmproxy.tools.main import mitmdump; mitmdump()",
        "-s",
        str(addon_script()),
        "--set",
        f"authgw_config={config}",
        *extra,
    ]


def _load(path: str) -> Config:
    return configmod.load(path)


def _cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        _load(str(path))
    except ConfigError as e:
        print(f"authgw: {e}", file=sys.stderr)
        return 1
    argv = mitmdump_argv(path.resolve(), args.mitmdump_args)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.config)
        built, notes = sources.build_all(cfg)
    except ConfigError as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 1
    for warning in (*cfg.warnings, *notes):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK, {len(cfg.routes)} route(s)")
    rows = [("ROUTE", "HOSTS", "SOURCE", "HEADER", "SECRET")]
    for route in cfg.routes:
        info = built[route.name].describe()
        secret = info.get("secret", "-")
        if "secret_fingerprint" in info:
            secret = f"{secret} {info['secret_fingerprint'] or '(missing)'}"
        elif info.get("source") == "sts":
            secret = f"aws {info.get('profile') or 'default chain'}"
        rows.append(
            (
                route.name,
                ", ".join(p.text for p in route.hosts),
                route.token.type,
                route.header,
                str(secret),
            )
        )
    _print_table(rows)
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()
    token = token.removeprefix("Bearer ").strip()
    peeked = peek(token)
    if peeked is None:
        print("authgw: not a JWT (expected three base64url JSON segments)", file=sys.stderr)
        return 2
    print(json.dumps({"header": peeked.header, "claims": peeked.claims}, indent=2))
    now = time.time()
    for name in ("iat", "nbf", "exp"):
        value = peeked.claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            print(f"{name}: {_human_time(value, now)}")
    print("signature: not verified (use authgw verify)")
    return 0


def _cmd_sts_emulator(args: argparse.Namespace) -> int:
    from authgw.sts_emulator import serve

    serve(host=args.host, port=args.port)
    return 0


def _human_time(ts: float, now: float) -> str:
    when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = int(ts - now)
    rel = f"in {_duration(delta)}" if delta >= 0 else f"{_duration(-delta)} ago"
    return f"{when} ({rel})"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authgw", description="An auth gateway that lives inside mitmproxy."
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    p = verb("run", "run mitmdump with the gateway (arguments after -- go to mitmdump)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.set_defaults(func=_cmd_run, mitmdump_args=[])

    p = verb("check", "validate a config file and list its routes with secret fingerprints")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.set_defaults(func=_cmd_check)

    p = verb("decode", "show a JWT's header and claims, without verifying it")
    p.add_argument("token", help="the token, or - to read it from stdin")
    p.set_defaults(func=_cmd_decode)

    p = verb("sts-emulator", "run a local STS (GetWebIdentityToken) for offline use")
    p.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="listen port (8090)")
    p.set_defaults(func=_cmd_sts_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    if passthrough:
        if args.verb != "run":
            print("authgw: arguments after -- are only for `authgw run`", file=sys.stderr)
            return 2
        args.mitmdump_args = passthrough
    result: Any = args.func(args)
    return int(result)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
