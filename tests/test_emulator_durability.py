"""The log survives restarts and crashes, cuts torn tails, and keeps only what retention allows."""

from __future__ import annotations

import threading

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from emulator_helpers import FAST, ManualClock, receive, receive_many, wait_until

from iotlib.errors import ConfigurationError
from iotlib.local.emulator import Emulator, EmulatorConfig, EntityConfig

HUB = "telemetry"
CONFIG = EmulatorConfig(entities=(EntityConfig(HUB, 2),), segment_bytes=64 * 1024)


def _producer(emu) -> EventHubProducerClient:
    return EventHubProducerClient.from_connection_string(emu.connection_string, eventhub_name=HUB, **FAST)


def _read_everything(emu, counts: dict[str, int]) -> dict[str, list[EventData]]:
    specs = [{"partition_id": pid, "count": n, "timeout": 15} for pid, n in counts.items()]
    return dict(zip(counts, receive_many(emu.connection_string, *specs)))


def test_restart_keeps_events_and_continues_numbering(tmp_path):
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as emu, _producer(emu) as p:
        for i in range(30):  # several segments of 64 KiB
            p.send_batch([EventData(f"before-{i}-{j}".encode() * 40) for j in range(10)], partition_id="0")
        p.send_batch([EventData(b"p1-before")], partition_id="1")
        before = p.get_partition_properties("0")
        created = p.get_eventhub_properties()["created_at"]
    assert len(list((tmp_path / HUB / "0").glob("*.seg"))) >= 3
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as emu, _producer(emu) as p:
        after = p.get_partition_properties("0")
        assert after["last_enqueued_sequence_number"] == before["last_enqueued_sequence_number"] == 299
        assert after["last_enqueued_offset"] == before["last_enqueued_offset"]
        assert p.get_eventhub_properties()["created_at"] == created
        p.send_batch([EventData(b"after-restart")], partition_id="0")
        assert p.get_partition_properties("0")["last_enqueued_sequence_number"] == 300
        got = _read_everything(emu, {"0": 301, "1": 1})
    assert [e.sequence_number for e in got["0"]] == list(range(301))
    assert got["0"][0].body_as_str() == "before-0-0" * 40
    assert got["0"][-1].body_as_str() == "after-restart"
    assert int(got["0"][-1].offset) > int(before["last_enqueued_offset"])
    assert [e.body_as_str() for e in got["1"]] == ["p1-before"]


def test_kill_9_during_sends_loses_nothing_acknowledged(tmp_path):
    acknowledged: list[str] = []
    emu = Emulator.start(data_dir=tmp_path, port=0, config=CONFIG, mode="process")
    stop = threading.Event()

    def send_forever() -> None:
        p = _producer(emu)
        n = 0
        try:
            while not stop.is_set():
                bodies = [f"ack-{n + j}" for j in range(20)]
                p.send_batch([EventData(b) for b in bodies], partition_id=str(n % 2))
                acknowledged.extend(bodies)  # send_batch returned: the emulator said accepted
                n += 20
        except Exception:  # noqa: BLE001 - the emulator was killed under us
            pass
        finally:
            try:
                p.close()
            except Exception:  # noqa: BLE001
                pass

    worker = threading.Thread(target=send_forever, daemon=True)
    worker.start()
    assert wait_until(lambda: len(acknowledged) >= 400, 30)
    emu.kill()
    stop.set()
    worker.join(30)
    assert emu.exit_code == -9
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as again, _producer(again) as p:
        counts = {pid: p.get_partition_properties(pid)["last_enqueued_sequence_number"] + 1 for pid in "01"}
        got = _read_everything(again, counts)
    stored = [e.body_as_str() for pid in "01" for e in got[pid]]
    assert len(stored) == sum(counts.values())
    assert set(acknowledged) <= set(stored), "an acknowledged event was lost"
    assert len(set(stored)) == len(stored)


def test_torn_tail_is_cut_to_the_last_whole_record(tmp_path):
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as emu, _producer(emu) as p:
        p.send_batch([EventData(f"whole-{i}") for i in range(5)], partition_id="1")
    segment = sorted((tmp_path / HUB / "1").glob("*.seg"))[-1]
    data = segment.read_bytes()
    segment.write_bytes(data + data[:40])  # a crash in the middle of writing the next record
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as emu, _producer(emu) as p:
        assert segment.stat().st_size == len(data)
        assert p.get_partition_properties("1")["last_enqueued_sequence_number"] == 4
        p.send_event(EventData(b"after-crash"), partition_id="1")
        got = receive(emu.connection_string, partition_id="1", count=6)
    assert [e.body_as_str() for e in got] == [f"whole-{i}" for i in range(5)] + ["after-crash"]
    assert [e.sequence_number for e in got] == list(range(6))
    # A corrupt (not just short) last record is cut too.
    data = segment.read_bytes()
    broken = bytearray(data)
    broken[-3] ^= 0xFF
    segment.write_bytes(bytes(broken))
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as emu, _producer(emu) as p:
        assert p.get_partition_properties("1")["last_enqueued_sequence_number"] == 4


def test_retention_deletes_old_segments(tmp_path):
    config = EmulatorConfig(
        entities=(EntityConfig(HUB, 1, retention_hours=0.25),),
        segment_bytes=8 * 1024,
        retention_check_seconds=0.2,
    )
    clock = ManualClock()  # events age when the test moves the emulator's clock, however slow the machine
    with Emulator.start(data_dir=tmp_path, port=0, config=config, clock=clock) as emu, _producer(emu) as p:
        for i in range(6):
            p.send_batch([EventData(f"old-{i}-{j}".encode() * 30) for j in range(10)], partition_id="0")
        assert p.get_partition_properties("0")["beginning_sequence_number"] == 0
        clock.advance(20 * 60)  # the old events are now 20 minutes old; retention keeps 15
        p.send_batch([EventData(f"new-{j}".encode() * 30) for j in range(40)], partition_id="0")
        assert wait_until(lambda: p.get_partition_properties("0")["beginning_sequence_number"] > 0, 5)
        props = p.get_partition_properties("0")
        begin = props["beginning_sequence_number"]
        assert 0 < begin <= 60
        got = receive(emu.connection_string, partition_id="0", count=props["last_enqueued_sequence_number"] - begin + 1)
    assert got[0].sequence_number == begin
    assert all(e.body_as_str().startswith("new-") for e in got[-40:])


def test_size_retention_and_clean_shutdown_of_the_command(tmp_path):
    config = EmulatorConfig(
        entities=(EntityConfig(HUB, 1, retention_mb=32 / 1024),),  # 32 KiB per partition
        segment_bytes=8 * 1024,
        retention_check_seconds=0.2,
    )
    emu = Emulator.start(data_dir=tmp_path, port=0, config=config, mode="process")
    try:
        with _producer(emu) as p:
            for i in range(10):
                p.send_batch([EventData(f"s-{i}-{j}".encode() * 80) for j in range(10)], partition_id="0")
            assert wait_until(lambda: p.get_partition_properties("0")["beginning_sequence_number"] > 0, 5)
        size = sum(s.stat().st_size for s in (tmp_path / HUB / "0").glob("*.seg"))
        assert size <= 40 * 1024
    finally:
        emu.stop()
    assert emu.exit_code == 0  # SIGTERM: a clean exit
    log = (tmp_path / "emulator.log").read_text()
    assert "stopped" in log and "Traceback" not in log


def test_two_emulators_never_share_a_data_folder(tmp_path):
    import pytest

    from iotlib.errors import EmulatorError

    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG):
        with pytest.raises(EmulatorError, match="in use by another emulator"):
            Emulator.start(data_dir=tmp_path, port=0, config=CONFIG)
    with Emulator.start(data_dir=tmp_path, port=0, config=CONFIG) as again:  # free once the first stopped
        assert again.port


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_is_the_default_and_acknowledges_after_the_disk(tmp_path, fsync):
    assert EmulatorConfig().fsync is True  # power-loss durability unless asked otherwise
    config = EmulatorConfig(entities=(EntityConfig(HUB, 2),), fsync=fsync, segment_bytes=16 * 1024)
    with Emulator.start(data_dir=tmp_path, port=0, config=config) as emu, _producer(emu) as p:
        for i in range(5):
            p.send_batch([EventData(f"synced-{i}-{j}".encode() * 20) for j in range(20)], partition_id="1")
        assert p.get_partition_properties("1")["last_enqueued_sequence_number"] == 99
        commit = emu._server[0].services.commit  # the in-process server's own counts
        assert commit.commits >= 5
        assert commit.syncs == (commit.commits if fsync else 0)  # one fdatasync per commit of one partition
        got = receive(emu.connection_string, partition_id="1", count=100)
    assert [e.sequence_number for e in got] == list(range(100))
    assert len(list((tmp_path / HUB / "1").glob("*.seg"))) > 1  # rolled segments were synced too


def test_fsync_setting_in_the_config_file():
    raw = {"UserConfig": {"NamespaceConfig": [{"Entities": [{"Name": "eh1"}]}]}}
    assert EmulatorConfig.from_dict(raw).fsync is True
    raw["UserConfig"]["EmulatorConfig"] = {"Fsync": False}
    assert EmulatorConfig.from_dict(raw).fsync is False
    raw["UserConfig"]["EmulatorConfig"] = {"Fsync": "sometimes"}
    with pytest.raises(ConfigurationError, match="Fsync must be true or false"):
        EmulatorConfig.from_dict(raw)
