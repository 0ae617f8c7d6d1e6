"""The connection guard's rules (authgw.guard), on plain config data."""

from __future__ import annotations

from mitmproxy.test import tflow

from authgw import routing
from authgw.guard import ConnectionGuard, _guarded, uninterceptable
from authgw.metrics import Metrics
from tests.configs import parse

CONFIG = """\
version: 1
unmatched: {unmatched}
routes:
  - {{name: enforced, hosts: ["127.0.0.1:8001"], verify: {{secret: {{env: S}}, enforce: true}}}}
  - {{name: observed, hosts: ["127.0.0.1:8002"], verify: {{secret: {{env: S}}}}}}
  - {{name: tokened, hosts: [api.example, "*.svc.example"], token: {{type: static, value: x}}}}
"""


def test_raw_relays_are_refused_to_enforce_routes_and_unrouted_hosts_under_reject() -> None:
    reject = parse(CONFIG.format(unmatched="reject"))
    assert _guarded(reject, "127.0.0.1", 8001) is not None
    assert _guarded(reject, "127.1", 8001) is not None  # an address, in any spelling
    assert _guarded(reject, "elsewhere.example", 443) == (None, "no route for host")
    assert _guarded(reject, "127.0.0.1", 8002) is None  # observe mode
    assert _guarded(reject, "api.example", 443) is None


def test_passthrough_guards_only_enforce_routes() -> None:
    passthrough = parse(CONFIG.format(unmatched="passthrough"))
    assert _guarded(passthrough, "elsewhere.example", 443) is None
    assert _guarded(passthrough, "127.0.0.1", 8001) is not None


def test_route_hosts_that_ignore_hosts_cover_are_named() -> None:
    cfg = parse(CONFIG.format(unmatched="reject"))
    assert uninterceptable(cfg, [r"^api\.example:"]) == ["tokened (api.example)"]
    assert uninterceptable(cfg, [r"svc\.example"]) == ["tokened (*.svc.example)"]
    assert uninterceptable(cfg, [r"^nothing$"]) == []


PRINCIPALS = """\
version: 1
unmatched: reject
routes:
  - {name: alices, hosts: [only.example], principals: [alice], token: {type: static, value: x}}
  - name: bobs
    hosts: ["127.0.0.1:8003"]
    principals: [bob]
    verify: {secret: {env: S}, enforce: true}
  - {name: anyone, hosts: ["127.0.0.1:8003"], token: {type: static, value: y}}
"""


def test_the_guard_looks_at_every_principals_route() -> None:
    """A CONNECT or a raw relay is not decided for one principal: a host only a principal's
    route covers is routed, and a principal's enforce route guards its host although the
    route everyone else gets there does not verify."""
    cfg = parse(PRINCIPALS)
    assert _guarded(cfg, "only.example", 443) is None
    guarded = _guarded(cfg, "127.0.0.1", 8003)
    assert guarded is not None and guarded[0] is not None and guarded[0].name == "bobs"

    f = tflow.tflow()
    f.request.host, f.request.port = "only.example", 443
    ConnectionGuard(Metrics()).connect(cfg, f)
    assert f.response is None  # not 403: alice's requests through it are decided one by one
    g = tflow.tflow()
    g.request.host, g.request.port = "nowhere.example", 443
    ConnectionGuard(Metrics()).connect(cfg, g)
    assert g.response is not None and g.response.status_code == 403


def test_candidates_are_the_principals_routes_up_to_the_first_for_everyone() -> None:
    cfg = parse(PRINCIPALS)
    assert [r.name for r in routing.candidates(cfg.routes, "127.0.0.1", 8003)] == [
        "bobs",
        "anyone",
    ]
    assert [r.name for r in routing.candidates(cfg.routes, "only.example", 443)] == ["alices"]
    assert routing.match(cfg.routes, "only.example", 443, None) is None
    assert routing.match(cfg.routes, "only.example", 443, "alice").name == "alices"  # type: ignore[union-attr]
    assert routing.match(cfg.routes, "127.0.0.1", 8003, "alice").name == "anyone"  # type: ignore[union-attr]
