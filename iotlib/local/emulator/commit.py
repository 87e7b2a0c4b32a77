"""Group commit: events are acknowledged only once the log has written them, many at a time.

Links append events to partition logs (buffered) and register the settlement
each delivery is owed; after a connection has handled every frame it read in
one go, :meth:`GroupCommit.commit` writes each touched partition with one
``write`` and, with ``fsync``, waits for the disk off the event loop (one
``fdatasync`` per partition per commit, however many transfers it covers).
Only then are the deliveries settled and the waiting consumers woken: an
``accepted`` means the operating system has the events (they survive
``kill -9``), and with ``fsync`` that the disk has them (they survive power loss).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from iotlib.local.emulator import performatives as p

if TYPE_CHECKING:
    from iotlib.local.emulator.namespace import Partition
    from iotlib.local.emulator.session import Session

_LOG = logging.getLogger("iotlib.local.emulator.commit")

ACCEPTED = p.Accepted()

Ack = tuple["Session", int, p.DescribedList | None]  # session, delivery id, outcome (None: accepted)


class GroupCommit:
    """The partitions written and the settlements owed since the last commit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, fsync: bool) -> None:
        self.loop = loop
        self.fsync = fsync
        self._touched: set[Partition] = set()
        self._acks: list[Ack] = []
        self.commits = 0  # commits that wrote something (what a benchmark divides by)
        self.syncs = 0  # fdatasync calls

    def touched(self, partition: Partition) -> None:
        self._touched.add(partition)

    def after_commit(self, session: Session, delivery_id: int, outcome: p.DescribedList | None) -> None:
        """Settle this delivery once the log has written it (``None`` = accepted)."""
        self._acks.append((session, delivery_id, outcome))

    def commit(self) -> None:
        if not self._touched and not self._acks:
            return
        touched, self._touched = self._touched, set()
        acks, self._acks = self._acks, []
        for partition in touched:
            partition.log.commit()
        if touched:
            self.commits += 1
        if self.fsync and touched:
            logs = [partition.log for partition in touched]
            self.syncs += len(logs)

            def sync() -> None:
                for log in logs:
                    log.sync()

            future = self.loop.run_in_executor(None, sync)
            future.add_done_callback(lambda done: self._synced(done, acks, touched))
        else:
            self._settle(acks, touched)

    def _synced(self, done: asyncio.Future[None], acks: list[Ack], touched: set[Partition]) -> None:
        error = done.exception()
        if error is not None:  # the disk refused: say so rather than claim the events are safe
            _LOG.error("the event log could not be synced to disk: %s", error)
            outcome = p.Rejected(p.AmqpError("amqp:internal-error", f"the event log could not be synced: {error}"))
            acks = [(session, delivery_id, state or outcome) for session, delivery_id, state in acks]
        self._settle(acks, touched)

    @staticmethod
    def _settle(acks: list[Ack], touched: set[Partition]) -> None:
        # Contiguous accepted deliveries of a session go out as one disposition.
        run_session = None
        first = last = -1
        for session, delivery_id, outcome in acks:
            if session.ended:
                continue
            if outcome is None:
                if session is run_session and delivery_id == last + 1:
                    last = delivery_id
                    continue
                if run_session is not None:
                    run_session.send_disposition(first, last, ACCEPTED)
                run_session, first, last = session, delivery_id, delivery_id
            else:
                if run_session is not None:
                    run_session.send_disposition(first, last, ACCEPTED)
                    run_session = None
                session.send_disposition(delivery_id, delivery_id, outcome)
        if run_session is not None:
            run_session.send_disposition(first, last, ACCEPTED)
        for partition in touched:
            partition.notify()
