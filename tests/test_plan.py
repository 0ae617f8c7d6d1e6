"""plan.check_transport: the hops besides the upstream are held to the same rules."""

from __future__ import annotations

import pytest
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils

from authgw.config import Route
from authgw.hosts import HostPattern
from authgw.plan import check_transport
from authgw.tokens import InsecureUpstream

ROUTE = Route(name="local", hosts=(HostPattern.parse("localhost"),))


def flow(scheme: str, mode: str = "regular") -> tflow.HTTPFlow:
    f = tflow.tflow(req=tutils.treq(scheme=scheme.encode(), host="localhost", port=8080))
    f.client_conn.proxy_mode = ProxyMode.parse(mode)
    return f


@pytest.mark.parametrize(
    ("mode", "refused"),
    [
        ("upstream:http://192.0.2.1:3128", True),  # the next hop reads the token in clear
        ("upstream:http://127.0.0.1:3128", False),
        ("upstream:https://192.0.2.1:3128", False),  # TLS to the next hop
        ("regular", False),
    ],
)
def test_plain_http_through_an_upstream_proxy_is_held_to_the_next_hop(
    mode: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(InsecureUpstream, match="192.0.2.1"):
            check_transport(ROUTE, flow("http", mode), tls_unverified=False)
    else:
        check_transport(ROUTE, flow("http", mode), tls_unverified=False)
    allowed = Route(name="local", hosts=ROUTE.hosts, allow_http=True)
    check_transport(allowed, flow("http", mode), tls_unverified=False)


def test_with_ssl_insecure_only_an_allowing_route_sends_to_https() -> None:
    with pytest.raises(InsecureUpstream, match="allow_insecure_tls") as caught:
        check_transport(ROUTE, flow("https"), tls_unverified=True)
    assert caught.value.error_class == "insecure_upstream"
    check_transport(ROUTE, flow("https"), tls_unverified=False)
    allowed = Route(name="local", hosts=ROUTE.hosts, allow_insecure_tls=True)
    check_transport(allowed, flow("https"), tls_unverified=True)
