"""The journey's first steps: Fabrikam's device registry, and its readings simulated with faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iotlib.cli.journey.state import Demo

#: The heat event in building 1, as shares of the run: it starts a tenth in, warms over three
#: tenths and lasts seven (over ten minutes: from 1 to 8 min, fully hot from 4 min).
HEAT = {"start": 0.1, "ramp": 0.3, "duration": 0.7}
#: The faults the analysis answers look for, besides the heat: devices that go offline (buffering,
#: then a burst), frozen sensors, and sends that a lost acknowledgement made twice.
FAULTS = (
    "offline:fraction=0.02,outage=4m",
    "stuck:fraction=0.01",
    "duplicates:probability=0.002",
)


def heat_fault(minutes: int) -> str:
    """The heat event of a run of ``minutes``, as fault text (22 °C warmer)."""
    s = {k: round(share * minutes * 60) for k, share in HEAT.items()}
    return f"heat:buildings=1,start={s['start']}s,duration={s['duration']}s,rise=22,ramp={s['ramp']}s"


def heat_window(start: datetime, minutes: int) -> tuple[datetime, datetime]:
    """When building 1 is fully hot in a run of ``minutes`` from ``start``: the window the analysis asks about."""
    seconds = minutes * 60
    return (
        start + timedelta(seconds=round((HEAT["start"] + HEAT["ramp"]) * seconds)),
        start + timedelta(seconds=round((HEAT["start"] + HEAT["duration"]) * seconds)),
    )


def registry(demo: Demo) -> None:
    from iotlib.fleet import scenario

    reg = scenario.original_registry() if demo.devices <= 1_000 else scenario.default_registry()
    reg = reg.head(demo.devices)
    demo.results["registry"] = reg
    s = scenario.registry_summary(reg)
    demo.say(
        "scenario",
        f"{s['devices']:,} devices in {s['apartments']:,} apartments of {s['buildings']} "
        f"buildings ({s['floors_min']}-{s['floors_max']} floors), {s['time_zones']} time zone(s)",
    )


def simulate(demo: Demo) -> None:
    import polars as pl

    from iotlib.fleet import simulate as sim

    # The last few minutes, so event times sit just before their arrival, as live telemetry's do
    # (sent sped up from now on, times ahead of the clock would be a device clock running ahead).
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=demo.minutes)
    events = sim.generate(
        demo.results["registry"],
        start=start,
        duration=timedelta(minutes=demo.minutes),
        seed=demo.seed,
        faults=[heat_fault(demo.minutes), *FAULTS],
    )
    demo.results["events"] = events
    demo.results["span"] = (start, now)
    truth = events.select(
        pl.col("fault_heat").sum().alias("hot"),
        pl.col("device_id").filter(pl.col("fault_offline")).unique().sort().implode().alias("offline_devices"),
        pl.col("device_id").filter(pl.col("fault_stuck")).n_unique().alias("stuck"),
        pl.col("fault_duplicate").sum().alias("duplicates"),
    ).row(0, named=True)
    truth["offline"] = len(truth["offline_devices"])
    demo.results["truth"] = truth
    demo.say(
        "simulate",
        f"{events.height:,} readings over {demo.minutes} min (seed {demo.seed}): a heat event in building 1 "
        f"({truth['hot']:,} hot readings), {truth['offline']} devices offline for a while, "
        f"{truth['stuck']} frozen sensors, {truth['duplicates']} readings sent twice",
    )
