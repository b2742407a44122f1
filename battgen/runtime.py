"""Thread policy for every BattGen process (app, CLI, workers), chosen once at start-up.

Why: torch's OpenMP threads busy-wait ("spin") between parallel regions. With a second core
busy (another user's KMC run, a CHGNet relaxation, a design job) two spinning torch threads
fight it for the CPU and a 0.3 s screening took 15 s. Our models are small (about 1 M
parameters), so one passive thread per process loses little when idle and nothing under load;
parallelism comes from processes (the job runner, the dataset builders), not from threads.

The environment variables must be set before torch (and its OpenMP runtime) is first imported,
which is why ``app.py`` and ``battgen.cli`` call :func:`configure_threads` first thing. A user's
own ``OMP_NUM_THREADS`` / ``OMP_WAIT_POLICY`` are respected; ``BATTGEN_THREADS`` overrides ours.
"""

from __future__ import annotations

import os
import sys

THREADS_ENV_VAR = "BATTGEN_THREADS"
DEFAULT_THREADS = 1
# Read by libgomp (torch's OpenMP) at load time: idle threads sleep instead of spinning.
_WAIT_POLICY = "PASSIVE"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def requested_threads() -> int:
    """Threads per process: ``$BATTGEN_THREADS``, else ``$OMP_NUM_THREADS``, else 1."""
    for variable in (THREADS_ENV_VAR, "OMP_NUM_THREADS"):
        text = os.environ.get(variable, "").strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{variable} must be a whole number of threads, got {text!r}") from None
            if value < 1:
                raise ValueError(f"{variable} must be at least 1, got {value}")
            return value
    return DEFAULT_THREADS


def configure_threads(threads: int | None = None) -> int:
    """Apply the thread policy to this process (and the workers it starts); returns the thread count."""
    count = int(threads) if threads is not None else requested_threads()
    os.environ.setdefault("OMP_WAIT_POLICY", _WAIT_POLICY)
    for variable in _THREAD_VARIABLES:
        if threads is not None or THREADS_ENV_VAR in os.environ:
            os.environ[variable] = str(count)
        else:
            os.environ.setdefault(variable, str(count))
    if "torch" in sys.modules:  # too late for the environment: tell torch directly
        import torch

        torch.set_num_threads(count)
    return count


def thread_policy() -> dict:
    """What this process runs with, for the home page and benchmarks."""
    policy = {"threads": requested_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if "torch" in sys.modules:
        import torch

        policy["torch_threads"] = torch.get_num_threads()
    return policy
