"""UpdateTemperatureEvent: JSON round trips, vectorised encoding, and a clear reason per malformed payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotlib.errors import ValidationError
from iotlib.fleet import events, scenario, simulate
from iotlib.fleet.faults import MalformedPayloads

UTC = UTC
MOMENT = datetime(2025, 1, 6, 12, 34, 56, 789012, tzinfo=UTC)

moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
temperatures = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(device=st.text(min_size=1, max_size=40), moment=moments, temperature=temperatures)
def test_one_event_round_trips_through_json(device: str, moment: datetime, temperature: float) -> None:
    event = events.UpdateTemperatureEvent(device, moment, temperature)
    body = events.encode(event)
    assert json.loads(body)["TimeObserved"].endswith("Z")
    assert events.validate(body) is None
    assert events.decode(body) == event


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.tuples(st.text(min_size=1, max_size=12), moments, temperatures), min_size=1, max_size=30))
def test_a_frame_round_trips_through_vectorised_encode_and_decode(rows) -> None:
    frame = pl.DataFrame(
        rows,
        schema={"device_id": pl.String, "time_observed": pl.Datetime("us", "UTC"), "temperature": pl.Float64},
        orient="row",
    )
    bodies = events.encode_frame(frame)
    decoded = events.decode_bodies(bodies)
    assert decoded["error"].null_count() == len(frame)
    assert decoded.select("device_id", "time_observed", "temperature").equals(frame)
    # Each vectorised body is one a single-event reader accepts as the same event.
    for body, row in zip(bodies, frame.iter_rows()):
        assert events.decode(body) == events.UpdateTemperatureEvent(*row)


def test_simulated_events_encode_to_valid_json_with_the_same_values() -> None:
    reg = scenario.build_registry(200, seed=2)
    sim = simulate.generate(reg, start=MOMENT, duration="20m", seed=4)
    bodies = events.encode_frame(sim)
    assert bodies.name == "body" and bodies.dtype == pl.String and len(bodies) == sim.height
    first = json.loads(bodies[0])
    assert list(first) == list(events.FIELDS)
    decoded = events.decode_bodies(bodies)
    assert decoded["error"].null_count() == sim.height
    assert (decoded["device_id"] == sim["device_id"].cast(pl.String)).all()
    assert (decoded["time_observed"] == sim["time_observed"]).all()
    assert (decoded["temperature"].cast(pl.Float32) == sim["temperature"]).all()


def test_ids_that_need_escaping_are_escaped() -> None:
    frame = pl.DataFrame(
        {
            "device_id": ['quote"d', "back\\slash", "tab\there", "plain"],
            "time_observed": [MOMENT] * 4,
            "temperature": [1.0, 2.0, 3.0, 4.0],
        }
    )
    bodies = events.encode_frame(frame)
    assert [json.loads(b)["DeviceId"] for b in bodies] == frame["device_id"].to_list()


def test_timestamps_are_rfc3339_utc_and_offsets_are_normalised() -> None:
    assert events.format_timestamp(MOMENT) == "2025-01-06T12:34:56.789012Z"
    paris = timezone(timedelta(hours=1))
    assert events.format_timestamp(MOMENT.astimezone(paris)) == "2025-01-06T12:34:56.789012Z"
    assert events.parse_timestamp("2025-01-06T13:34:56.7890129+01:00") == MOMENT  # .NET's 7 digits, truncated
    assert events.parse_timestamp("2025-01-06T12:34:56Z") == MOMENT.replace(microsecond=0)
    with pytest.raises(ValidationError, match="naive"):
        events.format_timestamp(datetime(2025, 1, 1))


def test_properties_are_the_original_metadata() -> None:
    event = events.UpdateTemperatureEvent("dev-1", MOMENT, 21.5)
    assert event.properties() == {"DeviceId": "dev-1", "EventType": "UpdateTemperatureEvent", "EventTypeVersion": "1"}
    assert tuple(event.properties()) == events.PROPERTY_KEYS


GOOD = {"DeviceId": "dev-1", "TimeObserved": "2025-01-06T12:34:56Z", "Temperature": 21.5}


def _body(**changes: object) -> bytes:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"DeviceId": "dev-1", "TimeObserved": ', "invalid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "not a JSON object (got array)"),
        (_body(Temperature=...), "missing field(s): Temperature"),
        (_body(DeviceId=..., TimeObserved=...), "missing field(s): DeviceId, TimeObserved"),
        (_body(Temperature="21.5"), "field Temperature must be a number, got string"),
        (_body(Temperature=True), "field Temperature must be a number, got boolean"),
        (_body(DeviceId=42), "field DeviceId must be a non-empty string, got number"),
        (_body(DeviceId=""), "field DeviceId must be a non-empty string, got an empty string"),
        (_body(TimeObserved=1736166896), "field TimeObserved must be an RFC 3339 string, got number"),
        (_body(TimeObserved="12/8/2017 3:03:17 AM"), "not an RFC 3339 timestamp"),
        (_body(TimeObserved="2025-01-06T12:34:56"), "not an RFC 3339 timestamp"),
        (_body(TimeObserved="2025-02-30T12:34:56Z"), "not a valid date and time"),
        (b'{"DeviceId":"d","TimeObserved":"2025-01-06T12:34:56Z","Temperature":NaN}', "invalid JSON: NaN"),
        (b'{"DeviceId":"d","TimeObserved":"2025-01-06T12:34:56Z","Temperature":1e999}', "must be finite"),
    ],
)
def test_validator_gives_a_clear_reason(body: bytes, reason: str) -> None:
    got = events.validate(body)
    assert got is not None and reason in got
    with pytest.raises(ValidationError, match="malformed UpdateTemperatureEvent"):
        events.decode(body)
    vectorised = events.validate_bodies([body, events.encode(events.UpdateTemperatureEvent("d", MOMENT, 1.0))])
    assert vectorised[0] == got and vectorised[1] is None


def test_unusual_but_valid_bodies_take_the_slow_path_and_pass() -> None:
    bodies = [
        b'{ "Temperature": 3, "TimeObserved": "2025-01-06T13:34:56+01:00", "DeviceId": "x", "Humidity": 40 }',
        _body(),
    ]
    decoded = events.decode_bodies(bodies)
    assert decoded["error"].null_count() == 2
    assert decoded["time_observed"][0] == MOMENT.replace(microsecond=0)
    assert decoded["temperature"].to_list() == [3.0, 21.5]


def test_injected_malformed_payloads_are_each_caught_with_their_reason() -> None:
    reg = scenario.build_registry(300, seed=5)
    sim = simulate.generate(reg, start=MOMENT, duration="30m", faults=[MalformedPayloads(probability=0.05)])
    kinds = sim["fault_malformed"].cast(pl.String)
    assert set(kinds.drop_nulls().unique()) == set(events.MALFORMED_KINDS)
    reasons = events.validate_bodies(events.encode_frame(sim))
    assert (reasons.is_null() == kinds.is_null()).all(), "exactly the marked events are malformed"
    expected = {
        "invalid_json": "invalid JSON",
        "missing_field": "missing field(s): Temperature",
        "wrong_type": "field Temperature must be a number, got string",
        "bad_timestamp": "not an RFC 3339 timestamp",
    }
    for kind, reason in expected.items():
        marked = reasons.filter(kinds == kind)
        assert len(marked) and marked.str.contains(reason, literal=True).all(), kind
    # Without the ground truth (malformed=False), every body is well formed.
    assert events.validate_bodies(events.encode_frame(sim, malformed=False)).null_count() == sim.height


def test_encoder_refuses_what_it_cannot_write() -> None:
    frame = pl.DataFrame({"device_id": ["a"], "time_observed": [MOMENT], "temperature": [float("nan")]})
    with pytest.raises(ValidationError, match="non-finite"):
        events.encode_frame(frame)
    with pytest.raises(ValidationError, match="missing column.*temperature"):
        events.encode_frame(frame.drop("temperature"))
    with pytest.raises(ValidationError, match="finite"):
        events.encode(events.UpdateTemperatureEvent("a", MOMENT, float("inf")))
    with pytest.raises(ValidationError, match="naive"):
        events.UpdateTemperatureEvent("a", datetime(2025, 1, 1), 1.0)
