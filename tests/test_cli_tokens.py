"""authgw token, decode and verify: the token the gateway would inject, and why one checks
out or not."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authgw import cli
from authgw.emulator import StsEmulator
from authgw.tokens import fingerprint
from tests.cli_helpers import (
    AWS_SECRET,
    DIAG_CONFIG,
    DIAG_FP,
    DIAG_SECRET,
    DRIFTED_FP,
    DRIFTED_SECRET,
    STATIC_FP,
    STATIC_TOKEN,
    run,
    write,
)
from tests.test_verify import free_port, no_leak, sts_token

pytestmark = pytest.mark.usefixtures("isolated_aws_env")


@pytest.fixture
def diag_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    (tmp_path / "static.txt").write_text(STATIC_TOKEN + "\n")
    return write(tmp_path, DIAG_CONFIG)


# -- token


def test_token_prints_the_hmac_token_the_gateway_would_inject(
    diag_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, ["token", "status-dashboard.example.com", "-c", str(diag_config)])
    assert code == 0, err
    token = out.strip()
    no_leak(err, token)
    claims = jwt.decode(token, DIAG_SECRET, algorithms=["HS256"], options={"verify_aud": False})
    header = jwt.get_unverified_header(token)
    assert claims["stackmon"] == "dummy"
    assert claims["aud"] == "https://status-dashboard.example.com"  # dynamic: scheme + host
    assert claims["exp"] - claims["iat"] == 300
    assert header["kid"] == DIAG_FP
    assert "route status_dashboard (hmac), header Authorization" in err
    assert f"kid {DIAG_FP}" in err


def test_token_decode_shows_claims_never_the_token(
    diag_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "x.dash.example:8443", "-c", str(diag_config), "--decode"]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert "eyJ" not in out + err  # no compact JWS anywhere
    assert out.startswith("route status_dashboard (hmac), header Authorization")
    assert '"stackmon": "dummy"' in out and f'"kid": "{DIAG_FP}"' in out
    assert '"aud": "https://x.dash.example"' in out  # dynamic: without the port
    assert re.search(r"^exp: .* UTC \(in (4|5) min\)$", out, re.M), out


def test_token_for_a_static_route(diag_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ["token", "gateway.internal", "-c", str(diag_config)])
    assert code == 0, err
    if out != STATIC_TOKEN + "\n":
        pytest.fail(f"printed {fingerprint(out.strip())}, expected {STATIC_FP}", False)
    no_leak(err, STATIC_TOKEN)
    assert "route gateway (static)" in err and f"token {STATIC_FP}" in err

    argv = ["token", "gateway.internal", "-c", str(diag_config), "--decode"]
    code, out, err = run(capsys, argv, STATIC_TOKEN)
    assert code == 0, err
    assert f"token {STATIC_FP}" in out
    assert "not a JWT: an opaque token" in out


def test_token_for_a_host_without_route(
    diag_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, ["token", "nowhere.example", "-c", str(diag_config)])
    assert code == 1 and out == ""
    assert "no route for nowhere.example:443" in err and "forwards it without a token" in err
    # *.dash.example is for port 8443 only
    code, out, err = run(capsys, ["token", "a.dash.example", "-c", str(diag_config)])
    assert code == 1 and "no route for a.dash.example:443" in err
    code, out, err = run(capsys, ["token", "bad/host", "-c", str(diag_config)])
    assert code == 2 and "bad HOST" in err


def test_token_source_failures_name_the_error_class(
    diag_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = jwt.encode({"exp": int(time.time()) - 60}, DIAG_SECRET, algorithm="HS256")
    (diag_config.parent / "static.txt").write_text(expired)
    code, out, err = run(capsys, ["token", "gateway.internal", "-c", str(diag_config)], expired)
    assert code == 1 and out == ""
    assert "token unavailable (expired): route gateway: static token from file" in err
    assert re.search(r"expired 6\d s ago", err), err

    argv = ["token", "status-dashboard.example.com", "-c", str(diag_config), "--scheme", "http"]
    code, out, err = run(capsys, argv)
    assert code == 1
    assert "token unavailable (insecure_upstream): route status_dashboard: refusing" in err

    monkeypatch.delenv("DIAG_SECRET")
    code, out, err = run(capsys, ["token", "status-dashboard.example.com", "-c", str(diag_config)])
    assert code == 1
    assert "routes[0].token.secret: env var DIAG_SECRET is not set or empty" in err
    assert "(missing_secret)" in err


def test_token_for_an_sts_route_verifies_against_the_emulator(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sts: StsEmulator,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCLITEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    config = write(
        tmp_path,
        f"""\
        version: 1
        routes:
          - name: partner_api
            hosts: ["*.partner.example"]
            token:
              type: sts
              audience: dynamic
              signing_algorithm: ES384
              region: us-east-1
              endpoint_url: {sts.url}
        """,
    )
    code, out, err = run(capsys, ["token", "api.partner.example", "-c", str(config)])
    assert code == 0, err
    token = out.strip()
    no_leak(err, token)
    assert "route partner_api (sts)" in err and "audience https://api.partner.example" in err
    argv = ["verify", token, "--jwks", sts.issuer, "--audience", "https://api.partner.example"]
    code, out, err = run(capsys, argv, token)
    assert code == 0, err
    assert out.startswith("valid\n")


def test_token_for_an_optional_secret_that_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DIAG_SECRET", raising=False)
    config = write(
        tmp_path,
        DIAG_CONFIG.replace(
            "secret: {env: DIAG_SECRET}", "secret: {env: DIAG_SECRET}\n          optional: true"
        ),
    )
    (tmp_path / "static.txt").write_text(STATIC_TOKEN)
    code, out, err = run(capsys, ["token", "status-dashboard.example.com", "-c", str(config)])
    assert code == 1 and out == ""
    assert "token unavailable (missing_secret): route status_dashboard: env var DIAG_SECRET" in err
    assert "optional, so the gateway forwards requests without a token" in err


# -- verify


def diag_token(secret: str = DIAG_SECRET, **claims: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": fingerprint(secret)})


def test_verify_valid_with_secret_from_env_file_and_cmd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    (tmp_path / "secret").write_text(DIAG_SECRET + "\n")
    token = diag_token(aud="https://api.example", iss="authgw", exp=int(time.time()) + 600)
    for src in ("env:DIAG_SECRET", f"file:{tmp_path / 'secret'}", 'cmd:printf %s "$DIAG_SECRET"'):
        argv = ["verify", token, "--secret", src, "--audience", "https://api.example"]
        code, out, err = run(capsys, [*argv, "--issuer", "authgw"], token)
        assert code == 0, err
        assert out.splitlines()[:6] == [
            "valid",
            f"kid: {DIAG_FP}",
            "alg: HS256",
            f"secret: {src} {DIAG_FP}",
            "iss: authgw",
            "aud: https://api.example",
        ]
        assert re.search(r"^exp: .* UTC \(in (9|10) min\)$", out, re.M), out


def test_verify_reads_stdin_and_drops_bearer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    token = diag_token(aud="https://api.example")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"Bearer {token}\n"))
    code, out, err = run(capsys, ["verify", "-", "--secret", "env:DIAG_SECRET"], token)
    assert code == 0, err
    assert out.startswith("valid\n")
    assert "aud: https://api.example (not checked)" in out


def test_verify_drifted_secret_shows_kid_and_checked_fingerprint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    token = diag_token(DRIFTED_SECRET, stackmon="dummy")
    code, out, err = run(capsys, ["verify", token, "--secret", "env:DIAG_SECRET"], token)
    assert code == 1, err
    assert out.splitlines() == [
        f"invalid (bad_signature): signed with kid {DRIFTED_FP} but checked with secret "
        f"{DIAG_FP}: the secrets differ (drift)",
        f"kid: {DRIFTED_FP}",
        "alg: HS256",
        f"secret: env:DIAG_SECRET {DIAG_FP}",
    ]


@pytest.mark.parametrize(
    ("claims", "extra", "says"),
    [
        ({"exp": -180}, [], "invalid (expired): expired 3 min ago (at "),
        ({"nbf": 600}, [], "invalid (not_yet_valid): not valid before "),
        (
            {"aud": "https://a"},
            ["--audience", "https://b"],
            "invalid (wrong_audience): audience is https://a, expected https://b",
        ),
        (
            {"iss": "x"},
            ["--issuer", "authgw"],
            "invalid (wrong_issuer): issuer is x, expected authgw",
        ),
    ],
)
def test_verify_says_precisely_why_not(
    claims: dict[str, Any],
    extra: list[str],
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    now = int(time.time())
    token = diag_token(**{k: now + v if k in ("exp", "nbf") else v for k, v in claims.items()})
    code, out, err = run(capsys, ["verify", token, "--secret", "env:DIAG_SECRET", *extra], token)
    assert code == 1, err
    assert out.splitlines()[0].startswith(says)


def test_verify_refuses_alg_confusion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sts: StsEmulator
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    rs = sts_token(sts, "RS256")
    code, out, err = run(capsys, ["verify", rs, "--secret", "env:DIAG_SECRET"], rs)
    assert code == 1, err
    assert out.startswith("invalid (unsupported_algorithm): the token is RS256, a public-key")
    hs = diag_token()
    code, out, err = run(capsys, ["verify", hs, "--jwks", sts.issuer], hs)
    assert code == 1, err
    assert out.startswith("invalid (unsupported_algorithm): the token is HS256, an HMAC")


def test_verify_unusable_input_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    monkeypatch.delenv("DIAG_UNSET", raising=False)
    token = diag_token()
    cases = [
        (["not-a-jwt", "--secret", "env:DIAG_SECRET"], "not a JWT"),
        ([token, "--secret", "env:DIAG_UNSET"], "env:DIAG_UNSET: env var DIAG_UNSET is not set"),
        ([token, "--secret", f"file:{tmp_path / 'absent'}"], "does not exist"),
        ([token, "--secret", "cmd:exit 7"], "cmd:exit 7: command exited with status 7"),
        ([token, "--secret", "DIAG_SECRET"], "expected env:NAME, file:PATH, cmd:COMMAND"),
        ([token, "--jwks", f"http://127.0.0.1:{free_port()}"], "cannot fetch"),
        ([token, "--jwks", str(tmp_path / "absent.json")], "cannot read"),
    ]
    for args, says in cases:
        code, out, err = run(capsys, ["verify", *args], token)
        assert code == 2 and out == "" and says in err, says
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", "x.y.z", "--secret", "env:DIAG_SECRET", "--jwks", "x.json"])
    assert e.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("algorithm", ["RS256", "ES384"])
def test_verify_against_the_emulators_jwks(
    algorithm: str, sts: StsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = sts_token(sts, algorithm, audience="https://api.example")
    kid = jwt.get_unverified_header(token)["kid"]
    jwks_file = str(tmp_path / "jwks.json")
    Path(jwks_file).write_text(json.dumps(sts.jwks()))
    for jwks, origin in (
        (sts.issuer, sts.jwks_url),
        (sts.jwks_url, sts.jwks_url),
        (jwks_file, jwks_file),
    ):
        argv = ["verify", token, "--jwks", jwks, "--audience", "https://api.example"]
        code, out, err = run(capsys, [*argv, "--issuer", sts.issuer], token)
        assert code == 0, err
        assert out.splitlines()[:4] == [
            "valid",
            f"kid: {kid}",
            f"alg: {algorithm}",
            f"jwks: {origin} (kid {kid})",
        ]


def test_verify_jwks_expired_unknown_kid_bad_signature(
    capsys: pytest.CaptureFixture[str], sts: StsEmulator
) -> None:
    with StsEmulator(clock=lambda: time.time() - 3600) as past:
        expired = sts_token(past, "ES384")
        code, out, err = run(capsys, ["verify", expired, "--jwks", past.issuer], expired)
    assert code == 1, err
    assert out.startswith("invalid (expired): expired 55 min ago (at ")

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    real_kid = jwt.get_unverified_header(sts_token(sts, "RS256"))["kid"]
    unknown = jwt.encode({"sub": "x"}, key, algorithm="RS256", headers={"kid": "gone"})
    forged = jwt.encode({"sub": "x"}, key, algorithm="RS256", headers={"kid": real_kid})
    for token, says in (
        (unknown, f"invalid (unknown_kid): kid gone is not in {sts.jwks_url} (its kids: "),
        (forged, f"invalid (bad_signature): signature does not match key kid {real_kid} of "),
    ):
        code, out, err = run(capsys, ["verify", token, "--jwks", sts.issuer], token)
        assert code == 1, err
        assert out.startswith(says), says


def test_verify_leeway_forgives_a_clock_a_few_seconds_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    token = diag_token(exp=int(time.time()) - 3)
    code, out, _ = run(capsys, ["verify", token, "--secret", "env:DIAG_SECRET"], token)
    assert code == 1 and out.startswith("invalid (expired)")
    argv = ["verify", token, "--secret", "env:DIAG_SECRET", "--leeway", "30"]
    code, out, _ = run(capsys, argv, token)
    assert code == 0 and out.startswith("valid")


def test_token_for_a_sigv4_route_prints_headers_that_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from authgw.emulator.sigv4 import SigV4Credential, SigV4Verifier

    key, secret = "AKIDCLITEST0000", "cli-test-aws-secret-key-0123456789"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = write(
        tmp_path,
        """\
        version: 1
        routes:
          - name: aws
            hosts: [api.example]
            token: {type: sigv4, service: execute-api, region: eu-west-1}
        """,
    )
    argv = ["token", "api.example", "-c", str(path), "--method", "post", "--path", "/p?b=1&a=2"]
    code, out, err = run(capsys, [*argv, "--body", "{}"], secret)
    assert code == 0, err
    assert "route aws (sigv4), service execute-api, region eu-west-1" in err
    assert "https://api.example/p?a=2&b=1" in err
    headers = [tuple(line.split(": ", 1)) for line in out.splitlines()]
    assert [name for name, _ in headers] == ["Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"]
    verifier = SigV4Verifier([SigV4Credential(key, secret)])
    verdict = verifier.check(
        "POST", "https://api.example/p?a=2&b=1", [*headers, ("Host", "api.example")], b"{}"
    )
    assert verdict.ok, verdict.code


def test_token_for_a_principals_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(
        tmp_path,
        """\
        version: 1
        routes:
          - {name: agent, hosts: [agents.example], principals: [alice],
             token: {type: static, value: {file: static.txt}}}
        """,
    )
    (tmp_path / "static.txt").write_text(STATIC_TOKEN + "\n")
    code, _, err = run(capsys, ["token", "agents.example", "-c", str(config)])
    assert code == 1 and "no route for agents.example:443" in err  # an anonymous client
    argv = ["token", "agents.example", "-c", str(config), "--principal", "alice"]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert fingerprint(out.strip()) == STATIC_FP
