"""iotlib up/down/status against a real Azurite, in private state folders on free ports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from iotlib import connections
from iotlib.errors import StackError
from iotlib.local import stack


def _iotlib(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotlib", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_up_is_idempotent_and_down_stops_by_pid(tmp_path: Path) -> None:
    first = stack.up(home=tmp_path, blob_port=0, services=("azurite",))
    try:
        assert first.started == ["azurite"]
        svc = first.services["azurite"]
        again = stack.up(home=tmp_path, services=("azurite",))
        assert again.started == [], "a second up must reuse the running Azurite"
        assert again.services["azurite"].pid == svc.pid
        # A handle that started nothing stops nothing.
        assert again.down() == []
        assert stack.probe("azurite", svc.host, svc.port)[0]
        report = {row.name: row for row in stack.status(tmp_path)}
        assert report["azurite"].healthy and report["azurite"].pid == svc.pid
        # The stack really stores blobs.
        client = BlobServiceClient.from_connection_string(first.settings().storage_connection_string)
        container = client.get_container_client("stack-test")
        container.create_container()
        container.upload_blob("a/b.txt", b"hello", overwrite=True)
        assert container.download_blob("a/b.txt").readall() == b"hello"
    finally:
        stopped = first.down()
    assert stopped == ["azurite"]
    assert not stack.port_in_use(svc.host, svc.port)
    assert not stack.status(tmp_path)[0].healthy


def test_dead_service_is_restarted(tmp_path: Path) -> None:
    st = stack.up(home=tmp_path, blob_port=0, services=("azurite",))
    pid = st.services["azurite"].pid
    try:
        stack._terminate(pid)
        assert not stack.status(tmp_path)[0].healthy
        again = stack.up(home=tmp_path, blob_port=0, services=("azurite",))
        assert again.started == ["azurite"]
        assert again.services["azurite"].pid != pid
    finally:
        stack.down(tmp_path)


def test_port_taken_by_someone_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(StackError, match=rf"port {port} .* taken .*--blob-port"):
            stack.up(home=tmp_path, blob_port=port, services=("azurite",))
    assert stack.read_state(tmp_path) is None or not stack.read_state(tmp_path).services


def test_azurite_failing_to_start_shows_its_log(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here, so Azurite cannot bind it.
    with pytest.raises(StackError, match=r"azurite exited .*192\.0\.2\.1.*Last lines of") as err:
        stack.up(home=tmp_path, host="192.0.2.1", blob_port=stack.free_port(), services=("azurite",))
    assert "EADDRNOTAVAIL" in str(err.value)


def test_missing_node_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no node on it
    with pytest.raises(StackError, match="Node.js is not installed"):
        stack.up(home=tmp_path, blob_port=0, services=("azurite",))


def test_cli_up_status_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTLIB_")}
    env["IOTLIB_HOME"] = str(tmp_path)
    up = _iotlib("up", "--blob-port", "0", "--eventhub-port", "0", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "export IOTLIB_STORAGE_CONNECTION_STRING=" in up.stdout
        assert "started" in up.stdout
        status = _iotlib("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "azurite" in status.stdout and "healthy" in status.stdout
        # Settings now follow the recorded stack's port, not the default.
        port = stack.read_state(tmp_path).services["azurite"].port
        probe = subprocess.run(
            [sys.executable, "-c", "import iotlib; print(iotlib.settings().storage_connection_string)"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert f":{port}/devstoreaccount1" in probe.stdout
        # One service down: status says which, and exits non-zero.
        stack._terminate(stack.read_state(tmp_path).services["eventhubs"].pid)
        half = _iotlib("status", env=env)
        assert half.returncode == 1
        assert re.search(r"^eventhubs .* DOWN +recorded but not running$", half.stdout, re.MULTILINE), half.stdout
        assert "down: eventhubs (start the stack with `iotlib up`)" in half.stdout
    finally:
        down = _iotlib("down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    after = _iotlib("status", env=env)
    assert "not started" in after.stdout and after.returncode == 1


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTLIB_")}
    env["IOTLIB_HOME"] = str(home)
    return env


def test_up_with_the_hub_port_taken_starts_nothing(tmp_path: Path) -> None:
    blob_port = stack.free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        up = _iotlib("up", "--blob-port", str(blob_port), "--eventhub-port", str(taken), env=_clean_env(tmp_path))
    assert up.returncode == 1
    assert f"port {taken} on 127.0.0.1 is taken" in up.stderr and "--eventhub-port PORT" in up.stderr
    assert not stack.port_in_use("127.0.0.1", blob_port), "Azurite was left running"
    state = stack.read_state(tmp_path)
    assert state is None or not state.services


def test_up_that_fails_on_its_second_service_stops_the_first(tmp_path: Path) -> None:
    config = tmp_path / "not-a-config.json"
    config.write_text("{}")  # the emulator refuses it, after Azurite has started
    blob_port = stack.free_port()
    home = tmp_path / "home"
    up = _iotlib("up", "--blob-port", str(blob_port), "--eventhub-port", "0", "--eventhubs-config", str(config),
                 env=_clean_env(home))  # fmt: skip
    assert up.returncode == 1
    assert "eventhubs exited with code" in up.stderr
    assert (home / "logs" / "azurite.log").exists(), "Azurite was never started: the case is not exercised"
    assert not stack.port_in_use("127.0.0.1", blob_port), "Azurite was left running"
    assert not stack.read_state(home).services


def test_stack_is_a_context_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (connections.EVENTHUB_ENV, connections.STORAGE_ENV, connections.EVENTHUB_NAME_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(connections.HOME_ENV, str(tmp_path))
    with stack.up(home=tmp_path, blob_port=0, services=("azurite",)) as st:
        svc = st.services["azurite"]
        assert stack.probe("azurite", svc.host, svc.port)[0]
        # One source for where a stack listens: without environment, iotlib.settings() is the handle's.
        assert st.settings() == connections.settings()
        assert f"BlobEndpoint=http://{svc.host}:{svc.port}/" in st.settings().storage_connection_string
    assert not stack.port_in_use(svc.host, svc.port)
    assert stack.status(tmp_path)[0].pid is None
