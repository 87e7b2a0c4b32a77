"""Two ``iotlib process`` share consumer group ``warm``; one is killed (-9); the other takes its partitions
once their ownership expires, and the warm store still holds exactly what the batch job computes.

Each process holds some partitions (the consumer client balances them through ownership blobs),
restores each partition's state from the shared warm store when it claims it, and commits its
partitions' partial windows; the store merges them once every partition's watermark has passed.
Everything is waited on through the store's own tables (owners, commits, progress), never a clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from datetime import UTC, datetime

import pytest
from children import spawn, wait_for
from warm_cli import live_stretch, process_cli, rows

from iotlib import hub
from iotlib.fleet import scenario, simulate
from iotlib.ingest import IngestClient
from iotlib.processing import EventTimePolicy
from iotlib.warm import WarmStore, compare, incoming

FAULTS = ["skew:fraction=0.1,min_skew=20s,max_skew=3m", "offline:fraction=0.1,outage=40s", "duplicates:probability=0.03",
          "malformed:probability=0.02", "spikes:probability=0.02", "heat:buildings=3,rise=30,ramp=0s"]  # fmt: skip
SPEED = 10
# Ownership renewed every second, taken over 4 s after the last renewal: a dead process's partitions move fast.
OWNERSHIP = ("--load-balancing-interval", "1", "--ownership-expiry", "4")
LOGGED = ("-vv",)  # the SDK's load balancing too, in the output a failed wait shows


@pytest.mark.slow
def test_a_process_takes_over_a_killed_ones_partitions_and_the_store_equals_batch(local_stack, eventhub_name, tmp_path):
    registry = scenario.build_registry(300, buildings=5, seed=21)
    registry_file = scenario.save_registry(registry, tmp_path / "registry.json")
    events = live_stretch(registry, seed=21, speed=SPEED, faults=FAULTS)
    before = hub.positions(eventhub_name=eventhub_name)
    store, container = tmp_path / "warm.sqlite", f"warm-{uuid.uuid4().hex[:10]}"
    cli = process_cli(
        eventhub_name, store, container, registry_file, *OWNERSHIP, *LOGGED, "--starting-position", "latest"
    )

    # 1. Two processes on one consumer group and one warm store share the partitions.
    logs = [tmp_path / f"process-{i}.log" for i in range(2)]
    procs = [spawn(cli, log) for log in logs]

    def explain() -> str:  # what a failed wait shows: both processes' output, the store's and the hub's owners
        try:
            owners = hub.lag({"warm": container}, eventhub_name=eventhub_name, lag_time=False)
            held = owners.select("partition_id", "owner", "ownership_time").rows()
        except Exception as exc:  # noqa: BLE001 - the failure message must still come
            held = [f"{type(exc).__name__}: {exc}"]
        return "\n".join([f"runs: {rows(store, 'SELECT pid, run_id, hub_owner_id FROM processes')}",
                          f"store partitions: {rows(store, 'SELECT partition_id, owner_id, claimed_at FROM partitions')}",
                          f"hub ownership (now {datetime.now(UTC)}): {held}"])  # fmt: skip

    try:
        holders = lambda: {o for (o,) in rows(store, "SELECT owner_id FROM partitions")}  # noqa: E731
        wait_for(lambda: len(holders()) == 2, "both processes to hold partitions", timeout=120, alive=procs, log=logs,
                 explain=explain)  # fmt: skip
        runs = dict(rows(store, "SELECT pid, run_id FROM processes"))
        sending = threading.Thread(target=lambda: IngestClient.from_settings(eventhub_name=eventhub_name).send(
            events, mode="live", speed=SPEED, send_malformed=True, progress=False))  # fmt: skip
        sending.start()

        # 2. Both commit; then one is killed mid-stream, holding partitions it has processed.
        def committed(run: str) -> int:
            return (rows(store, f"SELECT COUNT(*) FROM commits WHERE run_id = '{run}' AND events > 0") or [(0,)])[0][0]

        wait_for(lambda: all(committed(runs[p.pid]) >= 2 for p in procs), "both processes to commit", timeout=90,
                 alive=procs, log=logs, explain=explain)  # fmt: skip
        victim, survivor = procs
        lost = {p for (p,) in rows(store, f"SELECT partition_id FROM partitions WHERE owner_id = '{runs[victim.pid]}'")}
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        assert sending.is_alive(), "the stretch was already all sent: the kill was not mid-stream"
        assert lost and committed(runs[victim.pid]) >= 2

        # 3. Once the dead process's ownership expires, the survivor claims its partitions and goes on
        #    from what the store holds of them.
        mine = runs[survivor.pid]
        wait_for(lambda: holders() == {mine}, "the survivor to take every partition over", timeout=90, alive=survivor,
                 log=logs, explain=explain)  # fmt: skip
        sending.join()
        after = hub.positions(eventhub_name=eventhub_name)

        def done() -> bool:
            stored = rows(store, "SELECT partition_id, sequence_number FROM progress")
            return len(stored) == len(after) and all(s >= after[p].last_enqueued_sequence_number for p, s in stored)

        wait_for(done, "everything processed", timeout=120, alive=survivor, log=logs, explain=explain)
        survivor.send_signal(signal.SIGINT)
        survivor.wait(60)
        out = logs[1].read_text()
        assert survivor.returncode == 130, out
        assert "stopped: interrupted" in out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    # 4. The end of the stream (one more run, flushing), then the store against the batch job.
    end = subprocess.run(process_cli(eventhub_name, store, container, registry_file, "--once", "--flush"),
                         capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False)  # fmt: skip
    assert end.returncode == 0, end.stdout + end.stderr
    back = incoming.from_hub_frame(hub.read(eventhub_name=eventhub_name, since=before))
    with WarmStore(store) as warm:
        verdict = compare(warm, back, registry, policy=EventTimePolicy(idle_timeout="10m"))
        assert verdict.equal, verdict
        assert warm.history().height > 50 and warm.table("partials").height == 0
        assert "building_too_hot" in warm.alerts()["rule"].to_list()
        assert warm.totals().received == back.height  # every event processed once, across three processes


@pytest.mark.slow
def test_a_partition_the_store_gives_to_a_run_that_lost_it_is_not_orphaned(local_stack, eventhub_name, tmp_path):
    """A process that lost a partition may claim it in the store after its new holder did (its claim
    callback ran late on a loaded machine): the holder's commits for it are then refused. The holder
    gives the partition back to the load balancer, the next claim takes the store too, and every event
    is processed once; before, the holder kept the partition in the hub and ignored it, for good."""
    registry = scenario.build_registry(200, buildings=4, seed=5)
    registry_file = scenario.save_registry(registry, tmp_path / "registry.json")
    store, container, log = tmp_path / "warm.sqlite", f"warm-{uuid.uuid4().hex[:10]}", tmp_path / "process.log"
    partitions = list(hub.positions(eventhub_name=eventhub_name))
    proc = spawn(
        process_cli(
            eventhub_name, store, container, registry_file, *OWNERSHIP, *LOGGED, "--starting-position", "latest"
        ),
        log,
    )
    holders = lambda: dict(rows(store, "SELECT partition_id, owner_id FROM partitions"))  # noqa: E731
    explain = lambda: f"store partitions: {holders()}"  # noqa: E731
    try:
        wait_for(lambda: len(holders()) == len(partitions), "every partition claimed", timeout=120, alive=proc, log=log,
                 explain=explain)  # fmt: skip
        (run,) = {o for o in holders().values()}
        with WarmStore(store, writer=True) as late:  # the loser's late claim
            late.claim(partitions[0], "a-run-that-lost-it")
        sent = IngestClient.from_settings(eventhub_name=eventhub_name).send(
            simulate.generate(registry, duration="1m", seed=5), progress=False)  # fmt: skip
        after = hub.positions(eventhub_name=eventhub_name)

        def done() -> bool:
            stored = dict(rows(store, "SELECT partition_id, sequence_number FROM progress"))
            return all(stored.get(p, -1) >= after[p].last_enqueued_sequence_number for p in partitions)

        wait_for(done, "every partition processed to the hub's end", timeout=120, alive=proc, log=log, explain=explain)
        assert set(holders().values()) == {run}, explain()
        text = log.read_text()
        assert "claimed by another processor" in text and "given back" in text  # the refusal did happen
        assert "Request URL" not in text  # -vv: the SDKs' lines, not every HTTP request (-vvv)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    with WarmStore(store) as warm:
        assert warm.totals().received == sent.events_sent  # once each: nothing lost, nothing doubled
