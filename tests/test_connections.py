"""Where iotlib connects: environment first, then the running stack, then local defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

import iotlib
from iotlib import connections
from iotlib.errors import ConfigurationError


def test_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        connections.EVENTHUB_ENV, "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v"
    )
    monkeypatch.setenv(connections.STORAGE_ENV, "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=b==")
    monkeypatch.setenv(connections.EVENTHUB_NAME_ENV, "hub1")
    s = iotlib.settings()
    assert s.eventhub_connection_string.startswith("Endpoint=sb://x.servicebus")
    assert s.eventhub_name == "hub1"
    assert s.source == "environment"
    assert not s.is_local
    assert "export IOTLIB_EVENTHUB_NAME='hub1'" in s.exports()


def test_defaults_without_environment_or_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (connections.EVENTHUB_ENV, connections.STORAGE_ENV, connections.EVENTHUB_NAME_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(connections.HOME_ENV, str(tmp_path / "nothing-here"))
    s = iotlib.settings()
    assert s.source == "defaults"
    assert s.eventhub_connection_string == (
        "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )
    assert "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1" in s.storage_connection_string
    assert s.eventhub_name == "telemetry"
    assert s.is_local


def test_malformed_connection_string_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(connections.EVENTHUB_ENV, "this is not a connection string")
    with pytest.raises(ConfigurationError, match="IOTLIB_EVENTHUB_CONNECTION_STRING"):
        iotlib.settings()


def test_home_is_found_in_a_parent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(connections.HOME_ENV, raising=False)
    (tmp_path / ".iotlib").mkdir()
    nested = tmp_path / "notebooks" / "deeper"
    nested.mkdir(parents=True)
    assert connections.home(nested) == tmp_path / ".iotlib"
    assert connections.home(tmp_path.parent / "elsewhere") == tmp_path.parent / "elsewhere" / ".iotlib"


def test_emulator_port_in_connection_string() -> None:
    assert "Endpoint=sb://localhost:5999;" in connections.eventhub_connection_string("localhost", 5999)
    assert "Endpoint=sb://localhost;" in connections.eventhub_connection_string()
