"""Timing shared by the benchmark scripts (run as `python benchmarks/X.py`, which puts this folder
on sys.path)."""
from __future__ import annotations

import os
import time


def best_of(fn, repeats: int, warmup: bool = False) -> float:
    """Fastest of `repeats` timed calls of fn(), in seconds: the machine is shared, so the minimum
    is the signal. warmup=True makes one untimed call first."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_seconds(pids) -> float:
    """User + system CPU seconds used so far by `pids` (gone processes count 0), from /proc."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick
    return total
