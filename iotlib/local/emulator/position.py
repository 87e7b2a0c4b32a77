"""Starting positions: the selector filter a consumer attaches with, resolved to a log cursor.

The client sends ``amqp.annotation.x-opt-offset > '-1'`` (the start),
``… > '@latest'`` (the end: only new events), ``… > '<offset>'``,
``amqp.annotation.x-opt-sequence-number > '<n>'`` or
``amqp.annotation.x-opt-enqueued-time > '<epoch ms>'``, with ``>=`` when the
position is inclusive. No filter means the start.
"""

from __future__ import annotations

import re

from iotlib.errors import EmulatorError
from iotlib.local.emulator.log import Cursor, PartitionLog

_SELECTOR = re.compile(
    r"^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$",
    re.IGNORECASE,
)


class PositionError(EmulatorError):
    """A selector filter the emulator cannot honour."""


def resolve_position(log: PartitionLog, selector: str | None) -> Cursor:
    """The cursor where a consumer with this selector starts reading."""
    if selector is None:
        return log.begin_cursor()
    match = _SELECTOR.match(selector)
    if not match:
        raise PositionError(f"unsupported selector filter {selector!r}")
    field, op, value = match.group(1).lower(), match.group(2), match.group(3).strip()
    inclusive = op == ">="
    if field == "x-opt-offset":
        if value == "@latest":
            return log.end_cursor()
        try:
            offset = int(value)
        except ValueError as exc:
            raise PositionError(f"offset {value!r} is not a number, '-1' or '@latest'") from exc
        if offset == -1:
            return log.begin_cursor()
        return log.locate_offset(offset, inclusive)
    try:
        number = int(value)
    except ValueError as exc:
        raise PositionError(f"{field} value {value!r} is not a number") from exc
    if field == "x-opt-sequence-number":
        return log.locate_seq(number if inclusive else number + 1)
    return log.locate_time(number, inclusive)
