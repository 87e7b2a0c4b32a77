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


def test_package_json_pins_azurite() -> None:
    import json

    pkg = json.loads((ROOT / "package.json").read_text())
    version = pkg["devDependencies"]["azurite"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"azurite should be pinned exactly, got {version!r}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/azurite"]["version"] == version
