"""``iotlib simulate``: write a simulated stretch of Fabrikam telemetry to Parquet."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from iotlib.fleet.simulate import Simulation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate Fabrikam devices and write the events to Parquet",
        description=(
            "Simulate Fabrikam's thermostats and write the events, sorted by sent_at, to a Parquet file "
            "(streamed chunk by chunk, so a full day fits in memory). The same seed gives the same file."
        ),
        epilog=(
            "faults: --fault KIND[:FIELD=VALUE,...], repeatable. Kinds: heat, stuck, spikes, skew, offline, "
            "duplicates, malformed. Examples: --fault spikes:probability=0.001  "
            "--fault heat:buildings=25+26,start=10m,duration=30m  --fault offline:fraction=0.01,outage=15m"
        ),
    )
    add_simulation_arguments(p)
    p.add_argument("--out", type=Path, default=Path("events.parquet"), help="output file (default events.parquet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)


def add_simulation_arguments(p: argparse.ArgumentParser) -> None:
    """The options that describe a simulation (shared by ``simulate``, ``ingest`` and ``demo``)."""
    p.add_argument(
        "--devices", type=int, default=None, help="number of devices (default 100,000, or all of --registry)"
    )
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry file (.parquet or .json) instead of generating one; --devices keeps its first N",
    )
    p.add_argument(
        "--registry-seed",
        type=int,
        default=0,
        help="seed of a generated registry (default 0: the shipped Fabrikam fleet)",
    )
    p.add_argument("--duration", default="1h", help="simulated time, e.g. 90s, 15m, 1h, 1d (default 1h)")
    p.add_argument(
        "--start",
        default=None,
        help="start time: RFC 3339, now, or now-10m / now+1h (default 2025-01-06T00:00:00Z; live ingest: now)",
    )
    p.add_argument("--scenario", default="NoErrorsExpected", choices=["NoErrorsExpected", "ThirtyDegreeReadings"])
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    p.add_argument(
        "--firmware",
        default="staggered",
        choices=["staggered", "synchronized"],
        help="staggered start (load levelling) or every device on the same second",
    )
    p.add_argument("--period", default="60s", help="reading period per device (default 60s)")
    p.add_argument("--jitter", type=float, default=0.1, help="jitter as a fraction of the period (default 0.1)")
    p.add_argument(
        "--temperature-range",
        default=None,
        metavar="LOW,HIGH",
        help="reflect the random walk within LOW..HIGH °C, e.g. --temperature-range=0,35 "
        "(default: unbounded, as the original)",
    )
    p.add_argument("--fault", action="append", default=[], metavar="SPEC", help="inject a fault (see below)")


def simulation_from_arguments(args: argparse.Namespace) -> tuple[Simulation, pl.DataFrame]:
    """The :class:`iotlib.fleet.simulate.Simulation` (and its registry) the options describe."""
    from iotlib.errors import ConfigurationError
    from iotlib.fleet import scenario, simulate

    if args.devices is not None and args.devices < 1:
        raise ConfigurationError(f"--devices must be at least 1, got {args.devices}")
    temperature_range = None
    if args.temperature_range:
        try:
            low, high = (int(v) for v in args.temperature_range.split(","))
        except ValueError:
            raise ConfigurationError(
                f"--temperature-range takes two whole numbers LOW,HIGH, got {args.temperature_range!r}"
            ) from None
        temperature_range = (low, high)
    if args.registry is not None:
        registry = scenario.load_registry(args.registry)
        if args.devices is not None:
            if args.devices > registry.height:
                raise ConfigurationError(f"--devices {args.devices} but {args.registry} holds {registry.height}")
            registry = registry.head(args.devices)
    else:
        registry = scenario.build_registry(args.devices or scenario.DEFAULT_DEVICES, seed=args.registry_seed)

    sim = simulate.simulation(
        registry,
        start=args.start,
        duration=args.duration,
        scenario=args.scenario,
        seed=args.seed,
        firmware=args.firmware,
        period=args.period,
        jitter=args.jitter,
        faults=args.fault,
        temperature_range=temperature_range,
    )
    return sim, registry


def _simulate(args: argparse.Namespace) -> int:
    from iotlib.fleet import simulate

    sim, registry = simulation_from_arguments(args)
    began = time.perf_counter()
    count = simulate.write_parquet(sim, args.out, progress=not args.no_progress)
    took = time.perf_counter() - began
    size = args.out.stat().st_size
    print(
        f"{count:,} events from {registry.height:,} devices over {sim.duration} "
        f"({args.scenario}, {args.firmware}, seed {args.seed}) -> {args.out} "
        f"({size / 1e6:.1f} MB, {count / max(took, 1e-9) / 1e6:.1f}M events/s)"
    )
    return 0
