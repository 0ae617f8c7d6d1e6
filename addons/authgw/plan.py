"""A route's token plan: what makes the credential for one request.

For a token route, ``token_plan`` gives the cache key and the fetcher: the scheme is
checked (``check_scheme``), the claim template rendered and its headers removed, and
the key holds the source's parameters and the rendered claims; ``check_transport``
holds the other hops (an upstream proxy, ``ssl_insecure``) to the same rules. For a
sigv4 route, ``signer`` is the route's signer. The request decision and ``authgw
token`` both use these, so the CLI shows what the gateway would inject. Errors are
raised, never answered: ``InsecureUpstream``, ``MissingSecret`` (from the source;
optional secrets are the caller's call), ``MissingClaimInput`` (a 400 to the caller),
``TypeError`` (a route whose source is not what its config says: a reload raced the
request).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from mitmproxy import http
from mitmproxy.proxy.mode_specs import UpstreamMode

from authgw import routing
from authgw.cache import CacheKey, Fetcher
from authgw.config import Route, claim_template
from authgw.flowlog import FlowRecord
from authgw.sources import Source, TokenSource
from authgw.sources.hmac import HmacSource
from authgw.templates import ClaimTemplate, Inputs
from authgw.tokens import InsecureUpstream

if TYPE_CHECKING:
    from authgw.sources.sigv4 import SigV4Signer

Rendered = tuple[dict[str, Any], str]  # (the rendered claims, their canonical JSON)


def check_scheme(route: Route, scheme: str, host: str) -> None:
    """No credential over plain http to a non-loopback host, unless the route allows it."""
    if scheme == "http" and not route.allow_http and not routing.is_loopback(host):
        raise InsecureUpstream(
            f"route {route.name}: refusing to send a token over plain http to "
            f"{host} (set allow_http: true to allow)"
        )


def check_transport(route: Route, flow: http.HTTPFlow, *, tls_unverified: bool) -> None:
    """Where else a credential travels in clear or unverified (``InsecureUpstream``): in
    upstream mode over plain http it reaches the upstream proxy first, so that hop is
    held to the plain-http rule as well; with mitmproxy's ``ssl_insecure`` no https
    upstream's certificate is checked, so only a route with ``allow_insecure_tls`` sends
    one there."""
    req = flow.request
    if req.scheme == "https":
        if tls_unverified and not route.allow_insecure_tls:
            raise InsecureUpstream(
                f"route {route.name}: mitmproxy's ssl_insecure is on, so {req.host}'s "
                "certificate is not verified; refusing to send a token "
                "(set allow_insecure_tls: true to allow)"
            )
        return
    mode = flow.client_conn.proxy_mode
    if isinstance(mode, UpstreamMode) and mode.scheme == "http":
        check_scheme(route, "http", mode.address[0])  # the upstream proxy reads it in clear


def token_plan(
    route: Route,
    source: Source,
    req: http.Request,
    record: FlowRecord,
    client_claims: Mapping[str, Any] | None,
) -> tuple[CacheKey, Fetcher]:
    """The cache key and fetcher of the route's token for ``req``."""
    assert route.token is not None
    check_scheme(route, req.scheme, req.host)
    audience = routing.audience_for(route.token, req.scheme, req.host)
    record.token_source = source.kind
    record.audience = audience
    template = claim_template(route.token)
    rendered = None if template is None else render(template, req, client_claims, record)
    return key_and_fetcher(route, source, audience, rendered)


def render(
    template: ClaimTemplate,
    req: http.Request,
    client_claims: Mapping[str, Any] | None,
    record: FlowRecord,
) -> Rendered:
    """The route's claims filled in from the request; the headers they read are removed
    before forwarding, also when an input is missing (``MissingClaimInput``)."""
    inputs = Inputs(req.headers.get_all, client_claims, req.host, req.method)
    try:
        return template.render(inputs)
    finally:
        for name in template.headers:
            if name in req.headers:
                del req.headers[name]
                record.headers_removed.append(name)


def key_and_fetcher(
    route: Route, source: Source, audience: tuple[str, ...], rendered: Rendered | None
) -> tuple[CacheKey, Fetcher]:
    """The cache key (route, audience, the source's parameters, the rendered claims) and
    the fetch that makes the token for it."""
    if source.kind == "sigv4":
        raise TypeError(f"route {route.name}: a signer where a token source belongs")
    token_source = cast(TokenSource, source)
    params = token_source.cache_params()
    if rendered is None:
        return CacheKey(route.name, audience, params, token_source.generation), partial(
            token_source.fetch, audience
        )
    if not isinstance(token_source, HmacSource):  # the config allows templates on hmac only
        raise TypeError(f"a claim template on a {source.kind} source")
    claims, text = rendered
    return CacheKey(route.name, audience, (params, text), token_source.generation), partial(
        token_source.fetch, audience, claims
    )


def signer(sources: Mapping[str, Source], route: str) -> SigV4Signer:
    """The route's signer (a TypeError, and so a 502, if a reload made it something else)."""
    found = sources.get(route)
    if found is None or found.kind != "sigv4":
        raise TypeError(f"route {route}: no signer for a sigv4 flow")
    return cast("SigV4Signer", found)
