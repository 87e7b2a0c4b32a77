"""A process and its children, watched from outside: peak resident memory and CPU time.

On a shared machine wall-clock time swells with the load; CPU time (user + system, every thread
of the process and of its children — Jupyter's kernel, Spark's JVM) barely does, so the
benchmarks print both, with the load averages around the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    """What a watched process tree used: wall seconds, CPU seconds, peak RSS (bytes), exit code."""

    seconds: float = 0.0
    cpu: float = 0.0
    peak: int = 0
    returncode: int | None = None
    killed_after: float | None = None  # seconds, when the tree passed the memory cap and was killed
    load: tuple[float, float, float] = field(default_factory=lambda: (0.0, 0.0, 0.0))


def load() -> str:
    """The 1, 5 and 15 minute load averages as text."""
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def cpu(proc: Any = None, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) so far of ``proc`` (a psutil.Process; default this one) and its
    living descendants; with ``reaped``, also of the children it has already waited for."""
    import psutil

    root = proc or psutil.Process()
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
        if reaped and p is root:
            total += t.children_user + t.children_system
    return total


def watch(
    proc: subprocess.Popen[str] | subprocess.Popen[bytes], *, every: float = 0.1, cap: int | None = None
) -> Usage:
    """Sample ``proc`` and its descendants until it exits (or, past ``cap`` bytes, kill them).

    CPU: what the kernel accounts to ``proc`` when it is reaped (itself and every descendant
    reaped below it), or — when more — the sum over every process seen of its last sampled user
    + system time (a descendant nobody reaps loses at most its last ``every`` seconds). The peak
    is of the tree's summed RSS.
    """
    import psutil

    root = psutil.Process(proc.pid)
    usage, sampled = Usage(), {}
    began = time.perf_counter()
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = usage.returncode = os.waitstatus_to_exitcode(status)
            break
        rss = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    sampled[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                pass
        usage.peak = max(usage.peak, rss)
        if cap is not None and rss > cap and usage.killed_after is None:
            usage.killed_after = time.perf_counter() - began
            for p in reversed(tree):
                try:
                    p.kill()
                except psutil.Error:
                    pass
        time.sleep(every)
    usage.seconds = time.perf_counter() - began
    usage.cpu = max(rusage.ru_utime + rusage.ru_stime, sum(sampled.values()))
    usage.load = os.getloadavg()
    return usage
