"""The token sources: hmac signing, static values, the STS call and its errors."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.exceptions
import jwt
import pytest

from authgw import sources
from authgw.config import (
    CacheSettings,
    Config,
    ConfigError,
    HmacTokenConfig,
    Route,
    SecretRef,
    StaticTokenConfig,
    StsTokenConfig,
)
from authgw.routing import HostPattern
from authgw.sources import SecretReader
from authgw.sources.hmac import HmacSource, serde_float
from authgw.sources.static import StaticSource
from authgw.sources.sts import StsSource, classify
from authgw.tokens import MissingSecret, TokenUnavailable, fingerprint
from tests.fakes import FakeClock

SECRET = "reporter-shared-secret-" + "0123456789abcdef" * 3  # 71 bytes: enough for HS512


def hmac_source(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock | None = None, **settings: Any
) -> HmacSource:
    monkeypatch.setenv("MP_STATUS_DASHBOARD__SECRET", SECRET)
    cfg = HmacTokenConfig(
        secret=SecretRef(kind="env", name="MP_STATUS_DASHBOARD__SECRET"), **settings
    )
    return HmacSource("status_dashboard", cfg, clock=clock or FakeClock())


# The CloudMon reporter (Rust `jwt` crate 0.16, `sign_with_key`, header {"alg":"HS256"}),
# compiled and run for this secret and these claims, sent exactly this.
REPORTER_SECRET = "your-shared-secret"
REPORTER_TOKEN = (
    "eyJhbGciOiJIUzI1NiJ9.eyJzdGFja21vbiI6ImR1bW15In0.IPRWBIAYhFnpPcvVXtrRNd-mKrjsSY3uKkFds8WcLQs"
)


def reporter_source(monkeypatch: pytest.MonkeyPatch, claims: dict[str, object]) -> HmacSource:
    monkeypatch.setenv("MP_STATUS_DASHBOARD__SECRET", REPORTER_SECRET)
    cfg = HmacTokenConfig(
        secret=SecretRef(kind="env", name="MP_STATUS_DASHBOARD__SECRET"),
        claims=claims,
        kid="none",
        typ=None,
    )
    return HmacSource("status_dashboard", cfg, clock=FakeClock())


def test_hmac_reproduces_the_cloudmon_reporter_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # The documented secret is short: said once in the log, never a warning (filterwarnings
    # = error would fail the test), and the token is still the reporter's.
    token = reporter_source(monkeypatch, {"stackmon": "dummy"}).sign(())
    assert token.value == REPORTER_TOKEN  # byte for byte
    assert token.expires_at is None and token.kid is None


def test_claims_are_serialized_sorted_compact_and_utf8_whatever_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As serde writes a BTreeMap: the same claims in another order, the same bytes."""
    forward = reporter_source(monkeypatch, {"a": 1, "b": "ü"}).sign(())
    backward = reporter_source(monkeypatch, {"b": "ü", "a": 1}).sign(())
    assert (
        forward.value
        == backward.value
        == (
            "eyJhbGciOiJIUzI1NiJ9.eyJhIjoxLCJiIjoiw7wifQ.tQEWEYRYWo8Z-RcY70BZ2LLFbSWD1tz-CjQFL8TgYdE"
        )
    )
    assert base64.urlsafe_b64decode(forward.value.split(".")[1] + "==") == (
        '{"a":1,"b":"ü"}'.encode()
    )


def test_typ_backdate_and_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(1_800_000_000)
    source = hmac_source(
        monkeypatch, clock, claims={"sub": "x"}, lifetime=300, backdate=30, not_before=True
    )
    token = source.sign(())
    header = jwt.get_unverified_header(token.value)
    claims = jwt.decode(token.value, options={"verify_signature": False})
    assert header["typ"] == "JWT" and list(header) == sorted(header)
    assert claims["iat"] == claims["nbf"] == 1_800_000_000 - 30
    assert claims["exp"] == 1_800_000_000 + 300
    assert token.issued_at == 1_800_000_000 - 30
    plain = hmac_source(monkeypatch, clock, claims={"sub": "x"}, lifetime=300).sign(())
    assert "nbf" not in jwt.decode(plain.value, options={"verify_signature": False})


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_claims_lifetime_audience_and_kid(
    monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    clock = FakeClock(1_800_000_000)
    source = hmac_source(
        monkeypatch,
        clock,
        algorithm=algorithm,
        claims={"team": "a"},
        lifetime=300,
        audience="dynamic",
    )
    token = source.sign(("https://api.example.com",))
    claims = jwt.decode(
        token.value,
        SECRET,
        algorithms=[algorithm],
        audience="https://api.example.com",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        "team": "a",
        "iat": 1_800_000_000,
        "exp": 1_800_000_300,
        "aud": "https://api.example.com",
    }
    assert jwt.get_unverified_header(token.value) == {
        "alg": algorithm,
        "typ": "JWT",
        "kid": fingerprint(SECRET),
    }
    assert token.expires_at == 1_800_000_300 and token.kid == fingerprint(SECRET)


def test_hmac_literal_kid(monkeypatch: pytest.MonkeyPatch) -> None:
    token = hmac_source(monkeypatch, kid="dashboard-2026").sign(())
    assert jwt.get_unverified_header(token.value)["kid"] == "dashboard-2026"


def test_hmac_short_secret_warns_once_with_fingerprint_not_secret(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("SHORT", "tiny")
    source = HmacSource("r", HmacTokenConfig(secret=SecretRef(kind="env", name="SHORT")))
    source.check()
    for _ in range(3):
        source.sign(())
    assert caplog.text.count("is 4 bytes, below the 32") == 1
    assert fingerprint("tiny") in caplog.text and "tiny " not in caplog.text


def test_missing_env_secret_names_the_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    source = HmacSource("r", HmacTokenConfig(secret=SecretRef(kind="env", name="NOPE")))
    with pytest.raises(MissingSecret, match="env var NOPE is not set or empty") as info:
        source.check()
    assert info.value.error_class == "missing_secret"


def test_secret_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("first-secret\n")
    now = [0.0]
    reader = SecretReader(SecretRef(kind="file", name=str(path)), monotonic=lambda: now[0])
    assert reader.read() == b"first-secret"  # the trailing newline is not part of it
    path.write_text("second-secret-longer")
    assert reader.read() == b"first-secret"  # not re-stat-ed within a second
    now[0] = 1.5
    assert reader.read() == b"second-secret-longer"
    assert reader.fingerprint() == fingerprint("second-secret-longer")
    path.unlink()
    now[0] = 3.0
    with pytest.raises(MissingSecret, match=f"file {path} does not exist"):
        reader.read()


def test_static_token_and_its_expiry(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "token"
    value = jwt.encode({"exp": int(clock() + 60)}, "k" * 32, algorithm="HS256")
    path.write_text(value + "\n")
    source = StaticSource(
        "gw", StaticTokenConfig(value=SecretRef(kind="file", name=str(path))), clock=clock
    )
    token = asyncio.run(source.fetch(()))
    assert token.value == value and token.expires_at == clock() + 60
    clock.advance(61)
    with pytest.raises(TokenUnavailable, match=f"static token from file {path}") as info:
        asyncio.run(source.fetch(()))
    assert info.value.error_class == "expired"
    assert value not in str(info.value)


def test_static_token_with_control_characters_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW", "bad\x01token")
    source = StaticSource("gw", StaticTokenConfig(value=SecretRef(kind="env", name="GW")))
    with pytest.raises(TokenUnavailable) as info:
        asyncio.run(source.fetch(()))
    assert info.value.error_class == "invalid_token"


def _sts(call: Any, **settings: Any) -> StsSource:
    cfg = StsTokenConfig(audience="dynamic", tags=(("team", "payments"),), **settings)
    return StsSource("partner_api", cfg, call=call)


def test_sts_sends_the_configured_request_and_takes_expiration() -> None:
    seen: dict[str, Any] = {}
    token = jwt.encode(
        {"exp": 1_900_000_000, "aud": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "sts-kid"}
    )

    def call(**kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        return {"WebIdentityToken": token, "Expiration": datetime.fromtimestamp(1_800_000_300, UTC)}

    result = asyncio.run(
        _sts(call, signing_algorithm="ES384", duration=900).fetch(
            ("https://a.example", "https://b.example")
        )
    )
    assert seen == {
        "Audience": ["https://a.example", "https://b.example"],
        "SigningAlgorithm": "ES384",
        "DurationSeconds": 900,
        "Tags": [{"Key": "team", "Value": "payments"}],
    }
    assert result.expires_at == 1_800_000_300  # STS's Expiration wins over the JWT's exp
    assert result.kid == "sts-kid" and result.source == "sts"


def test_sts_sends_scope_and_subject_mode_only_when_set() -> None:
    seen: dict[str, Any] = {}
    token = jwt.encode({"exp": 1_900_000_000}, "k" * 32, algorithm="HS256")

    def call(**kwargs: Any) -> dict[str, Any]:
        seen.clear()
        seen.update(kwargs)
        return {"WebIdentityToken": token}

    asyncio.run(_sts(call, scope="read write", subject_mode="OriginIdentity").fetch(("a",)))
    assert (seen["Scope"], seen["SubjectMode"]) == ("read write", "OriginIdentity")
    asyncio.run(_sts(call).fetch(("a",)))
    assert "Scope" not in seen and "SubjectMode" not in seen


def _client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "nope"}}, "GetWebIdentityToken"
    )


@pytest.mark.parametrize(
    ("error", "error_class", "hint"),
    [
        (
            _client_error("OutboundWebIdentityFederationDisabledException"),
            "OutboundWebIdentityFederationDisabledException",
            "outbound identity federation",
        ),
        (_client_error("AccessDenied"), "AccessDenied", "sts:GetWebIdentityToken"),
        (_client_error("Throttling"), "Throttling", "throttling"),
        (
            botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
            "timeout",
            "read_timeout",
        ),
        (
            botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
            "timeout",
            "connect_timeout",
        ),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            "transport",
            "endpoint_url",
        ),
        (botocore.exceptions.NoCredentialsError(), "missing_secret", "credentials"),
        (ValueError("odd"), "internal", None),
    ],
)
def test_sts_errors_become_error_classes_with_a_hint(
    error: Exception, error_class: str, hint: str | None
) -> None:
    def call(**kwargs: Any) -> dict[str, Any]:
        raise error

    with pytest.raises(TokenUnavailable) as info:
        asyncio.run(_sts(call).fetch(("https://a.example",)))
    assert info.value.error_class == error_class
    assert classify(error)[0] == error_class
    if hint:
        assert hint in str(info.value)


def test_build_all_reports_a_missing_required_secret_by_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MISSING_ONE", raising=False)
    ref = SecretRef(kind="env", name="MISSING_ONE")
    routes = (
        Route("opt", (HostPattern.parse("a"),), HmacTokenConfig(secret=ref, optional=True)),
        Route("req", (HostPattern.parse("b"),), StaticTokenConfig(value=ref)),
    )
    with pytest.raises(ConfigError, match=r"routes\[1\]\.token\.value: env var MISSING_ONE"):
        sources.build_all(Config(routes=routes, cache=CacheSettings()))
    built, notes = sources.build_all(Config(routes=routes[:1]))
    assert set(built) == {"opt"} and "optional" in notes[0]


def test_build_all_needs_an_aws_region_for_sts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    route = Route(
        "sts",
        (HostPattern.parse("a"),),
        StsTokenConfig(audience=("x",), endpoint_url="http://127.0.0.1:9"),
    )
    with pytest.raises(ConfigError, match=r"routes\[0\]\.token: no AWS region"):
        sources.build_all(Config(routes=(route,)))


def test_boto3_is_imported_only_when_a_route_needs_it(tmp_path: Path) -> None:
    """A gateway without an STS route does not pay for importing boto3 at start."""
    config = tmp_path / "gw.yaml"
    config.write_text(
        "version: 1\nroutes:\n  - {name: a, hosts: [a], token: {type: static, "
        "value: {env: HOME}}}\n"
    )
    script = textwrap.dedent(f"""
        import sys
        from authgw import config, sources
        import authgw.addon, authgw.cli, authgw.metrics
        sources.build_all(config.load({str(config)!r}))
        print("boto3" in sys.modules, "botocore" in sys.modules)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_a_kept_secret_whose_first_read_fails_does_not_stop_the_start(tmp_path: Path) -> None:
    ref = SecretRef(kind="cmd", name=f"cat {tmp_path / 'not-yet'}", timeout=2)
    route = Route("kept", (HostPattern.parse("k"),), HmacTokenConfig(secret=ref))
    built, notes = sources.build_all(Config(routes=(route,)))
    assert "kept" in built and notes and "answering 502 until a read succeeds" in notes[0]
    with pytest.raises(MissingSecret):
        built["kept"].cache_params()


def test_a_closed_sts_source_stops_its_threads_and_starts_no_call() -> None:
    token = jwt.encode({"exp": 1_900_000_000}, "k" * 32, algorithm="HS256")
    calls: list[str] = []

    def call(**kwargs: Any) -> dict[str, Any]:
        calls.append(threading.current_thread().name)
        return {"WebIdentityToken": token}

    source = _sts(call)
    asyncio.run(source.fetch(("https://a.example",)))
    assert calls and calls[0].startswith("authgw-sts")
    assert source._executor is not None
    threads = list(source._executor._threads)
    source.close()
    for thread in threads:
        thread.join(10)
    assert threads and not [t for t in threads if t.is_alive()]
    with pytest.raises(TokenUnavailable) as info:
        asyncio.run(source.fetch(("https://a.example",)))
    assert info.value.error_class == "internal" and len(calls) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e16, "1e16"),
        (1.5e16, "1.5e16"),
        (1e15, "1000000000000000.0"),
        (1e-7, "1e-7"),
        (1e-6, "1e-6"),
        (1e-5, "0.00001"),
        (0.000123, "0.000123"),
        (0.1, "0.1"),
        (100.0, "100.0"),
        (123456.789, "123456.789"),
        (-2.5e-10, "-2.5e-10"),
        (0.0, "0.0"),
        (1.7976931348623157e308, "1.7976931348623157e308"),
        (5e-324, "5e-324"),
        (float("inf"), "null"),
    ],
)
def test_floats_are_written_as_serde_json_writes_them(value: float, text: str) -> None:
    """ryu's layout (serde_json 1.x): the Rust reporter's token has these bytes."""
    assert serde_float(value) == text


def test_a_float_claim_is_signed_as_the_rust_reporter_signs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOAT_SECRET", "f" * 32)
    cfg = HmacTokenConfig(
        secret=SecretRef(kind="env", name="FLOAT_SECRET"),
        claims={"big": 1e16, "small": 1e-7, "n": 2},
        lifetime=None,
        typ=None,
    )
    token = HmacSource("r", cfg).sign(())
    payload = token.value.split(".")[1]
    assert base64.urlsafe_b64decode(payload + "==") == b'{"big":1e16,"n":2,"small":1e-7}'
