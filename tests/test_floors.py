"""The dependency floors cannot drift: pyproject's lower bounds equal .ci/minimums.txt (which
CI installs exactly and runs the smoke tests on), and every package the code imports is
declared."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ADDONS = ROOT / "addons"


def declared() -> list[Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(line) for line in data["project"]["dependencies"]]


def floor(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return floors[0] if len(floors) == 1 else None


def minimums() -> dict[str, Version]:
    """.ci/minimums.txt: name -> the version it pins with ``==``."""
    pins: dict[str, Version] = {}
    for line in (ROOT / ".ci" / "minimums.txt").read_text(encoding="utf-8").splitlines():
        line = line.partition("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert spec.operator == "==", f".ci/minimums.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def test_every_dependency_has_one_floor_and_minimums_pin_exactly_it() -> None:
    pins = minimums()
    floors = {}
    for requirement in declared():
        version = floor(requirement)
        assert version is not None, f"pyproject: {requirement} needs exactly one >= lower bound"
        floors[canonicalize_name(requirement.name)] = version
    assert pins == floors, "pyproject's lower bounds and .ci/minimums.txt differ"


def imported_top_level_names() -> set[str]:
    names = set()
    for path in ADDONS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names


def test_every_third_party_package_the_code_imports_is_declared() -> None:
    own = {p.stem for p in ADDONS.glob("*.py")} | {p.name for p in ADDONS.iterdir() if p.is_dir()}
    third_party = imported_top_level_names() - set(sys.stdlib_module_names) - own - {"__future__"}
    distributions = importlib.metadata.packages_distributions()
    names = {canonicalize_name(r.name) for r in declared()}
    undeclared = {
        module: distributions.get(module, ["<not installed>"])
        for module in sorted(third_party)
        if not names & {canonicalize_name(d) for d in distributions.get(module, [])}
    }
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"
