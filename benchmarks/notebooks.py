"""Notebooks at full scale: wall time and peak memory of the kernel and its children (Spark's JVM).

Runs each notebook top to bottom with ``jupyter nbconvert --execute`` (``IOTLIB_SCALE`` unset:
100,000 devices), sampling the resident memory of the whole process tree every 0.2 s. With
``--fresh`` the simulated day is deleted first, so the time includes building it. Budget per
notebook: 10 minutes and 8 GB. Run it alone on the machine::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/notebooks.py --fresh 07 08

The executed copies go to ``out/notebooks/`` (their outputs hold the per-question timings).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS, BUDGET_GB = 600, 8.0


def run(notebook: Path, out: Path) -> tuple[float, float, int]:
    """(seconds, peak GB of the process tree, exit code) of executing ``notebook`` into ``out``."""
    import psutil

    env = {k: v for k, v in os.environ.items() if k != "IOTLIB_SCALE"}
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
           "--ExecutePreprocessor.timeout=3600", "--output", str(out), str(notebook)]  # fmt: skip
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=notebook.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.2)
    _, err = proc.communicate()
    if proc.returncode:
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return time.perf_counter() - began, peak / 2**30, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("numbers", nargs="*", default=["07", "08"], help="notebook numbers (default: 07 08)")
    ap.add_argument("--fresh", action="store_true", help="delete the full-scale simulated day before each notebook")
    args = ap.parse_args()
    from iotlib.analysis import day as days
    from iotlib.fleet import scenario

    folder = days.day_folder(scenario.default_registry())
    out_dir = ROOT / "out" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'notebook':<32}{'seconds':>9}{'peak GB':>9}   budget {BUDGET_SECONDS // 60} min, {BUDGET_GB:g} GB")
    failed = False
    for number in args.numbers:
        notebook = next((ROOT / "notebooks").glob(f"{number}-*.ipynb"))
        if args.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        seconds, peak, code = run(notebook, out_dir / notebook.name)
        ok = code == 0 and seconds <= BUDGET_SECONDS and peak <= BUDGET_GB
        failed |= code != 0
        note = "failed" if code else ("within budget" if ok else "OVER budget")
        print(f"{notebook.stem:<32}{seconds:>9.0f}{peak:>9.2f}   {note}{' (day built fresh)' if args.fresh else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
