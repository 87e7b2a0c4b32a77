"""One rule for exceptions: bad arguments are ConfigurationErrors, bad data ValidationErrors (both
ValueErrors); what fails while running raises its stage's error; control flow stays private."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import iotlib
from iotlib import errors
from iotlib.capture.partition import _PartitionReset
from iotlib.capture.storage import StorageSignal

PUBLIC = {name: cls for name, cls in vars(errors).items() if inspect.isclass(cls) and issubclass(cls, Exception)}


def iotlib_exceptions() -> dict[str, type]:
    """Every exception class defined in iotlib (the emulator's own are checked on its branch)."""
    found = {}
    for info in pkgutil.walk_packages(iotlib.__path__, "iotlib."):
        if info.name.startswith("iotlib.local.emulator") or info.name in ("iotlib.__main__", "iotlib.errors"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_bad_arguments_and_bad_data_are_value_errors() -> None:
    assert issubclass(errors.ConfigurationError, ValueError) and issubclass(errors.ValidationError, ValueError)
    assert all(issubclass(cls, errors.IotlibError) for cls in PUBLIC.values())


def test_only_errors_py_extends_the_public_hierarchy() -> None:
    outside = {name for name, cls in iotlib_exceptions().items() if issubclass(cls, errors.IotlibError)}
    assert outside == set()


def test_control_flow_is_private() -> None:
    for signal in (_PartitionReset, StorageSignal):
        assert not issubclass(signal, errors.IotlibError)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: iotlib.processing.Tumbling("soon"), errors.ConfigurationError),
        (lambda: iotlib.fleet.scenario.build_registry(0), errors.ConfigurationError),
        (lambda: iotlib.ingest.partitioning.partition_for_key("d", []), errors.ConfigurationError),
        (lambda: iotlib.capture.format.parse_enqueued_time("yesterday"), errors.ValidationError),
        (lambda: iotlib.fleet.events.decode(b"{not json"), errors.ValidationError),
    ],
)
def test_examples(call, error) -> None:
    with pytest.raises(error):
        call()
