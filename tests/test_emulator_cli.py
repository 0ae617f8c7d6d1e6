"""``authgw emulator`` (and its alias ``sts-emulator``): its options, what it prints, and
that boto3 and an OAuth2 client work with exactly what it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authgw import cli
from authgw.cli.emulator import cmd_emulator, oauth2_clients
from authgw.emulator import DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET
from tests.emulator_helpers import FORM_TYPE, STS_ENV_NAMES, basic_auth, http_answer, serving
from tests.test_verify import no_leak

pytestmark = pytest.mark.usefixtures("bare_aws_env")

SECRET = "cli-emulator-client-secret-value"


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["emulator", "sts-emulator"])
def test_emulator_and_its_alias_take_the_same_options(verb: str) -> None:
    args = cli.build_parser().parse_args(
        [verb, "--port", "9001", "--oauth2-client", "a:b", "--oauth2-client", "c:d"]
    )

    assert args.func is cmd_emulator
    assert (args.host, args.port, args.oauth2_clients) == ("127.0.0.1", 9001, None)
    assert args.oauth2_client == ["a:b", "c:d"]
    defaults = cli.build_parser().parse_args([verb])
    assert (defaults.port, defaults.oauth2_client) == (8090, [])


def test_clients_from_pairs_and_a_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"from-file": SECRET}))

    clients = oauth2_clients(["svc:pa:ss", "other:x"], str(path))

    assert clients == {"svc": "pa:ss", "other": "x", "from-file": SECRET}
    assert oauth2_clients([], None) is None  # the demo client
    path.write_text("{}")
    assert oauth2_clients([], str(path)) == {}  # no client at all


@pytest.mark.parametrize(
    ("pairs", "text", "says"),
    [
        pytest.param([SECRET], None, "expected ID:SECRET", id="no-colon"),
        pytest.param([":" + SECRET], None, "must not be empty", id="no-id"),
        pytest.param(["svc:"], None, "must not be empty", id="no-secret"),
        pytest.param(["svc:" + SECRET, "svc:x"], None, "given twice", id="pair-twice"),
        pytest.param(["svc:x"], json.dumps({"svc": SECRET}), "given twice", id="pair-and-file"),
        pytest.param([], "[1, 2]", "expected a JSON object", id="file-list"),
        pytest.param([], json.dumps({"svc": 1}), "expected a JSON object", id="file-number"),
        pytest.param([], '{"svc": "' + SECRET, "cannot read", id="file-broken-json"),
        pytest.param([], None, "cannot read", id="file-missing"),
    ],
)
def test_bad_client_options_exit_2_without_quoting_a_secret(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pairs: list[str],
    text: str | None,
    says: str,
) -> None:
    def serve(**kwargs: object) -> None:
        pytest.fail("the emulator started despite bad client options")

    monkeypatch.setattr("authgw.emulator.serve", serve)
    path = tmp_path / "clients.json"
    if text is not None:
        path.write_text(text)
    argv = ["emulator", *(arg for pair in pairs for arg in ("--oauth2-client", pair))]
    if text is not None or not pairs:  # without pairs the file is under test, even if absent
        argv += ["--oauth2-clients", str(path)]

    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert says in err and err.startswith("authgw emulator: ")
    no_leak(out + err, SECRET)


def test_a_file_that_is_not_utf8_is_named_not_quoted(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_bytes(b'{"svc": "\xffsecret"}')

    with pytest.raises(ValueError, match="not UTF-8") as excinfo:
        oauth2_clients([], str(path))
    assert "secret" not in str(excinfo.value).replace(str(path), "")


# -- running it ---------------------------------------------------------------------------------


def post_token(url: str, client: tuple[str, str]) -> int:
    body = b"grant_type=client_credentials"
    headers = {"Content-Type": FORM_TYPE, "Authorization": basic_auth(*client)}
    return http_answer("POST", url, body, headers).status


@pytest.mark.parametrize("verb", ["emulator", "sts-emulator"])
def test_prints_sts_and_oauth2_settings_that_work(verb: str) -> None:
    with serving("-m", "authgw.cli", verb, "--port", "0") as (settings, lines):
        assert set(settings) == STS_ENV_NAMES | {
            "AUTHGW_OAUTH2_TOKEN_URL",
            "AUTHGW_OAUTH2_CLIENT_ID",
            "AUTHGW_OAUTH2_CLIENT_SECRET",
        }
        url = settings["AWS_ENDPOINT_URL_STS"]
        assert url in lines[0]
        assert settings["AUTHGW_OAUTH2_TOKEN_URL"] == url + "/oauth2/token"
        assert settings["AUTHGW_OAUTH2_CLIENT_ID"] == DEMO_OAUTH2_CLIENT_ID
        assert settings["AUTHGW_OAUTH2_CLIENT_SECRET"] == DEMO_OAUTH2_CLIENT_SECRET
        # The secret is printed once, as the assignment a user can eval, and nowhere else.
        assert sum(DEMO_OAUTH2_CLIENT_SECRET in line for line in lines) == 1
        client = (settings["AUTHGW_OAUTH2_CLIENT_ID"], settings["AUTHGW_OAUTH2_CLIENT_SECRET"])
        assert post_token(settings["AUTHGW_OAUTH2_TOKEN_URL"], client) == 200
        # boto3 with the AWS_* variables: test_emulator_server's test of serve().


def test_registered_clients_replace_the_demo_one_and_their_secrets_stay_unprinted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"from-file": SECRET + "-2"}))

    args = ("--oauth2-client", f"svc:{SECRET}", "--oauth2-clients", str(path))
    with serving("-m", "authgw.cli", "emulator", "--port", "0", *args) as (settings, lines):
        no_leak("\n".join(lines), SECRET, DEMO_OAUTH2_CLIENT_SECRET)
        assert lines[-1] == "# OAuth2 clients (secrets as given): svc, from-file"
        assert "AUTHGW_OAUTH2_CLIENT_ID" not in settings
        url = settings["AUTHGW_OAUTH2_TOKEN_URL"]
        assert post_token(url, ("svc", SECRET)) == 200
        assert post_token(url, ("from-file", SECRET + "-2")) == 200
        assert post_token(url, (DEMO_OAUTH2_CLIENT_ID, DEMO_OAUTH2_CLIENT_SECRET)) == 401
