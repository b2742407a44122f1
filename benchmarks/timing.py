"""Shared timing helper of the benchmark scripts (not a benchmark itself: no ``bench_`` prefix)."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeats: int, warmup: bool = True) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one untimed warm-up call."""
    if warmup:
        fn()  # first-call allocations, kernel and scheduler set-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
