"""``authgw run`` (mitmdump with the gateway) and ``authgw check`` (a config's routes)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from authgw import config as configmod
from authgw import sources
from authgw.cli.table import print_table
from authgw.config import ConfigError


def addon_script() -> Path:
    """The file to pass to ``mitmdump -s`` (a top-level module next to the package)."""
    spec = importlib.util.find_spec("auth_gateway")
    if spec is not None and spec.origin:
        return Path(spec.origin)
    return Path(__file__).resolve().parents[2] / "auth_gateway.py"


MITMDUMP = "from mitmproxy.tools.main import mitmdump; mitmdump()"


def mitmdump_argv(config: Path, extra: Sequence[str] = (), *, start: str = MITMDUMP) -> list[str]:
    """argv that runs mitmdump with the gateway on ``config`` in this Python (``start``:
    the ``-c`` code that starts it).

    It listens on 127.0.0.1 unless ``extra`` says otherwise (``--listen-host`` or
    ``--set listen_host=``, both later on the line and so the ones that count):
    anyone who can reach the port gets the routes' tokens injected."""
    return [
        sys.executable,
        "-c",
        start,
        "-s",
        str(addon_script()),
        "--set",
        f"authgw_config={config}",
        "--listen-host",
        "127.0.0.1",
        *extra,
    ]


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        configmod.load(str(path))
    except ConfigError as e:
        print(f"authgw_config: {e}", file=sys.stderr)  # as mitmdump says it at start
        return 2
    argv = mitmdump_argv(path.resolve(), args.mitmdump_args)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = configmod.load(args.config)
        built, notes = sources.build_all(cfg)
    except ConfigError as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 1
    for warning in (*cfg.warnings, *notes):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK, {len(cfg.routes)} route(s)")
    rows = [("ROUTE", "HOSTS", "SOURCE", "HEADER", "SECRET")]
    for route in cfg.routes:
        if route.name not in built:
            verify = route.verify
            assert verify is not None
            where = verify.secret.describe() if verify.secret else f"jwks {verify.jwks}"
            mode = "enforce" if verify.enforce else "observe"
            rows.append(
                (
                    route.name,
                    ", ".join(p.text for p in route.hosts),
                    f"verify ({mode})",
                    route.header,
                    where,
                )
            )
            continue
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
                route.token.type if route.token else "-",
                route.header,
                str(secret),
            )
        )
    print_table(rows)
    return 0
