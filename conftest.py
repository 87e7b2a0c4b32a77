"""Test session set-up shared by tests/ and the notebooks run under nbval.

One local stack serves the whole session: a running one (``iotlib up``) is
reused, otherwise one is started in a temporary folder on free ports and
stopped at the end. Its connection strings are exported to the environment
before any worker or notebook kernel starts, so every process uses it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from iotlib import stack as _stack

_session: dict[str, object] = {}


def _running_stack() -> _stack.Stack | None:
    try:
        state = _stack.read_state()
    except Exception:
        return None
    if state is None:
        return None
    wanted = ("azurite", "eventhubs") if _stack.emulator_available() else ("azurite",)
    report = {row.name: row for row in _stack.status(state.home)}
    if all(report[name].healthy for name in wanted):
        return _stack.Stack(state=state, started=[])
    return None


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # xdist worker: the controller set the environment
        return
    st = _running_stack()
    if st is None:
        home = Path(tempfile.mkdtemp(prefix="iotlib-test-stack-"))
        st = _stack.up(home=home, blob_port=0, eventhub_port=0)
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


@pytest.fixture(scope="session")
def local_stack() -> _stack.Stack:
    """The session's running local stack (Azurite, and the emulator when it exists)."""
    state = _stack.read_state(Path(os.environ[_stack._settings.HOME_ENV]))
    assert state is not None, "the session's local stack was not started"
    return _stack.Stack(state=state, started=[])
