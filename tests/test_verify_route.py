"""Verify routes' checker (authgw.verify.route.RouteVerifier): leeway for clock skew."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from authgw.config import SecretRef, VerifyConfig
from authgw.verify import RouteVerifier
from tests.fakes import FakeClock

SECRET = "verify-route-secret-" + "v" * 40


@pytest.mark.parametrize(
    ("claims", "leeway", "reason"),
    [
        ({"exp": -3}, 0, "expired"),
        ({"exp": -3}, 5, "valid"),
        ({"nbf": 4}, 0, "not_yet_valid"),
        ({"iat": 4, "exp": 300}, 5, "valid"),  # a clock 4 s ahead of ours
        ({"exp": -30}, 5, "expired"),
    ],
)
def test_leeway_forgives_that_much_clock_skew_and_no_more(
    monkeypatch: pytest.MonkeyPatch, claims: dict[str, int], leeway: float, reason: str
) -> None:
    clock = FakeClock(1_800_000_000)
    monkeypatch.setenv("VERIFY_ROUTE_SECRET", SECRET)
    config = VerifyConfig(secret=SecretRef(kind="env", name="VERIFY_ROUTE_SECRET"), leeway=leeway)
    token = jwt.encode({k: clock() + v for k, v in claims.items()}, SECRET, "HS256")
    verdict = asyncio.run(RouteVerifier("r", config, clock=clock).check(token, None))
    assert verdict.reason == reason
