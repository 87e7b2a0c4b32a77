"""Notebooks at full scale: wall time, CPU time and peak memory of the kernel and its children (Spark's JVM).

Runs each notebook top to bottom with ``jupyter nbconvert --execute`` (``IOTLIB_SCALE`` unset:
100,000 devices), sampling the resident memory and CPU time of the whole process tree every
0.2 s. When the full-scale day is not built yet (or with ``--fresh``, which deletes it before each
notebook) the notebook builds it, and its time includes that. Budget per notebook: 10 minutes
and 8 GB. Run it alone on the machine::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/notebooks.py --fresh 07 08

The executed copies go to ``out/notebooks/`` (their outputs hold the per-question timings).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _tree import Usage, load, watch

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS, BUDGET_GB = 600, 8.0


def run(notebook: Path, out: Path) -> Usage:
    """Wall time, CPU time and peak memory of the process tree executing ``notebook`` into ``out``."""
    env = {k: v for k, v in os.environ.items() if k != "IOTLIB_SCALE"}
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
           "--ExecutePreprocessor.timeout=3600", "--output", str(out), str(notebook)]  # fmt: skip
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=notebook.parent, env=env, stdout=subprocess.DEVNULL, stderr=err)
        usage = watch(proc, every=0.2)
        if usage.returncode:
            err.seek(0)
            print(err.read().decode(errors="replace")[-2000:], file=sys.stderr)
    return usage


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
    print(f"# {load()} at the start; budget {BUDGET_SECONDS // 60} min, {BUDGET_GB:g} GB per notebook")
    print(f"{'notebook':<32}{'seconds':>9}{'CPU s':>8}{'peak GB':>9}   notes")
    failed = False
    for number in args.numbers:
        notebook = next((ROOT / "notebooks").glob(f"{number}-*.ipynb"))
        fresh = args.fresh or not (folder / days.MANIFEST).exists()
        if args.fresh:
            shutil.rmtree(folder, ignore_errors=True)
        usage = run(notebook, out_dir / notebook.name)
        peak = usage.peak / 2**30
        ok = usage.returncode == 0 and usage.seconds <= BUDGET_SECONDS and peak <= BUDGET_GB
        failed |= usage.returncode != 0
        note = "failed" if usage.returncode else ("within budget" if ok else "OVER budget")
        note += "; the day built in this run" if fresh else "; the day reused"
        print(f"{notebook.stem:<32}{usage.seconds:>9.0f}{usage.cpu:>8.0f}{peak:>9.2f}   {note}; {load()} at the end")
    print("# CPU s: user + system of nbconvert, the kernel and their children (what load does not inflate)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
