"""authgw run, check and decode, and what the command line accepts."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from authgw import cli
from authgw.tokens import fingerprint
from tests.cli_helpers import write

pytestmark = pytest.mark.usefixtures("isolated_aws_env")

SECRET = "cli-test-secret-value-with-32-bytes-or-more"

CONFIG = """\
    version: 1
    routes:
      - name: status_dashboard
        hosts: [status-dashboard.example.com, "*.dash.example"]
        token: {type: hmac, secret: {env: CLI_SECRET}, claims: {stackmon: dummy}}
      - name: gateway
        hosts: [gateway.internal]
        token: {type: static, value: {file: token.txt}}
"""


def test_check_lists_routes_with_fingerprints_never_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLI_SECRET", SECRET)
    (tmp_path / "token.txt").write_text("static-token-for-cli-test\n")
    assert cli.main(["check", "-c", str(write(tmp_path, CONFIG))]) == 0
    out = capsys.readouterr()
    assert "OK, 2 route(s)" in out.out
    assert f"env CLI_SECRET {fingerprint(SECRET)}" in out.out
    assert fingerprint("static-token-for-cli-test") in out.out
    assert "status-dashboard.example.com, *.dash.example" in out.out
    assert SECRET not in out.out + out.err
    assert "static-token-for-cli-test" not in out.out + out.err


def test_check_exits_1_with_the_field_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLI_SECRET", raising=False)
    (tmp_path / "token.txt").write_text("x")
    assert cli.main(["check", "-c", str(write(tmp_path, CONFIG))]) == 1
    assert "routes[0].token.secret: env var CLI_SECRET is not set" in capsys.readouterr().err
    bad = write(tmp_path, CONFIG.replace("type: hmac,", "type: hmac, algorithm: HS999,"))
    assert cli.main(["check", "-c", str(bad)]) == 1
    assert "routes[0].token.algorithm: is not one of" in capsys.readouterr().err


def test_check_warns_about_literal_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "token.txt").write_text("x")
    path = write(tmp_path, CONFIG.replace("{env: CLI_SECRET}", "literal-secret-in-file-xyz"))
    assert cli.main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr()
    assert "warning: routes[0].token.secret is a literal" in out.err
    assert "literal-secret-in-file-xyz" not in out.out + out.err


def test_decode_shows_header_claims_and_times(capsys: pytest.CaptureFixture[str]) -> None:
    token = jwt.encode({"stackmon": "dummy", "exp": 4_102_444_800}, SECRET, algorithm="HS256")
    assert cli.main(["decode", f"Bearer {token}"]) == 0
    out = capsys.readouterr().out
    assert '"stackmon": "dummy"' in out and '"alg": "HS256"' in out
    assert "exp: 2100-01-01 00:00:00 UTC (in " in out
    assert "not verified" in out


def test_decode_reads_stdin_and_rejects_non_jwt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("not-a-jwt\n"))
    assert cli.main(["decode", "-"]) == 2
    assert "not a JWT" in capsys.readouterr().err


def test_run_builds_the_mitmdump_command(tmp_path: Path) -> None:
    argv = cli.mitmdump_argv(tmp_path / "gw.yaml", ["--mode", "reverse:http://127.0.0.1:1"])
    assert argv[3:5] == ["-s", str(cli.addon_script())]
    assert cli.addon_script().name == "auth_gateway.py" and cli.addon_script().exists()
    assert argv[5:] == [
        "--set",
        f"authgw_config={tmp_path / 'gw.yaml'}",
        "--listen-host",
        "127.0.0.1",  # loopback unless the user's arguments (after it) say otherwise
        "--mode",
        "reverse:http://127.0.0.1:1",
    ]


def test_run_refuses_an_invalid_config_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "-c", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("authgw_config: ") and "cannot read config file" in err
    assert err.count("\n") == 1


def test_passthrough_args_only_for_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["decode", "x", "--", "-v"]) == 2


def test_version_and_run_help_show_the_passthrough_form(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("authgw ")
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "[-- MITMDUMP_ARGS...]" in capsys.readouterr().out


def test_mitmdump_arguments_before_the_separator_are_explained(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "-c", "gateway.yaml", "--listen-port", "8081"])
    assert exited.value.code == 2
    assert "mitmdump's go after --: authgw run -c FILE -- ARGS" in capsys.readouterr().err


def test_a_reader_that_leaves_is_no_traceback(tmp_path: Path) -> None:
    """`authgw decode BIG | head -c 1`: the pipe closes under the writer."""
    big = tmp_path / "big.jwt"
    big.write_text(jwt.encode({"pad": "x" * 500_000}, "k" * 32, algorithm="HS256"))
    shell = f"{sys.executable} -m authgw.cli decode - < {big} | head -c 1 >/dev/null"
    done = subprocess.run(
        ["/bin/sh", "-c", shell], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_env_prints_the_variables_for_a_running_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    confdir = tmp_path / "confdir"
    confdir.mkdir()
    (confdir / "mitmproxy-ca-cert.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "version: 1\nroutes:\n  - {name: api, hosts: [api.example], "
        "placeholder: ph-api-0123456789abcdef, placeholder_env: API_KEY, "
        "token: {type: static, value: {env: REAL_KEY}}}\n"
    )
    argv = ["env", "-c", str(config), "--port", "8123", "--confdir", str(confdir)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert "export HTTPS_PROXY=http://127.0.0.1:8123" in out
    assert "export API_KEY=ph-api-0123456789abcdef" in out
    assert f"export SSL_CERT_FILE={confdir / 'ca-bundle.pem'}" in out
    assert "unset REAL_KEY" in out and "unset NO_PROXY" in out


def test_exec_removes_aws_credentials_when_a_secret_lives_in_aws(tmp_path: Path) -> None:
    from authgw.cli.sandbox import secret_variables
    from authgw.config import load

    config = tmp_path / "gw.yaml"
    config.write_text(
        "version: 1\nroutes:\n  - {name: api, hosts: [api.example], "
        "token: {type: static, value: {aws_secretsmanager: prod/key}}}\n"
    )
    names = secret_variables(load(config), ["VAULT_TOKEN"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"} <= names
    assert "VAULT_TOKEN" in names  # --unset, for what a cmd: source reads
