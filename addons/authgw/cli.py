"""The ``authgw`` command: run the gateway and diagnose token trouble.

Each verb is a ``_cmd_<verb>(args) -> int`` registered in ``build_parser``; exit
codes: 0 good, 1 a finding (invalid config, no token, invalid token, drift), 2
unusable input (bad arguments, unreadable secret, unfetchable JWKS, not a JWT).
No verb prints a secret; only ``authgw token`` (without ``--decode``) prints a
token, because that is what it is for. Secrets and tokens show as fingerprints.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from authgw import config as configmod
from authgw import routing, sources
from authgw.cache import CacheKey, TokenCache
from authgw.config import Config, ConfigError, Route
from authgw.tokens import (
    InsecureUpstream,
    JwtPeek,
    MissingSecret,
    Token,
    TokenUnavailable,
    fingerprint,
    peek,
)
from authgw.verify import (
    JwksSource,
    SecretSource,
    SecretUnavailable,
    Verdict,
    VerifyError,
    human_duration,
    printable,
    utc_time,
    verify_hmac,
    verify_jwks,
)

DEFAULT_CONFIG = "gateway.yaml"
SRC_FORMS = "env:NAME, file:PATH, cmd:COMMAND or config:FILE#route"


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
    _print_table(rows)
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    peeked = peek(_token_arg(args.token))
    if peeked is None:
        print(f"authgw: {NOT_A_JWT}", file=sys.stderr)
        return 2
    _print_jwt(peeked)
    print("signature: not verified (use authgw verify)")
    return 0


NOT_A_JWT = "not a JWT (expected three base64url JSON segments)"


def _token_arg(text: str) -> str:
    """A token from the command line, or from stdin for ``-``; a ``Bearer`` prefix is dropped."""
    token = sys.stdin.read().strip() if text == "-" else text.strip()
    return token.removeprefix("Bearer ").strip()


def _print_jwt(peeked: JwtPeek) -> None:
    print(json.dumps({"header": peeked.header, "claims": peeked.claims}, indent=2))
    _print_times(peeked.claims)


def _print_times(claims: Mapping[str, Any]) -> None:
    now = time.time()
    for name in ("iat", "nbf", "exp"):
        value = claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            print(f"{name}: {_human_time(value, now)}")


# -- token: what the gateway would inject ---------------------------------------------


def _cmd_token(args: argparse.Namespace) -> int:
    try:
        host, port = routing.parse_upstream(args.host)
    except ValueError as e:
        print(f"authgw: bad HOST {args.host!r}: {e}", file=sys.stderr)
        return 2
    port = port or (443 if args.scheme == "https" else 80)
    try:
        cfg = _load(args.config)
        built, _ = sources.build_all(cfg)
    except ConfigError as e:
        cause = e.__cause__
        error_class = f" ({cause.error_class})" if isinstance(cause, TokenUnavailable) else ""
        print(f"authgw: {args.config}: {e}{error_class}; mitmdump would not start", file=sys.stderr)
        return 1
    route = routing.match(cfg.routes, host, port)
    if route is None:
        action = "answers 403" if cfg.unmatched == "reject" else "forwards it without a token"
        print(
            f"authgw: no route for {host}:{port} in {args.config}; the gateway {action}",
            file=sys.stderr,
        )
        return 1
    if route.token is None:
        print(f"authgw: route {route.name} only verifies tokens; it injects none", file=sys.stderr)
        return 1
    audience = routing.audience_for(route.token, args.scheme, host)
    try:
        if args.scheme == "http" and not route.allow_http and not routing.is_loopback(host):
            raise InsecureUpstream(  # as the addon does, before any token is fetched
                f"route {route.name}: refusing to send a token over plain http to "
                f"{host} (set allow_http: true to allow)"
            )
        with _quiet("authgw.cache"):
            token = asyncio.run(_gateway_token(cfg, route, built[route.name], audience))
    except TokenUnavailable as e:
        message = str(e) if str(e).startswith(f"route {route.name}") else f"route {route.name}: {e}"
        then = ""
        if isinstance(e, MissingSecret) and getattr(route.token, "optional", False):
            then = "; optional, so the gateway forwards requests without a token"
        print(f"authgw: token unavailable ({e.error_class}): {message}{then}", file=sys.stderr)
        return 1
    summary = _token_summary(route, token, audience)
    if not args.decode:
        print(f"authgw: {summary}", file=sys.stderr)
        print(token.value)
        return 0
    print(summary)
    peeked = peek(token.value)
    if peeked is None:
        print("not a JWT: an opaque token; nothing to decode")
    else:
        _print_jwt(peeked)
    return 0


async def _gateway_token(
    cfg: Config, route: Route, source: sources.TokenSource, audience: tuple[str, ...]
) -> Token:
    """The token as ``AuthGateway._inject`` gets it: the same cache key, cache and fetch."""
    cache = TokenCache(cfg.cache)
    try:
        key = CacheKey(route.name, audience, source.cache_params())
        return await cache.get(key, partial(source.fetch, audience))
    finally:
        await cache.aclose()


def _token_summary(route: Route, token: Token, audience: tuple[str, ...]) -> str:
    expires = (
        "no expiry"
        if token.expires_at is None
        else f"expires {_human_time(token.expires_at, time.time())}"
    )
    return (
        f"route {route.name} ({token.source}), header {route.header}, "
        f"audience {', '.join(audience) or '-'}, kid {token.kid or '-'}, {expires}, "
        f"token {token.fingerprint}"
    )


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Hold back a logger's warnings: what the gateway would log, the CLI prints itself."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


# -- verify and drift ---------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    token = _token_arg(args.token)
    if peek(token) is None:
        print(f"authgw: {NOT_A_JWT}", file=sys.stderr)
        return 2
    try:
        check = _verify_with_secret if args.secret is not None else _verify_with_jwks
        verdict, key = check(token, args)
    except (ValueError, VerifyError) as e:  # ValueError: a SRC that does not parse
        print(f"authgw: {args.secret or args.jwks}: {e}", file=sys.stderr)
        return 2
    _print_verdict(verdict, key, issuer=args.issuer, audience=args.audience)
    return 0 if verdict.valid else 1


def _verify_with_secret(token: str, args: argparse.Namespace) -> tuple[Verdict, str]:
    source = SecretSource.parse(args.secret)
    secret = source.read(timeout=args.timeout)
    verdict = verify_hmac(token, secret, audience=args.audience, issuer=args.issuer)
    return verdict, f"secret: {source} {fingerprint(secret)}"


def _verify_with_jwks(token: str, args: argparse.Namespace) -> tuple[Verdict, str]:
    jwks = JwksSource(args.jwks, timeout=args.timeout).load()
    verdict = verify_jwks(token, jwks, audience=args.audience, issuer=args.issuer)
    used = f" ({verdict.checked_with})" if verdict.checked_with else ""
    return verdict, f"jwks: {jwks.origin}{used}"


def _print_verdict(verdict: Verdict, key: str, *, issuer: str | None, audience: str | None) -> None:
    print("valid" if verdict.valid else f"invalid ({verdict.reason}): {verdict.detail}")
    print(f"kid: {verdict.kid or '(none)'}")
    print(f"alg: {verdict.alg or '(none)'}")
    print(key)
    for name, expected in (("iss", issuer), ("aud", audience)):
        if name in verdict.claims:
            value = verdict.claims[name]
            shown = printable(value if isinstance(value, str) else json.dumps(value), 200)
            print(f"{name}: {shown}" + ("" if expected else " (not checked)"))
    _print_times(verdict.claims)
    for note in verdict.notes:
        print(f"note: {note}")


def _cmd_drift(args: argparse.Namespace) -> int:
    if len(args.sources) < 2:
        print("authgw: drift compares two or more sources", file=sys.stderr)
        return 2
    try:
        specs = [SecretSource.parse(text) for text in args.sources]
    except ValueError as e:
        print(f"authgw: {e}", file=sys.stderr)
        return 2
    rows = [("SOURCE", "FINGERPRINT", "BYTES")]
    values: list[bytes] = []
    unreadable = 0
    for spec in specs:
        try:
            value = spec.read(timeout=args.timeout)
        except SecretUnavailable as e:
            unreadable += 1
            rows.append((str(spec), "unreadable", "-"))
            print(f"authgw: cannot read {spec}: {e}", file=sys.stderr)
            continue
        values.append(value)
        rows.append((str(spec), fingerprint(value), str(len(value))))
    _print_table(rows)
    distinct = sorted({fingerprint(v) for v in values})
    if unreadable:
        differ = "; the readable ones already differ" if len(distinct) > 1 else ""
        print(f"cannot compare: {unreadable} of {len(specs)} sources unreadable{differ}")
        return 2
    if len(distinct) == 1:
        print(f"all {len(specs)} sources agree ({distinct[0]})")
        return 0
    print(f"DRIFT: {len(distinct)} different secrets among {len(specs)} sources")
    if len({v.strip() for v in values}) == 1:
        print("note: they differ only in leading or trailing whitespace (a newline? a space?)")
    return 1


DEFAULT_METRICS = "127.0.0.1:9464"


def _status_url(args: argparse.Namespace) -> str:
    """--url, else the config's `metrics` address, else 127.0.0.1:9464."""
    if args.url:
        url: str = args.url
        return url if url.rstrip("/").endswith("/status") else url.rstrip("/") + "/status"
    address = DEFAULT_METRICS
    if Path(args.config).exists():
        metrics = _load(args.config).metrics
        if metrics is not None:
            host = f"[{metrics[0]}]" if ":" in metrics[0] else metrics[0]
            address = f"{host}:{metrics[1]}"
    return f"http://{address}/status"


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        url = _status_url(args)
    except ConfigError as e:
        print(f"authgw: {args.config}: {e}", file=sys.stderr)
        return 2
    # No proxy: the gateway's own status port is never behind the gateway.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=args.timeout) as response:
            doc = json.loads(response.read())
    except (OSError, ValueError) as e:
        print(f"authgw: cannot read {url}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"authgw status from {url} at {doc.get('now')}")
    rows = [("ROUTE", "SOURCE", "SECRET", "TOKEN EXPIRY", "LAST ERROR")]
    for route in doc.get("routes", []):
        source = route.get("source") or "-"
        if "verify" in route:
            source += f" +verify ({route['verify'].get('mode')})"
        secret = (
            route.get("secret_fingerprint")
            or route.get("verify", {}).get("secret_fingerprint")
            or "-"
        )
        expiry = "-"
        if route.get("token_expires_at"):
            expiry = f"{route['token_expires_at']} ({route.get('flag') or 'ok'})"
        error = route.get("last_error") or {}
        rows.append((route["name"], source, secret, expiry, error.get("error_class", "-")))
    _print_table(rows)
    cache = doc.get("cache", {})
    print(f"\ncached tokens: {cache.get('entries', 0)} of at most {cache.get('max_entries')}")
    tokens = doc.get("tokens", [])
    if tokens:
        rows = [("ROUTE", "AUDIENCE", "KID", "EXPIRES", "LEFT")]
        for t in tokens:
            left = t.get("seconds_left")
            rows.append(
                (
                    t["route"],
                    ",".join(t.get("audience") or []) or "-",
                    t.get("kid") or "-",
                    t.get("expires_at") or "never",
                    "-" if left is None else human_duration(left),
                )
            )
        _print_table(rows)
    for failure in doc.get("backoff", []):
        print(
            f"backing off: {failure['route']} {','.join(failure['audience'])}: "
            f"{failure['error_class']}, next try in {failure['retry_in']} s"
        )
    return 0


def _cmd_sts_emulator(args: argparse.Namespace) -> int:
    from authgw.emulator import serve

    serve(host=args.host, port=args.port)
    return 0


def _human_time(ts: float, now: float) -> str:
    delta = ts - now
    rel = f"in {human_duration(delta)}" if delta >= 0 else f"{human_duration(-delta)} ago"
    return f"{utc_time(ts)} ({rel})"


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

    p = verb("token", "print the token the gateway would inject for HOST (or decode it)")
    p.add_argument("host", metavar="HOST", help="host or host:port, as a client would ask for it")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (gateway.yaml)")
    p.add_argument("--decode", action="store_true", help="show header and claims, not the token")
    p.add_argument(
        "--scheme", choices=("https", "http"), default="https", help="request scheme (https)"
    )
    p.set_defaults(func=_cmd_token)

    p = verb("verify", "check a token's signature, times, issuer and audience")
    p.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--secret", metavar="SRC", help=f"HMAC secret: {SRC_FORMS}")
    key.add_argument(
        "--jwks", metavar="SRC", help="JWKS file, JWKS URL, or issuer URL (+/.well-known/jwks.json)"
    )
    p.add_argument("--audience", metavar="A", help="the audience the token must carry")
    p.add_argument("--issuer", metavar="I", help="the issuer the token must name")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for a fetch or cmd: (5)")
    p.set_defaults(func=_cmd_verify)

    p = verb("drift", "compare secrets from several places by fingerprint")
    p.add_argument("sources", nargs="+", metavar="SRC", help=SRC_FORMS)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each cmd: (10)")
    p.set_defaults(func=_cmd_drift)

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
    p.set_defaults(func=_cmd_status)

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
