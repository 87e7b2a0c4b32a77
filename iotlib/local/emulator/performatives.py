"""AMQP 1.0 performatives by name: one field table each, checked when decoded, complete when encoded.

Each performative, and each described list one carries (source, target,
error, delivery outcomes), is a frozen dataclass whose fields are declared in
wire order with their AMQP type (``wire(UINT)``, ``wire(STRING, mandatory=True)``).
That table is the only place field positions live:

* :func:`decode_performative` looks the descriptor up in a constructor table
  and checks every field a peer sent against its type; a field of the wrong
  type, or a mandatory one left null, is a :class:`~iotlib.local.emulator.codec.DecodeError`
  that names it (``attach.handle must be a uint, not 'x'``).
* ``encode()`` writes every field, explicit nulls included: the azure-eventhub
  client reads fields by position (``Source(*frame[5])``) and fails on
  shortened lists, ``list0`` or described arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, Self, TypeVar

from iotlib.local.emulator import codec as c
from iotlib.local.emulator.codec import DecodeError, Described


@dataclass(frozen=True)
class Kind:
    """An AMQP field type: what a decoded value must be, how to write one, and what to build from it."""

    name: str
    accepts: Callable[[Any], bool]
    encode: Callable[[Any], bytes]
    build: Callable[[Any], Any] | None = None  # composites: the dataclass from the decoded described list


def _nullable(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    return lambda value: c.NULL if value is None else encode(value)


def _unsigned(bits: int) -> Callable[[Any], bool]:
    top = 1 << bits
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < top


def _symbols(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _enc_symbols(value: str | list[str]) -> bytes:
    values = [value] if isinstance(value, str) else value
    return c.enc_symbol_array(values) if values else c.NULL


_U32 = struct.Struct(">I")

UBYTE = Kind("ubyte", _unsigned(8), _nullable(c.enc_ubyte))
USHORT = Kind("ushort", _unsigned(16), _nullable(c.enc_ushort))
UINT = Kind("uint", _unsigned(32), c.enc_uint)
UINT_WIDE = Kind("uint", _unsigned(32), _nullable(lambda v: b"\x70" + _U32.pack(v)))  # never the short forms
ULONG = Kind("ulong", _unsigned(64), c.enc_ulong)
BOOLEAN = Kind("boolean", lambda v: isinstance(v, bool), c.enc_bool)
STRING = Kind("string", lambda v: isinstance(v, str), c.enc_string)
SYMBOL = Kind("symbol", lambda v: isinstance(v, str), c.enc_symbol)
SYMBOLS = Kind("symbol or symbol array", _symbols, _nullable(_enc_symbols))
BINARY = Kind("binary", lambda v: isinstance(v, bytes), c.enc_binary)
MAP = Kind("map", lambda v: isinstance(v, dict), _nullable(c.enc_any))
TIMESTAMP = Kind("timestamp", lambda v: isinstance(v, int) and not isinstance(v, bool), c.enc_timestamp)
ANY = Kind("any value", lambda v: True, _nullable(c.enc_any))


def wire(kind: Kind, *, mandatory: bool = False) -> Any:
    """Declare a dataclass field as the next field on the wire."""
    return field(default=None, metadata={"kind": kind, "mandatory": mandatory})


class DescribedList:
    """A described list with a field table: a performative, a terminus, an error or an outcome."""

    CODE: ClassVar[int]
    NAME: ClassVar[str]  # the symbolic descriptor, e.g. "amqp:open:list"
    WIRE: ClassVar[tuple[tuple[str, Kind, bool], ...]] = ()  # (field, kind, mandatory), filled by @table
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass (see @table)

    @classmethod
    def from_fields(cls, values: list[Any]) -> Self:
        """Build from a decoded field list, checking each field against the table."""
        args = []
        for i, (name, kind, mandatory) in enumerate(cls.WIRE):
            value = values[i] if i < len(values) else None
            if value is None:
                if mandatory:
                    raise DecodeError(f"{cls.NAME}: {name} is mandatory and was not given")
            else:
                if not kind.accepts(value):
                    raise DecodeError(f"{cls.NAME}: {name} must be a {kind.name}, not {_short(value)}")
                if kind.build is not None:
                    value = kind.build(value)
            args.append(value)
        return cls(*args)

    def encode(self) -> bytes:
        """The described list with every field of the table, in order."""
        return c.enc_described(self.CODE, c.enc_list([kind.encode(getattr(self, name)) for name, kind, _ in self.WIRE]))


_T = TypeVar("_T", bound=type[DescribedList])

PERFORMATIVES: dict[int | str, type[DescribedList]] = {}  # the constructor table, by numeric and symbolic descriptor


def table(code: int, name: str, *, performative: bool = False) -> Callable[[_T], _T]:
    """Give a dataclass its descriptor and field table (and list it as a performative)."""

    def register(cls: _T) -> _T:
        cls.CODE, cls.NAME = code, name
        cls.WIRE = tuple((f.name, f.metadata["kind"], f.metadata["mandatory"]) for f in fields(cls))
        if performative:
            PERFORMATIVES[code] = PERFORMATIVES[name] = cls
        return cls

    return register


def composite(cls: type[DescribedList]) -> Kind:
    """The field kind of a described list nested in another (a source in an attach …)."""

    def accepts(value: Any) -> bool:
        return isinstance(value, cls) or (
            isinstance(value, Described) and value.descriptor in (cls.CODE, cls.NAME) and isinstance(value.value, list)
        )

    def build(value: Any) -> Any:
        return value if isinstance(value, cls) else cls.from_fields(value.value)

    return Kind(cls.NAME, accepts, _encode_nested, build)


def _encode_nested(value: DescribedList | None) -> bytes:
    return c.NULL if value is None else value.encode()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- errors, outcomes, termini ---------------------------------------------------------------


@table(0x1D, "amqp:error:list")
@dataclass(frozen=True)
class AmqpError(DescribedList):
    condition: str = wire(SYMBOL, mandatory=True)
    description: str | None = wire(STRING)
    info: dict[Any, Any] | None = wire(MAP)


ERROR = composite(AmqpError)


@table(0x23, "amqp:received:list")
@dataclass(frozen=True)
class Received(DescribedList):
    section_number: int = wire(UINT, mandatory=True)
    section_offset: int = wire(ULONG, mandatory=True)


@table(0x24, "amqp:accepted:list")
@dataclass(frozen=True)
class Accepted(DescribedList):
    pass


@table(0x25, "amqp:rejected:list")
@dataclass(frozen=True)
class Rejected(DescribedList):
    error: AmqpError | None = wire(ERROR)


@table(0x26, "amqp:released:list")
@dataclass(frozen=True)
class Released(DescribedList):
    pass


@table(0x27, "amqp:modified:list")
@dataclass(frozen=True)
class Modified(DescribedList):
    delivery_failed: bool | None = wire(BOOLEAN)
    undeliverable_here: bool | None = wire(BOOLEAN)
    message_annotations: dict[Any, Any] | None = wire(MAP)


_OUTCOMES: dict[int | str, type[DescribedList]] = {}
for _outcome in (Received, Accepted, Rejected, Released, Modified):
    _OUTCOMES[_outcome.CODE] = _OUTCOMES[_outcome.NAME] = _outcome

DELIVERY_STATE = Kind(
    "delivery state",
    lambda v: (
        isinstance(v, DescribedList)
        or (isinstance(v, Described) and isinstance(v.value, list) and v.descriptor in _OUTCOMES)
    ),
    _encode_nested,
    lambda v: v if isinstance(v, DescribedList) else _OUTCOMES[v.descriptor].from_fields(v.value),
)


@table(0x28, "amqp:source:list")
@dataclass(frozen=True)
class Source(DescribedList):
    address: str | None = wire(STRING)
    durable: int | None = wire(UINT)
    expiry_policy: str | None = wire(SYMBOL)
    timeout: int | None = wire(UINT)
    dynamic: bool | None = wire(BOOLEAN)
    dynamic_node_properties: dict[Any, Any] | None = wire(MAP)
    distribution_mode: str | None = wire(SYMBOL)
    filters: dict[Any, Any] | None = wire(MAP)
    default_outcome: Any = wire(ANY)
    outcomes: str | list[str] | None = wire(SYMBOLS)
    capabilities: str | list[str] | None = wire(SYMBOLS)


@table(0x29, "amqp:target:list")
@dataclass(frozen=True)
class Target(DescribedList):
    address: str | None = wire(STRING)
    durable: int | None = wire(UINT)
    expiry_policy: str | None = wire(SYMBOL)
    timeout: int | None = wire(UINT)
    dynamic: bool | None = wire(BOOLEAN)
    dynamic_node_properties: dict[Any, Any] | None = wire(MAP)
    capabilities: str | list[str] | None = wire(SYMBOLS)


# --- the properties section of a message --------------------------------------------------


@table(0x73, "amqp:properties:list")
@dataclass(frozen=True)
class Properties(DescribedList):
    message_id: Any = wire(ANY)
    user_id: bytes | None = wire(BINARY)
    to: str | None = wire(STRING)
    subject: str | None = wire(STRING)
    reply_to: str | None = wire(STRING)
    correlation_id: Any = wire(ANY)
    content_type: str | None = wire(SYMBOL)
    content_encoding: str | None = wire(SYMBOL)
    absolute_expiry_time: int | None = wire(TIMESTAMP)
    creation_time: int | None = wire(TIMESTAMP)
    group_id: str | None = wire(STRING)
    group_sequence: int | None = wire(UINT)
    reply_to_group_id: str | None = wire(STRING)


# --- performatives ---------------------------------------------------------------------------


@table(0x10, "amqp:open:list", performative=True)
@dataclass(frozen=True)
class Open(DescribedList):
    container_id: str = wire(STRING, mandatory=True)
    hostname: str | None = wire(STRING)
    max_frame_size: int | None = wire(UINT_WIDE)
    channel_max: int | None = wire(USHORT)
    idle_timeout: int | None = wire(UINT_WIDE)
    outgoing_locales: str | list[str] | None = wire(SYMBOLS)
    incoming_locales: str | list[str] | None = wire(SYMBOLS)
    offered_capabilities: str | list[str] | None = wire(SYMBOLS)
    desired_capabilities: str | list[str] | None = wire(SYMBOLS)
    properties: dict[Any, Any] | None = wire(MAP)


@table(0x11, "amqp:begin:list", performative=True)
@dataclass(frozen=True)
class Begin(DescribedList):
    remote_channel: int | None = wire(USHORT)
    next_outgoing_id: int = wire(UINT, mandatory=True)
    incoming_window: int = wire(UINT, mandatory=True)
    outgoing_window: int = wire(UINT, mandatory=True)
    handle_max: int | None = wire(UINT)
    offered_capabilities: str | list[str] | None = wire(SYMBOLS)
    desired_capabilities: str | list[str] | None = wire(SYMBOLS)
    properties: dict[Any, Any] | None = wire(MAP)


@table(0x12, "amqp:attach:list", performative=True)
@dataclass(frozen=True)
class Attach(DescribedList):
    name: str = wire(STRING, mandatory=True)
    handle: int = wire(UINT, mandatory=True)
    role: bool = wire(BOOLEAN, mandatory=True)
    send_settle_mode: int | None = wire(UBYTE)
    rcv_settle_mode: int | None = wire(UBYTE)
    source: Source | None = wire(composite(Source))
    target: Target | None = wire(composite(Target))
    unsettled: dict[Any, Any] | None = wire(MAP)
    incomplete_unsettled: bool | None = wire(BOOLEAN)
    initial_delivery_count: int | None = wire(UINT)
    max_message_size: int | None = wire(ULONG)
    offered_capabilities: str | list[str] | None = wire(SYMBOLS)
    desired_capabilities: str | list[str] | None = wire(SYMBOLS)
    properties: dict[Any, Any] | None = wire(MAP)


@table(0x13, "amqp:flow:list", performative=True)
@dataclass(frozen=True)
class Flow(DescribedList):
    next_incoming_id: int | None = wire(UINT)
    incoming_window: int = wire(UINT, mandatory=True)
    next_outgoing_id: int = wire(UINT, mandatory=True)
    outgoing_window: int = wire(UINT, mandatory=True)
    handle: int | None = wire(UINT)
    delivery_count: int | None = wire(UINT)
    link_credit: int | None = wire(UINT)
    available: int | None = wire(UINT)
    drain: bool | None = wire(BOOLEAN)
    echo: bool | None = wire(BOOLEAN)
    properties: dict[Any, Any] | None = wire(MAP)


@table(0x14, "amqp:transfer:list", performative=True)
@dataclass(frozen=True)
class Transfer(DescribedList):
    handle: int = wire(UINT, mandatory=True)
    delivery_id: int | None = wire(UINT)
    delivery_tag: bytes | None = wire(BINARY)
    message_format: int | None = wire(UINT)
    settled: bool | None = wire(BOOLEAN)
    more: bool | None = wire(BOOLEAN)
    rcv_settle_mode: int | None = wire(UBYTE)
    state: DescribedList | None = wire(DELIVERY_STATE)
    resume: bool | None = wire(BOOLEAN)
    aborted: bool | None = wire(BOOLEAN)
    batchable: bool | None = wire(BOOLEAN)


@table(0x15, "amqp:disposition:list", performative=True)
@dataclass(frozen=True)
class Disposition(DescribedList):
    role: bool = wire(BOOLEAN, mandatory=True)
    first: int = wire(UINT, mandatory=True)
    last: int | None = wire(UINT)
    settled: bool | None = wire(BOOLEAN)
    state: DescribedList | None = wire(DELIVERY_STATE)
    batchable: bool | None = wire(BOOLEAN)


@table(0x16, "amqp:detach:list", performative=True)
@dataclass(frozen=True)
class Detach(DescribedList):
    handle: int = wire(UINT, mandatory=True)
    closed: bool | None = wire(BOOLEAN)
    error: AmqpError | None = wire(ERROR)


@table(0x17, "amqp:end:list", performative=True)
@dataclass(frozen=True)
class End(DescribedList):
    error: AmqpError | None = wire(ERROR)


@table(0x18, "amqp:close:list", performative=True)
@dataclass(frozen=True)
class Close(DescribedList):
    error: AmqpError | None = wire(ERROR)


# --- SASL ------------------------------------------------------------------------------------


@table(0x40, "amqp:sasl-mechanisms:list", performative=True)
@dataclass(frozen=True)
class SaslMechanisms(DescribedList):
    sasl_server_mechanisms: str | list[str] = wire(SYMBOLS, mandatory=True)


@table(0x41, "amqp:sasl-init:list", performative=True)
@dataclass(frozen=True)
class SaslInit(DescribedList):
    mechanism: str = wire(SYMBOL, mandatory=True)
    initial_response: bytes | None = wire(BINARY)
    hostname: str | None = wire(STRING)


@table(0x44, "amqp:sasl-outcome:list", performative=True)
@dataclass(frozen=True)
class SaslOutcome(DescribedList):
    code: int = wire(UBYTE, mandatory=True)
    additional_data: bytes | None = wire(BINARY)


class UnknownPerformative(DecodeError):
    """A described list whose descriptor is no performative the emulator knows."""

    def __init__(self, descriptor: Any) -> None:
        super().__init__(f"unknown performative {descriptor!r}")
        self.descriptor = descriptor


def decode_performative(body: bytes | memoryview) -> tuple[DescribedList, int]:
    """The performative at the start of a frame body and where its payload (a transfer's message) starts."""
    if len(body) < 3 or body[0] != 0x00:
        raise DecodeError("a frame body must start with a described performative")
    descriptor, pos = c.decode(body, 1)
    if isinstance(descriptor, bool) or not isinstance(descriptor, (int, str)):
        raise DecodeError(f"performative descriptor {_short(descriptor)} is neither a code nor a name")
    cls = PERFORMATIVES.get(descriptor)
    if cls is None:
        raise UnknownPerformative(descriptor)
    values, end = c.decode_list(body, pos)
    return cls.from_fields(values), end
