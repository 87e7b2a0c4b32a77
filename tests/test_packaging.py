"""The conda environment and pyproject.toml must list the same packages and bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def _split(requirement: str) -> tuple[str, str]:
    match = _REQ.match(requirement.split(";")[0].split("#")[0])
    assert match, f"cannot parse requirement {requirement!r}"
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def _environment_packages() -> dict[str, str]:
    """Package -> bound from environment.yml (conda and pip sections), without python/nodejs/openjdk/pip."""
    found: dict[str, str] = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        stripped = line.split("#")[0].strip()
        if not stripped.startswith("- ") or stripped.endswith(":"):
            continue
        item = stripped[2:].strip()
        if item.startswith("-e ") or item in {"pip"}:
            continue
        name, bound = _split(item)
        if name in {"python", "nodejs", "openjdk"}:  # runtimes, not Python packages
            continue
        found[name] = bound
    return found


def _pyproject_packages() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return dict(_split(r) for r in reqs)


def test_environment_yml_mirrors_pyproject() -> None:
    env = _environment_packages()
    py = _pyproject_packages()
    assert sorted(env) == sorted(py), (
        f"only in environment.yml: {sorted(set(env) - set(py))}; only in pyproject.toml: {sorted(set(py) - set(env))}"
    )
    differing = {name: (py[name], env[name]) for name in py if py[name] != env[name]}
    assert not differing, f"bounds differ (pyproject, environment.yml): {differing}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    """Package -> exact version from constraints.txt (``make lock`` writes it)."""
    pins: dict[str, str] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_.\-]*)==(\S+)", line.strip())
        assert match, f"constraints.txt line {number} is not name==version: {line!r}"
        name = _canonical(match.group(1))
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = match.group(2)
    return pins


def test_constraints_pin_every_dependency_within_its_bounds() -> None:
    from packaging.specifiers import SpecifierSet

    pins = _constraints()
    py = {_canonical(name): bound for name, bound in _pyproject_packages().items()}
    unpinned = sorted(set(py) - set(pins))
    assert not unpinned, f"not in constraints.txt: {unpinned}; run make lock"
    outside = {name: (pins[name], bound) for name, bound in py.items() if pins[name] not in SpecifierSet(bound)}
    assert not outside, f"pins outside pyproject.toml's bounds (pin, bound): {outside}; run make lock"


def test_package_json_pins_azurite() -> None:
    import json

    pkg = json.loads((ROOT / "package.json").read_text())
    version = pkg["devDependencies"]["azurite"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"azurite should be pinned exactly, got {version!r}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/azurite"]["version"] == version


def test_the_longest_first_order_names_test_modules() -> None:
    """conftest.LONGEST_FIRST orders the test run by module name: a renamed module would drop out silently."""
    import conftest

    modules = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    assert set(conftest.LONGEST_FIRST) <= modules, set(conftest.LONGEST_FIRST) - modules
    assert len(set(conftest.LONGEST_FIRST)) == len(conftest.LONGEST_FIRST)
