"""Shared timing helper of the benchmark scripts (not a benchmark itself: no ``bench_`` prefix)."""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time
from typing import Iterator


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


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def cpu_hog(enabled: bool = True) -> Iterator[None]:
    """One process keeping a core busy for the duration of the block (another user's job)."""
    if not enabled:
        yield
        return
    hog = multiprocessing.Process(target=_spin, daemon=True)
    hog.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        hog.terminate()
        hog.join()
