"""What to tell a user whose mitmproxy lacks one of authgw's dependencies.

mitmproxy installed with pipx, uv, Homebrew or as a standalone binary has its own
Python environment, which does not hold PyJWT, cachetools and the rest. Standard
library only: this module is imported exactly when a dependency is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# import name -> the distribution that brings it
_DISTRIBUTIONS = {
    "jwt": "PyJWT",
    "cachetools": "cachetools",
    "prometheus_client": "prometheus-client",
    "boto3": "boto3",
    "botocore": "boto3",
    "ruamel": "ruamel.yaml",
    "tornado": "tornado",
    "ahocorasick": "pyahocorasick",
}


def checkout() -> str:
    """The authgw checkout this file lies in (the directory holding pyproject.toml)."""
    root = Path(__file__).resolve().parents[2]
    return str(root) if (root / "pyproject.toml").is_file() else "<the authgw checkout>"


def install_command(prefix: str = sys.prefix, executable: str = sys.executable) -> str:
    """The command that adds authgw and its dependencies to the running mitmproxy."""
    here = checkout()
    env = Path(prefix)
    if getattr(sys, "frozen", False):
        return (
            "the standalone mitmproxy binaries cannot load other packages: install mitmproxy "
            f"with pipx, uv or pip instead, then add {here} to it"
        )
    if (env / "pipx_metadata.json").is_file() or "pipx" in env.parts:
        return f"pipx inject --force {env.name} {here}"  # --force: again after an earlier inject
    if (env / "uv-receipt.toml").is_file() or _made_by_uv(env):
        with_it = f"--with {here}"
        return f"uv tool install mitmproxy {with_it} (or: uvx --from mitmproxy {with_it} mitmdump)"
    return f"{executable} -m pip install {here}"


def _made_by_uv(env: Path) -> bool:
    """uv (``uvx``, ``uv tool``) writes its version into the venv's pyvenv.cfg; it has no pip."""
    try:
        lines = (env / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return False
    return any(line.replace(" ", "").startswith("uv=") for line in lines)


def missing_dependency(error: ImportError) -> str:
    """One line: the missing (or too old) package and the command that adds it."""
    module = (error.name or "?").partition(".")[0]
    package = _DISTRIBUTIONS.get(module, module)
    if isinstance(error, ModuleNotFoundError):
        problem = "is missing from"
    else:  # "cannot import name X from Y": installed, older than pyproject.toml's floor
        problem = "is too old in"
    return (
        f"authgw: the Python package {package!r} {problem} this mitmproxy's environment "
        f"({sys.prefix}); add authgw's dependencies with: {install_command()}"
    )
