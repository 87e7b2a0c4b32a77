"""Who may read a partition of a consumer group: owner levels (epochs) and the reader quota.

Azure's rules: a receiver with an owner level (``com.microsoft:epoch``) equal
to or higher than the current owner's takes the partition over, and every
other receiver there is detached with ``amqp:link:stolen``; a receiver with a
lower level, or none, is refused while an owner holds the partition; without
owners, at most five receivers may read one partition of one consumer group.
"""

from __future__ import annotations

from typing import Protocol

from iotlib.errors import EmulatorError

MAX_NON_EPOCH_RECEIVERS = 5
LINK_STOLEN = "amqp:link:stolen"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"


class Refused(EmulatorError):
    """A receiver that may not attach; carries the AMQP error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class Reader(Protocol):
    epoch: int | None


class ReaderSlot:
    """The receivers of one partition in one consumer group."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.readers: list[Reader] = []

    def owner_epoch(self) -> int | None:
        epochs = [r.epoch for r in self.readers if r.epoch is not None]
        return max(epochs) if epochs else None

    def admit(self, reader: Reader) -> list[Reader]:
        """Add ``reader``; return the readers it displaces (to detach as stolen)."""
        owner = self.owner_epoch()
        if reader.epoch is None:
            if owner is not None:
                raise Refused(
                    LINK_STOLEN,
                    f"a receiver with owner level {owner} holds {self.label}; "
                    "a receiver without an owner level cannot be created",
                )
            if len(self.readers) >= MAX_NON_EPOCH_RECEIVERS:
                raise Refused(
                    RESOURCE_LIMIT,
                    f"{self.label} already has {MAX_NON_EPOCH_RECEIVERS} receivers, the most one partition "
                    "of one consumer group allows",
                )
            self.readers.append(reader)
            return []
        if owner is not None and reader.epoch < owner:
            raise Refused(
                LINK_STOLEN,
                f"a receiver with the higher owner level {owner} holds {self.label}; "
                f"owner level {reader.epoch} cannot take it",
            )
        displaced = self.readers
        self.readers = [reader]
        return displaced

    def remove(self, reader: Reader) -> None:
        try:
            self.readers.remove(reader)
        except ValueError:
            pass
