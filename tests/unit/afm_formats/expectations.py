"""What every read must look like: the closed-form expected stack, the validity checks of a
result, a guard that turns a hang into a failure, and the fuzzing budget."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from battgen.afm.formats import ReadResult, common

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Turn a hang into a test failure (SIGALRM; the tests run in the main thread)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"read_stack took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def expected_linear(
    h: int, w: int, z: int, *, a: float = 1.0, b: float = 0.5, c: float = 10.0,
    target: tuple[int, int] = common.TARGET_SHAPE, n: int = common.N_HEIGHTS, reverse: bool = False,
) -> np.ndarray:
    """What read_stack must return for linear_stack(h, w, z): corners kept, min–max to [−1, 1]."""
    y = np.linspace(0, h - 1, target[0])
    x = np.linspace(0, w - 1, target[1])
    k = np.linspace(0, z - 1, n)
    if reverse:
        k = k[::-1]
    f = a * y[:, None, None] + b * x[None, :, None] + c * k[None, None, :]
    return 2 * (f - f.min()) / (f.max() - f.min()) - 1


def assert_valid(
    result: ReadResult, target: tuple[int, int] = common.TARGET_SHAPE, n: int = common.N_HEIGHTS
) -> None:
    assert isinstance(result, ReadResult)
    assert result.stack.shape == (*target, n)
    assert result.stack.dtype == np.float32
    assert np.isfinite(result.stack).all()
    assert result.stack.min() == -1.0 and result.stack.max() == 1.0
    assert result.operations and all(isinstance(op, str) for op in result.operations)


def message(excinfo: pytest.ExceptionInfo[ValueError]) -> str:
    return str(excinfo.value)
