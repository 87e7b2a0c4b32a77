"""Notebooks at full scale: wall time, CPU time and peak memory of the kernel and its children (Spark's JVM).

Runs each notebook (all of them, or those named) top to bottom with ``jupyter nbconvert
--execute`` (``IOTLIB_SCALE`` unset: 100,000 devices), sampling the resident memory and CPU time of
the whole process tree every 0.2 s. Budget: every notebook peaks at 6 GB or less (a 16 GB laptop);
07 and 08 also finish within 10 minutes, building the day included. When the full-scale day is not
built yet (or with ``--fresh``, which deletes it before each notebook) the notebook builds it, and
its time includes that. Without connection strings in the environment the notebooks get a local
stack of their own on free ports (in the project's ``.iotlib``, stopped at the end). Run it alone on
the machine::

    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/notebooks.py          # all
    flock /tmp/iotlib-bench.lock .venv/bin/python benchmarks/notebooks.py --fresh 07 08

The executed copies go to ``out/notebooks/`` (their outputs hold the per-question timings).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _tree import Usage, load, watch

ROOT = Path(__file__).resolve().parents[1]
BUDGET_GB = 6.0
BUDGET_SECONDS = {"07": 600, "08": 600}  # the analysis chapters, building the day included


def run(notebook: Path, out: Path, stack_env: dict[str, str]) -> Usage:
    """Wall time, CPU time and peak memory of the process tree executing ``notebook`` into ``out``."""
    env = {k: v for k, v in os.environ.items() if k != "IOTLIB_SCALE"} | stack_env
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
    ap.add_argument("numbers", nargs="*", help="notebook numbers (default: every notebook)")
    ap.add_argument("--fresh", action="store_true", help="delete the full-scale simulated day before each notebook")
    args = ap.parse_args()
    from iotlib.analysis import day as days
    from iotlib.fleet import scenario

    folder = days.day_folder(scenario.default_registry())
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    if args.numbers:
        unknown = [n for n in args.numbers if not any(nb.name.startswith(f"{n}-") for nb in notebooks)]
        if unknown:
            ap.error(
                f"no notebook numbered {', '.join(unknown)} (there are {notebooks[0].name[:2]}..{notebooks[-1].name[:2]})"
            )
        notebooks = [nb for nb in notebooks if nb.name[:2] in args.numbers]
    out_dir = ROOT / "out" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"# {load()} at the start; budget {BUDGET_GB:g} GB per notebook, 07 and 08 within 10 min")
    print(f"{'notebook':<36}{'seconds':>9}{'CPU s':>8}{'peak GB':>9}   notes")
    failed = False
    with _stack() as stack_env:
        for notebook in notebooks:
            number = notebook.name[:2]
            fresh = args.fresh or not (folder / days.MANIFEST).exists()
            if args.fresh:
                shutil.rmtree(folder, ignore_errors=True)
            usage = run(notebook, out_dir / notebook.name, stack_env)
            peak = usage.peak / 2**30
            ok = peak <= BUDGET_GB and usage.seconds <= BUDGET_SECONDS.get(number, float("inf"))
            failed |= usage.returncode != 0 or not ok
            note = "failed" if usage.returncode else ("within budget" if ok else "OVER budget")
            if number in BUDGET_SECONDS:
                note += "; the day built in this run" if fresh else "; the day reused"
            print(f"{notebook.stem:<36}{usage.seconds:>9.0f}{usage.cpu:>8.0f}{peak:>9.2f}   {note}; {load()} at the end",
                  flush=True)  # fmt: skip
    print("# CPU s: user + system of nbconvert, the kernel and their children (what load does not inflate)")
    return 1 if failed else 0


@contextlib.contextmanager
def _stack() -> Iterator[dict[str, str]]:
    """The connection strings the notebooks use: the environment's, or a local stack's on free ports."""
    from iotlib import connections
    from iotlib.local import stack

    if os.environ.get(connections.EVENTHUB_ENV) and os.environ.get(connections.STORAGE_ENV):
        yield {}
        return
    with stack.up(home=ROOT / ".iotlib", blob_port=0, eventhub_port=0) as running:
        env = running.environ()
        print(f"# a local stack for the notebooks: {env[connections.EVENTHUB_ENV].split(';')[0]}", flush=True)
        yield env


if __name__ == "__main__":
    raise SystemExit(main())
