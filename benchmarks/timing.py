"""Timing shared by the benchmark scripts (run as `python benchmarks/X.py`, which puts this folder
on sys.path)."""
from __future__ import annotations

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
