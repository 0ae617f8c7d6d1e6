"""The README's first command: the built-in demo runs, and what it shows holds."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.harness import REPO


def test_the_demo_shows_every_token_valid_and_the_placeholder_kept_home() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.count("signature: valid") == 4, out  # hmac, sts, static, oauth2
    assert "INVALID" not in out
    assert out.count("its echo reached the client as: Bearer <authgw redacted sha256:") == 3
    # the static route has a placeholder: an echo gives the client that instead
    assert "its echo reached the client as: Bearer ph-demo-gateway-key-0001" in out
    assert "the file's token: True" in out
    assert "-> HTTP 403 credential elsewhere" in out
    assert "the emulator checked the signature with botocore: valid" in out
