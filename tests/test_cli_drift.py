"""authgw drift: secrets from several places compared by fingerprint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_helpers import (
    DIAG_CONFIG,
    DIAG_FP,
    DIAG_SECRET,
    DRIFTED_FP,
    DRIFTED_SECRET,
    run,
    write,
)

pytestmark = pytest.mark.usefixtures("isolated_aws_env")


def test_drift_agreeing_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    (tmp_path / "secret").write_text(DIAG_SECRET + "\n")
    (tmp_path / "static.txt").write_text(DIAG_SECRET)
    config = write(tmp_path, DIAG_CONFIG)
    sources = [
        "env:DIAG_SECRET",
        f"file:{tmp_path / 'secret'}",
        'cmd:printf "%s\\n" "$DIAG_SECRET"',
        f"config:{config}#status_dashboard",
        f"config:{config}#gateway",
    ]
    code, out, err = run(capsys, ["drift", *sources])
    assert code == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].split() == ["SOURCE", "FINGERPRINT", "BYTES"]
    assert len(lines) == len(sources) + 2
    for src, line in zip(sources, lines[1:-1], strict=True):
        assert line.startswith(src) and line.split()[-2:] == [DIAG_FP, "64"], line
    assert lines[-1] == f"all 5 sources agree ({DIAG_FP})"


def test_drift_differing_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    monkeypatch.setenv("DRIFTED_SECRET", DRIFTED_SECRET)
    code, out, _ = run(capsys, ["drift", "env:DIAG_SECRET", 'cmd:printf %s "$DRIFTED_SECRET"'])
    assert code == 1
    assert DIAG_FP in out and DRIFTED_FP in out
    assert out.splitlines()[-1] == "DRIFT: 2 different secrets among 2 sources"
    # a stray space in a file: the fingerprints differ, and a note says how
    (tmp_path / "secret").write_text(DIAG_SECRET + " \n")
    code, out, _ = run(capsys, ["drift", "env:DIAG_SECRET", f"file:{tmp_path / 'secret'}"])
    assert code == 1
    assert "differ only in leading or trailing whitespace" in out


def test_drift_unreadable_source_exits_2_and_says_which(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAG_SECRET", DIAG_SECRET)
    monkeypatch.delenv("DIAG_UNSET", raising=False)
    failing = "cmd:echo 'no vault token' >&2; exit 2"
    code, out, err = run(capsys, ["drift", "env:DIAG_SECRET", "env:DIAG_UNSET", failing])
    assert code == 2
    assert "authgw: cannot read env:DIAG_UNSET: env var DIAG_UNSET is not set or empty" in err
    assert f"authgw: cannot read {failing}: command exited with status 2: no vault token" in err
    assert re.search(r"^env:DIAG_UNSET +unreadable", out, re.M), out
    assert out.splitlines()[-1] == "cannot compare: 2 of 3 sources unreadable"
    code, out, err = run(capsys, ["drift", "env:DIAG_SECRET"])
    assert code == 2 and "two or more sources" in err
    code, out, err = run(capsys, ["drift", "env:DIAG_SECRET", "vault:x"])
    assert code == 2 and "unknown source 'vault'" in err
