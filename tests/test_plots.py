"""The notebook figures are built from real frames and carry what their titles promise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from iotlib.fleet import plots, scenario, simulate

START = datetime(2025, 1, 6, tzinfo=UTC)


def test_figures_draw_the_data() -> None:
    reg = scenario.build_registry(1_200, seed=2)
    overview = plots.registry_overview(reg)
    assert [ax.get_title() for ax in overview.axes] == [
        "Devices per building",
        "Floors per building",
        "Buildings per time zone",
    ]
    assert len(overview.axes[2].patches) == reg["time_zone"].n_unique()

    hour = simulate.generate(reg, start=START, duration="1h")
    devices = reg["device_id"].head(3).to_list()
    traces = plots.temperature_traces(hour, devices)
    lines = traces.axes[0].get_lines()
    assert len(lines) == 3 and all(len(line.get_xdata()) >= 55 for line in lines)

    end = START + timedelta(minutes=5)
    runs = {f: simulate.generate(reg, start=START, duration="5m", firmware=f) for f in simulate.FIRMWARES}
    load = plots.load_profiles(runs, devices=reg.height, start=START, end=end)
    ax = load.axes[0]
    assert ax.get_yscale() == "log"
    synchronized = ax.get_lines()[1]
    assert max(synchronized.get_ydata()) == reg.height and len(synchronized.get_xdata()) == 300
    # The dotted line is the units that absorb the staggered peak: above that peak, within a unit of it.
    staggered_peak = max(ax.get_lines()[0].get_ydata())
    units_line = ax.get_lines()[-1]
    level = units_line.get_ydata()[0]
    assert units_line.get_linestyle() == ":" and level == plots.throughput_units(staggered_peak) * 1_000
    assert staggered_peak <= level < staggered_peak + 1_000
    assert "the staggered peak" in str(units_line.get_label())
