"""The connection guard's rules (authgw.guard), on plain config data."""

from __future__ import annotations

from authgw.guard import _guarded, uninterceptable
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
