"""The oauth2 source (authgw.sources.oauth2) against a token endpoint written from the RFC
(tests/oauth2_endpoint.py): both client authentications, the form, expiry, bad answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from authgw.config import OAuth2TokenConfig, SecretRef
from authgw.sources.oauth2 import OAuth2Source
from authgw.tokens import Token, TokenUnavailable
from tests.fakes import FakeClock
from tests.oauth2_endpoint import TokenEndpoint

CLIENT_ID = "client id/with:odd&chars"  # Basic auth form-urlencodes both parts
CLIENT_SECRET = "client-secret-" + uuid.uuid4().hex


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint(CLIENT_ID, CLIENT_SECRET, expires_in=120) as ep:
        yield ep


def source(
    endpoint: TokenEndpoint, clock: FakeClock | None = None, **settings: Any
) -> OAuth2Source:
    cfg = OAuth2TokenConfig(
        token_url=endpoint.url,
        client_id=SecretRef(kind="literal", literal=CLIENT_ID),
        client_secret=SecretRef(kind="literal", literal=CLIENT_SECRET),
        **settings,
    )
    return OAuth2Source("idp", cfg, clock=clock or FakeClock(), default_ttl=300)


def fetch(src: OAuth2Source, audience: tuple[str, ...] = ()) -> Token:
    return asyncio.run(src.fetch(audience))


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_token_with_either_client_authentication(endpoint: TokenEndpoint, method: str) -> None:
    clock = FakeClock(1_800_000_000)
    src = source(
        endpoint, clock, auth_method=method, scope="read write", params=(("resource", "r"),)
    )
    token = fetch(src, ("https://api.example",))
    assert token.value.startswith("opaque-") and token.source == "oauth2"
    assert token.expires_at == 1_800_000_000 + 120  # expires_in
    (call,) = endpoint.calls
    assert call["client_id"] == CLIENT_ID and call["auth"] == method
    sent = {"grant_type", "scope", "audience", "resource"}
    assert set(call["form"]) == (
        sent | {"client_id", "client_secret"} if "post" in method else sent
    )


@pytest.mark.parametrize("mode", ["expires_0", "expires_-1", "expires_abc"])
def test_an_expires_in_that_is_no_lifetime_falls_back_to_default_ttl(
    endpoint: TokenEndpoint, mode: str
) -> None:
    endpoint.mode = mode
    token = fetch(source(endpoint, FakeClock(1_800_000_000)))
    assert token.expires_at == 1_800_000_000 + 300


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [("html", "invalid_token"), ("no_token", "invalid_token"), ("error", "invalid_scope")],
)
def test_bad_answers_are_error_classes(
    endpoint: TokenEndpoint, mode: str, error_class: str
) -> None:
    endpoint.mode = mode
    with pytest.raises(TokenUnavailable) as info:
        fetch(source(endpoint))
    assert info.value.error_class == error_class
    assert CLIENT_SECRET not in str(info.value)


def test_an_unregistered_error_code_is_oauth2_error_and_never_repeated(
    endpoint: TokenEndpoint,
) -> None:
    """An endpoint that invents a code per answer must not invent metric label values."""
    endpoint.mode = "error"
    classes = set()
    for i in range(25):
        endpoint.error_code = f"made_up_{i}"
        with pytest.raises(TokenUnavailable) as info:
            fetch(source(endpoint))
        classes.add(info.value.error_class)
        assert "made_up" not in str(info.value)
    assert classes == {"oauth2_error"}
    endpoint.error_code = "invalid_target"  # RFC 8707's: kept
    with pytest.raises(TokenUnavailable) as info:
        fetch(source(endpoint))
    assert info.value.error_class == "invalid_target"


def test_a_wrong_secret_is_invalid_client_and_never_shown(endpoint: TokenEndpoint) -> None:
    endpoint.client_secret = "something-else"
    with pytest.raises(TokenUnavailable) as info:
        fetch(source(endpoint))
    assert info.value.error_class == "invalid_client"
    assert CLIENT_SECRET not in str(info.value) and CLIENT_SECRET not in repr(
        source(endpoint).describe()
    )


def test_an_endpoint_that_does_not_answer_is_timeout(endpoint: TokenEndpoint) -> None:
    endpoint.mode = "hang"
    with pytest.raises(TokenUnavailable) as info:
        fetch(source(endpoint, timeout=0.5))
    assert info.value.error_class == "timeout"


def test_an_endpoint_that_is_not_there_is_transport() -> None:
    with TokenEndpoint(CLIENT_ID, CLIENT_SECRET) as gone:
        url = gone.url
    cfg = OAuth2TokenConfig(
        token_url=url,
        client_id=SecretRef(kind="literal", literal=CLIENT_ID),
        client_secret=SecretRef(kind="literal", literal=CLIENT_SECRET),
        timeout=2,
    )
    with pytest.raises(TokenUnavailable) as info:
        asyncio.run(OAuth2Source("idp", cfg).fetch(()))
    assert info.value.error_class == "transport"


def test_the_cache_key_holds_no_secret_but_changes_with_it(endpoint: TokenEndpoint) -> None:
    params = source(endpoint).cache_params()
    assert CLIENT_SECRET not in repr(params)
    endpoint_b = source(endpoint)
    endpoint_b.secret = type(endpoint_b.secret)(SecretRef(kind="literal", literal="rotated"))
    assert endpoint_b.cache_params() != params


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1e999", True])
def test_an_expires_in_that_is_not_a_finite_number_is_no_lifetime(value: object) -> None:
    from authgw.sources.oauth2 import _lifetime

    assert _lifetime(value) is None
    assert _lifetime(10**12) == 366 * 86_400.0  # capped
