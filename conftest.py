"""Test session set-up shared by tests/ and the notebooks run under nbval.

One local stack serves the whole session: a running one (``iotlib up``) is
reused, otherwise one is started in a temporary folder on free ports and
stopped at the end. Its connection strings are exported to the environment
before any worker or notebook kernel starts, so every process uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from iotlib.local import stack as _stack

_session: dict[str, object] = {}

# Property tests judge results, never speed: on a loaded 2-core machine a first call that loads
# compiled code, or a slow example, is no failure (hypothesis' deadline and too_slow are wall clock).
settings.register_profile("iotlib", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("iotlib")


def _running_stack() -> _stack.Stack | None:
    try:
        state = _stack.read_state()
    except Exception:
        return None
    if state is None:
        return None
    wanted = ("azurite", "eventhubs") if _stack.emulator_available() else ("azurite",)
    report = {row.name: row for row in _stack.status(state.home)}
    if not all(report[name].healthy for name in wanted):
        return None
    if "eventhubs" in wanted and not _serves_test_hubs(state.services["eventhubs"].command):
        return None
    return _stack.Stack(state=state, started=[])


def _serves_test_hubs(command: list[str]) -> bool:
    """Was this emulator started with a config holding every test module's hub?"""
    if "--config" not in command:
        return False
    try:
        config = json.loads(Path(command[command.index("--config") + 1]).read_text())
        entities = config["UserConfig"]["NamespaceConfig"][0]["Entities"]
    except (OSError, ValueError, KeyError, IndexError):
        return False
    return set(_hub_names()) <= {e["Name"] for e in entities}


ROOT = Path(__file__).resolve().parent
CONSUMER_GROUPS = ("$Default", "capture", "warm", "monitor")


def test_hub_name(module_name: str) -> str:
    """The event hub a test module owns, so counts are not disturbed by tests running beside it."""
    return "t-" + module_name.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")


def _hub_names() -> list[str]:
    return ["telemetry"] + sorted(test_hub_name(p.stem) for p in (ROOT / "tests").glob("test_*.py"))


def _emulator_config(home: Path) -> Path:
    """``telemetry`` (what notebooks use) plus one hub per test module.

    To let test runs reuse a stack you keep running: ``iotlib up --eventhubs-config FILE``
    with a file written by this function (``python -c "import conftest, pathlib;
    print(conftest._emulator_config(pathlib.Path('.iotlib')))"``).
    """
    names = _hub_names()
    groups = [{"Name": g} for g in CONSUMER_GROUPS if g != "$Default"]
    config = {
        "UserConfig": {
            "NamespaceConfig": [
                {
                    "Type": "EventHub",
                    "Name": "fabrikam",
                    "Entities": [{"Name": n, "PartitionCount": "8", "ConsumerGroups": groups} for n in names],
                }
            ]
        }
    }
    path = home / "eventhubs-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # xdist worker: the controller set the environment
        return
    # Workers would each compile the numba decoders into a cold cache at once: compile them here.
    from iotlib.coldstore.precompile import compile_decoders

    compile_decoders()
    st = _running_stack()
    if st is None:
        home = Path(tempfile.mkdtemp(prefix="iotlib-test-stack-"))
        st = _stack.up(home=home, blob_port=0, eventhub_port=0, eventhubs_config=_emulator_config(home))
        _session["tmp_home"] = home
    _session["stack"] = st
    os.environ.update(st.environ())
    # Notebooks run under nbval at small scale.
    os.environ.setdefault("IOTLIB_SCALE", "small")


def pytest_unconfigure(config: pytest.Config) -> None:
    st = _session.pop("stack", None)
    if isinstance(st, _stack.Stack):
        st.down()
    home = _session.pop("tmp_home", None)
    if isinstance(home, Path):
        shutil.rmtree(home, ignore_errors=True)


# The test modules that take longest (seconds of `make test PYTEST_ARGS=--durations=0`, summed per module),
# longest first. `make test` hands whole modules to the workers in collection order; starting the long ones
# first keeps one from starting near the end while the other workers sit idle.
LONGEST_FIRST = (
    "test_capture_reliability", "test_capture", "test_hub_monitor", "test_emulator_roundtrip", "test_warm_processor",
    "test_capture_integrity", "test_emulator_publishers", "test_warm_processes", "test_demo", "test_cli_ingest",
    "test_ingest", "test_emulator_processor", "test_hub_consumer", "test_analysis_spark", "test_emulator_durability",
    "test_cli_load", "test_ingest_throttling", "test_emulator_transports", "test_warm_restart", "test_demo_cli",
    "test_process_until_idle", "test_stack",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules of :data:`LONGEST_FIRST` first, in its order; the others after them, as collected."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="module")
def eventhub_name(request: pytest.FixtureRequest) -> str:
    """This test module's own event hub on the session's emulator (see :func:`test_hub_name`)."""
    return test_hub_name(request.module.__name__)


@pytest.fixture(scope="session")
def local_stack() -> _stack.Stack:
    """The session's running local stack (Azurite, and the emulator when it exists)."""
    state = _stack.read_state(Path(os.environ[_stack._settings.HOME_ENV]))
    assert state is not None, "the session's local stack was not started"
    return _stack.Stack(state=state, started=[])


REAL_CAPTURE_ENV = "IOTLIB_REAL_CAPTURE"


@pytest.fixture(scope="session")
def real_capture_dir() -> Path:
    """The folder of real Event Hubs Capture files written by Azure (never copied into the project).

    ``$IOTLIB_REAL_CAPTURE``, else ``shared/real_capture`` beside the checkout, else the
    workplace's ``/work/shared/real_capture`` (CI clones elsewhere).
    """
    candidates = [
        os.environ.get(REAL_CAPTURE_ENV),
        ROOT.parent / "shared" / "real_capture",
        "/work/shared/real_capture",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "files").is_dir():
            return Path(candidate) / "files"
    pytest.fail(f"real Capture files not found: set {REAL_CAPTURE_ENV} to the folder holding their files/ folder")
