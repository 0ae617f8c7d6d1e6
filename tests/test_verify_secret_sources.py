"""Secret sources, the CLI's SRC: how each form parses, reads, and says why it cannot."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from authgw.tokens import fingerprint
from authgw.verify import SecretSource, SecretUnavailable
from tests.test_verify import SECRET, SECRET_FP

pytestmark = pytest.mark.usefixtures("isolated_aws_env")


@pytest.mark.parametrize(
    ("text", "kind", "target", "route"),
    [
        ("env:NAME", "env", "NAME", ""),
        ("file:/run/secret", "file", "/run/secret", ""),
        ("cmd:vault kv get -field=x a:b", "cmd", "vault kv get -field=x a:b", ""),
        ("config:gw.yaml#status_dashboard", "config", "gw.yaml", "status_dashboard"),
        ("config:dir#1/gw.yaml#r", "config", "dir#1/gw.yaml", "r"),
    ],
)
def test_secret_source_parse(text: str, kind: str, target: str, route: str) -> None:
    source = SecretSource.parse(text)
    assert (source.kind, source.target, source.route) == (kind, target, route)
    assert str(source) == text


@pytest.mark.parametrize("text", ["NAME", "env:", "vault:x", "config:gw.yaml", "config:#r"])
def test_secret_source_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        SecretSource.parse(text)


def test_secret_sources_read_like_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = SECRET.decode()
    monkeypatch.setenv("VERIFY_SECRET", value)
    (tmp_path / "secret").write_text(value + "\n")
    (tmp_path / "gw.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            routes:
              - name: internal
                hosts: [internal.example]
                token: {type: hmac, secret: {file: secret}}
              - name: gateway
                hosts: [gateway.example]
                token: {type: static, value: {env: VERIFY_SECRET}}
            """
        )
    )
    sources = [
        "env:VERIFY_SECRET",
        f"file:{tmp_path / 'secret'}",
        'cmd:printf "%s\\n" "$VERIFY_SECRET"',
        f"config:{tmp_path / 'gw.yaml'}#internal",
        f"config:{tmp_path / 'gw.yaml'}#gateway",
    ]
    for text in sources:
        got = SecretSource.parse(text).read()
        if got != SECRET:
            pytest.fail(f"{text} read {fingerprint(got)}, expected {SECRET_FP}", False)


def test_secret_sources_say_why_they_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERIFY_UNSET", raising=False)
    (tmp_path / "gw.yaml").write_text(
        "version: 1\nroutes:\n  - name: aws\n    hosts: [a.example]\n"
        "    token: {type: sts, audience: dynamic, region: us-east-1}\n"
    )
    cases = {
        "env:VERIFY_UNSET": "env var VERIFY_UNSET is not set or empty",
        f"file:{tmp_path / 'absent'}": "does not exist",
        "cmd:echo 'vault: permission denied' >&2; exit 3": (
            "command exited with status 3: vault: permission denied"
        ),
        "cmd:true": "command printed nothing",
        f"config:{tmp_path / 'gw.yaml'}#aws": "route aws is type sts: it has no shared secret",
        f"config:{tmp_path / 'gw.yaml'}#nope": "has no route nope (routes: aws)",
        f"config:{tmp_path / 'absent.yaml'}#r": "cannot read config file",
    }
    for text, says in cases.items():
        with pytest.raises(SecretUnavailable) as e:
            SecretSource.parse(text).read()
        assert says in str(e.value), text


def test_cmd_source_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(SecretUnavailable, match="did not finish within 0.2 s"):
        SecretSource.parse("cmd:sleep 5").read(timeout=0.2)
    assert time.monotonic() - started < 4
