"""The CLI's diagnosis verbs in tests: their secrets and config, and a runner that fails if
a secret or token reaches the output."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from authgw import cli
from authgw.tokens import fingerprint
from tests.test_verify import no_leak


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# `run` fails, naming fingerprints only, if a secret or token leaked into the output; the
# assertions after it see only checked text. No `assert` calls a function on a secret or a
# token: pytest would print the call's arguments with the failure.

DIAG_SECRET = "cli-diag-secret-" + "s" * 48  # 64 bytes: PyJWT does not warn
DRIFTED_SECRET = "cli-diag-secret-" + "d" * 48
AWS_SECRET = "cli-test-dummy-aws-secret"
DIAG_FP = fingerprint(DIAG_SECRET)
DRIFTED_FP = fingerprint(DRIFTED_SECRET)
STATIC_TOKEN = "static-opaque-token-for-cli-tests"
STATIC_FP = fingerprint(STATIC_TOKEN)

DIAG_CONFIG = """\
    version: 1
    routes:
      - name: status_dashboard
        hosts: [status-dashboard.example.com, "*.dash.example:8443"]
        token:
          type: hmac
          secret: {env: DIAG_SECRET}
          claims: {stackmon: dummy}
          lifetime: 300
          audience: dynamic
      - name: gateway
        hosts: [gateway.internal]
        token: {type: static, value: {file: static.txt}}
"""


def run(capsys: pytest.CaptureFixture[str], argv: list[str], *secrets: str) -> tuple[int, str, str]:
    """``authgw argv`` -> (exit status, stdout, stderr), none of ``secrets`` in the output."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    no_leak(out + err, DIAG_SECRET, DRIFTED_SECRET, AWS_SECRET, *secrets)
    return code, out, err
