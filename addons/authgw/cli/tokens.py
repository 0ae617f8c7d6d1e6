"""What a token says and whether it checks out: ``authgw decode``, ``token`` and ``verify``.

``decode`` shows a JWT without verifying it; ``token`` gets the token the gateway
would inject for a host (the same route match, cache key and fetch); ``verify``
checks a token against a secret or a JWK Set and says precisely why not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from authgw import config as configmod
from authgw import plan, routing, sources
from authgw.cache import TokenCache
from authgw.config import Config, ConfigError, Route, claim_template
from authgw.kinds import kind_of
from authgw.templates import Inputs, MissingClaimInput
from authgw.tokens import (
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
    Verdict,
    VerifyError,
    human_duration,
    printable,
    utc_time,
    verify_hmac,
    verify_jwks,
)

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


def _human_time(ts: float, now: float) -> str:
    delta = ts - now
    rel = f"in {human_duration(delta)}" if delta >= 0 else f"{human_duration(-delta)} ago"
    return f"{utc_time(ts)} ({rel})"


# -- decode ---------------------------------------------------------------------------


def cmd_decode(args: argparse.Namespace) -> int:
    peeked = peek(_token_arg(args.token))
    if peeked is None:
        print(f"authgw: {NOT_A_JWT}", file=sys.stderr)
        return 2
    _print_jwt(peeked)
    print("signature: not verified (use authgw verify)")
    return 0


# -- token: what the gateway would inject ---------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    try:
        host, port = routing.parse_upstream(args.host)
    except ValueError as e:
        print(f"authgw: bad HOST {args.host!r}: {e}", file=sys.stderr)
        return 2
    port = port or (443 if args.scheme == "https" else 80)
    try:
        cfg = configmod.load(args.config)
        built, _ = sources.build_all(cfg)
    except ConfigError as e:
        cause = e.__cause__
        error_class = f" ({cause.error_class})" if isinstance(cause, TokenUnavailable) else ""
        print(f"authgw: {args.config}: {e}{error_class}; mitmdump would not start", file=sys.stderr)
        return 1
    route = routing.match(cfg.routes, host, port, args.principal)
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
    if kind_of(route.token).signs:
        return _sigv4_headers(route, built[route.name], args, host, port)
    audience = routing.audience_for(route.token, args.scheme, host)
    try:
        rendered = _rendered_claims(route, args, host)
    except MissingClaimInput as e:
        hint = "--client-claim" if e.name in dict(args.client_claim) else "--header/--client-claim"
        print(f"authgw: route {route.name}: {e.body} (give it with {hint})", file=sys.stderr)
        return 1
    try:
        plan.check_scheme(route, args.scheme, host)  # as the gateway does, before a fetch
        with _quiet("authgw.cache"):
            token = asyncio.run(_gateway_token(cfg, route, built[route.name], audience, rendered))
    except TokenUnavailable as e:
        message = str(e) if str(e).startswith(f"route {route.name}") else f"route {route.name}: {e}"
        then = ""
        if isinstance(e, MissingSecret) and kind_of(route.token).optional(route.token):
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


def _sigv4_headers(
    route: Route, signer: Any, args: argparse.Namespace, host: str, port: int
) -> int:
    """A sigv4 route: the headers the gateway would set on a sample request."""
    default = 443 if args.scheme == "https" else 80
    name = f"[{host}]" if ":" in host else host
    authority = name if port == default else f"{name}:{port}"
    from authgw.sources.sigv4 import canonical_path, canonical_query  # botocore: sigv4 only

    path, _, query = args.path.partition("?")
    if signer.config.service == "s3" and path.startswith("/"):
        path = canonical_path(path)
    url = f"{args.scheme}://{authority}{path}" + (f"?{canonical_query(query)}" if query else "")
    body = args.body.encode() if args.body is not None else b""
    try:
        creds = signer.credentials()
    except TokenUnavailable as e:
        print(f"authgw: token unavailable ({e.error_class}): {e}", file=sys.stderr)
        return 1
    method = args.method.upper()
    signed = signer.sign(creds, method, url, [("host", authority)], body)
    print(
        f"authgw: route {route.name} (sigv4), service {signer.config.service}, region "
        f"{signer.region}, key {fingerprint(creds.access_key)}, payload {signer.config.payload}: "
        f"the headers for {method} {url} ({len(body)} bytes of body)",
        file=sys.stderr,
    )
    for header, value in signed:
        print(f"{header}: {value}")
    return 0


def _rendered_claims(route: Route, args: argparse.Namespace, host: str) -> plan.Rendered | None:
    """A templated route's claims, filled in from ``--header``, ``--client-claim``,
    ``--method`` and HOST as the gateway fills them from a request."""
    template = claim_template(route.token)
    if template is None:
        return None
    headers: list[tuple[str, str]] = args.header

    def header(name: str) -> list[str]:
        return [v for k, v in headers if k.lower() == name.lower()]

    return template.render(Inputs(header, dict(args.client_claim), host, args.method))


async def _gateway_token(
    cfg: Config,
    route: Route,
    source: sources.Source,
    audience: tuple[str, ...],
    rendered: plan.Rendered | None = None,
) -> Token:
    """The token as the request decision gets it: the same cache key, cache and fetch."""
    cache = TokenCache(cfg.cache)
    try:
        return await cache.get(*plan.key_and_fetcher(route, source, audience, rendered))
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


# -- verify -----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
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
    verdict = verify_hmac(
        token, secret, audience=args.audience, issuer=args.issuer, leeway=args.leeway
    )
    return verdict, f"secret: {source} {fingerprint(secret)}"


def _verify_with_jwks(token: str, args: argparse.Namespace) -> tuple[Verdict, str]:
    jwks = JwksSource(args.jwks, timeout=args.timeout).load()
    verdict = verify_jwks(
        token, jwks, audience=args.audience, issuer=args.issuer, leeway=args.leeway
    )
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
