"""The addon file loaded by a mitmproxy that lacks authgw's dependencies (pipx, uv,
Homebrew): one line naming the package and the command that adds it, and mitmdump exits
non-zero instead of running without the gateway."""

from __future__ import annotations

import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import pytest

ADDON = Path(__file__).resolve().parents[2] / "addons" / "auth_gateway.py"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bare_mitmdump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mitmdump from a new virtualenv holding mitmproxy (this one's version) and nothing else."""
    where = tmp_path_factory.mktemp("bare-mitmproxy")
    venv.create(where, with_pip=True)
    subprocess.run(
        [
            where / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"mitmproxy=={version('mitmproxy')}",
        ],
        check=True,
        timeout=300,
    )
    return where / "bin" / "mitmdump"


def test_a_mitmproxy_without_the_dependencies_stops_with_one_line(
    bare_mitmdump: Path, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("version: 1\nroutes: []\n")
    done = subprocess.run(
        [
            bare_mitmdump,
            "-s",
            ADDON,
            "--set",
            f"authgw_config={config}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "is missing from this mitmproxy" in line]
    assert len(lines) == 1, output
    assert f"{bare_mitmdump.parent / 'python'}" in lines[0] or "-m pip install" in lines[0]
    assert str(ADDON.parents[1]) in lines[0]
    assert sys.prefix not in lines[0]
