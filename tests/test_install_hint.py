from __future__ import annotations

from pathlib import Path

import pytest

from authgw import install_hint


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("/home/u/.local/share/pipx/venvs/mitmproxy", "pipx inject --force mitmproxy "),
        ("/opt/homebrew/Cellar/mitmproxy/12.3.1/libexec", "/py -m pip install "),
        ("/srv/venv", "/py -m pip install "),
    ],
)
def test_the_command_fits_how_mitmproxy_was_installed(prefix: str, expected: str) -> None:
    command = install_hint.install_command(prefix, "/py")
    assert command.startswith(expected)
    assert command.endswith(install_hint.checkout()) or install_hint.checkout() in command


def test_the_message_names_the_distribution_not_the_module() -> None:
    message = install_hint.missing_dependency(ModuleNotFoundError("No module", name="jwt.api"))
    assert "'PyJWT' is missing" in message and "\n" not in message


def test_a_dependency_older_than_the_floor_is_called_too_old() -> None:
    error = ImportError("cannot import name 'Options' from 'jwt.types'", name="jwt.types")
    message = install_hint.missing_dependency(error)
    assert "'PyJWT' is too old in this mitmproxy's environment" in message
    assert "\n" not in message


def test_a_pipx_venv_is_known_by_its_metadata_file(tmp_path: Path) -> None:
    env = tmp_path / "venvs" / "mitmproxy"
    env.mkdir(parents=True)
    (env / "pipx_metadata.json").write_text("{}")
    command = install_hint.install_command(str(env), "/py")
    assert command.startswith("pipx inject --force mitmproxy ")


def test_a_uv_venv_is_known_by_its_pyvenv_cfg(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\nuv = 0.13.9\n")
    assert install_hint.install_command(str(tmp_path), "/py").startswith(
        "uv tool install mitmproxy --with "
    )
