"""SEI growth kinetic Monte Carlo: the public entry point.

The model (Esmaeilpour et al., Adv. Energy Mater. 2023) as specified for BattGen: a 2-D lattice
of ≈ 1 nm sites above a graphite electrode in ethylene carbonate, 19 events with Arrhenius rates
k = (k_B T / h) exp(−E_a / k_B T), rejection-free BKL selection, clusters moving rigidly and
attaching on contact with the electrode or SEI, and a 4-row electron-tunnelling limit on the
second reductions (a 5-row limit on first reductions next to SEI).

Interpretations fixed here (the reference leaves them open):
- Pair events are counted per neighbouring site pair, so an event's rate grows with the contact.
- P + P → O + S turns one of the two radicals (chosen at random) into Li2EDC.
- OO and C move rigidly by one site when every target site is solvent.
- A run is *complete* when no event is possible. Mobile species alone in a closed pore where
  nothing can ever react (no partner, no reduction, no organic wall to join) would hop forever
  without changing anything; the kernel locks them in place (``locked_sites``), which changes
  no observable and lets such runs end.
"""

from __future__ import annotations

import io
import os
import threading
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from battgen.sei import kernel
from battgen.sei.barriers import N_EVENTS, resolve_barriers
from battgen.sei.defaults import MAX_SIZE, MIN_SIZE, SIMULATION_MAX_EVENTS
from battgen.sei.observables import compute_observables
from battgen.sei.run_status import describe_result
from battgen.sei.species import SOLVENT

BOLTZMANN_EV = 8.617333262e-5
BOLTZMANN_J = 1.380649e-23
PLANCK_J = 6.62607015e-34

STATUS_NAMES = {
    kernel.STATUS_COMPLETE: "complete",
    kernel.STATUS_MAX_STEPS: "max_steps",
    kernel.STATUS_MAX_TIME: "max_time",
}


@dataclass
class KMCResult:
    """Outcome of one run. ``lattice[0]`` is the row touching the electrode."""

    lattice: np.ndarray  # (ny, nx) uint8 species codes
    barriers: np.ndarray  # (19,) eV
    seed: int
    steps: int
    sim_time_s: float
    wall_time_s: float
    status: str
    event_counts: np.ndarray  # (19,) executed events per type
    locked_sites: int  # mobile species locked in inert closed pores
    observables: dict[str, float]
    hop_ratio: float | None = None  # temporal acceleration allowed (None = exact model)
    accelerated_events: int = 0  # events drawn with the diffusion moves slowed (0 = exact run)
    snapshots: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    snapshot_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    snapshot_times: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def completed(self) -> bool:
        return self.status == "complete"

    def to_npz(self, path: str | os.PathLike[str] | None = None) -> bytes | None:
        """Lattice, snapshots, barriers and event counts as a compressed .npz.

        Written to ``path`` (atomically) when given, otherwise returned as bytes (a download).
        """
        buffer = io.BytesIO()
        np.savez_compressed(buffer, lattice=self.lattice, snapshots=self.snapshots,
                            snapshot_steps=self.snapshot_steps, snapshot_times=self.snapshot_times,
                            barriers=self.barriers, event_counts=self.event_counts)
        if path is None:
            return buffer.getvalue()
        from battgen import atomic

        atomic.write_bytes(path, buffer.getvalue())
        return None

    def to_csv(self) -> str:
        """The final lattice as CSV of species codes, top row (farthest from the electrode) first."""
        return "\n".join(",".join(str(v) for v in row) for row in self.lattice[::-1]) + "\n"

    def summary(self) -> dict:
        """JSON-ready record: observables, counters and timings."""
        return {
            **self.observables,
            "steps": int(self.steps),
            "sim_time_s": float(self.sim_time_s),
            "wall_time_s": float(self.wall_time_s),
            "steps_per_s": float(self.steps / self.wall_time_s) if self.wall_time_s > 0 else None,
            "status": self.status,
            "passivated": self.completed,
            "status_reason": describe_result(self).detail,
            "locked_sites": int(self.locked_sites),
            "hop_ratio": self.hop_ratio,
            "accelerated_events": int(self.accelerated_events),
            "seed": int(self.seed),
            "size": list(self.lattice.shape[::-1]),
            "event_counts": {f"e{i + 1}": int(c) for i, c in enumerate(self.event_counts)},
        }


def event_rates(barriers: np.ndarray, temperature: float = 300.0) -> np.ndarray:
    """Arrhenius rates (1/s) of the 19 events for barriers in eV."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number of kelvin, got {temperature}")
    prefactor = BOLTZMANN_J * temperature / PLANCK_J
    return prefactor * np.exp(-np.asarray(barriers, float) / (BOLTZMANN_EV * temperature))


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer number of sites, got {value!r}")
    if not MIN_SIZE <= int(value) <= MAX_SIZE:
        raise ValueError(f"{name} must be between {MIN_SIZE} and {MAX_SIZE} sites, got {value}")
    return int(value)


def simulate(
    barriers: Sequence[float] | Mapping[str, float] | np.ndarray | None = None,
    *,
    nx: int = 50,
    ny: int = 50,
    seed: int = 0,
    temperature: float = 300.0,
    max_steps: int | None = None,
    max_time: float | None = None,
    n_snapshots: int = 0,
    tunnel_rows: int = 4,
    on_progress: Callable[[int, float, np.ndarray], None] | None = None,
    progress_interval_s: float = 0.25,
    hop_ratio: float | None = None,
    accelerate_after: int = 0,
) -> KMCResult:
    """Grow an SEI from a fresh electrode in pure solvent and return the final state.

    barriers: see :func:`battgen.sei.barriers.resolve_barriers` (None = defaults).
    n_snapshots: keep up to this many evenly spaced lattices for animation (0 = none).
    max_steps / max_time: bounds for the caller; the run otherwise goes to completion.
    on_progress: called from this thread every ``progress_interval_s`` with (events so far,
        simulated time, a copy of the live lattice) while the kernel runs in a worker thread.
    hop_ratio: None runs the model exactly. A number enables temporal acceleration: whenever
        the diffusion moves (events 12-15) are more than ``hop_ratio`` times as frequent as all
        reactions (events 1-11) together, their rates are scaled down, all by one factor, to
        that ratio; each mobile molecule still hops about ``hop_ratio`` times between its own
        reactions. An approximation: diffusion to the absorbing top is slowed too, so its
        effect on the observables has to be measured (``benchmarks/sei_acceleration.py``).
    accelerate_after: with ``hop_ratio``, run exactly for this many events first, so that runs
        finishing by then are exact and only the long tail of the others is accelerated.
    """
    full = resolve_barriers(barriers)
    nx = _check_size("nx", nx)
    ny = _check_size("ny", ny)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    steps_bound = SIMULATION_MAX_EVENTS if max_steps is None else int(max_steps)
    if steps_bound < 0:
        raise ValueError("max_steps must be non-negative")
    time_bound = np.inf if max_time is None else float(max_time)
    if not time_bound > 0:
        raise ValueError("max_time must be positive")
    if not 0 <= int(n_snapshots) <= 10_000:
        raise ValueError("n_snapshots must be between 0 and 10000")
    if not 1 <= int(tunnel_rows) < ny:
        raise ValueError("tunnel_rows must be at least 1 and below the lattice height")
    if hop_ratio is not None and not (np.isfinite(hop_ratio) and hop_ratio >= 1.0):
        raise ValueError(f"hop_ratio must be a number >= 1 (or None for the exact model), got {hop_ratio!r}")
    if isinstance(accelerate_after, bool) or not isinstance(accelerate_after, (int, np.integer)) \
            or accelerate_after < 0:
        raise ValueError(f"accelerate_after must be a non-negative number of events, got {accelerate_after!r}")

    rates = event_rates(full, temperature)
    code = np.full(nx * ny + 3, SOLVENT, np.int8)  # + boundary classes, see the kernel
    capacity = max(int(n_snapshots), 2) if n_snapshots else 0
    snapshots = np.zeros((capacity, nx * ny), np.int8)
    snapshot_steps = np.zeros(capacity, np.int64)
    snapshot_times = np.zeros(capacity, np.float64)
    event_counts = np.zeros(N_EVENTS, np.int64)
    # First guess of the frame interval: runs take ~1e5-1e6 steps; the kernel halves the frame
    # rate whenever the buffer fills, so the guess only needs to be on the small side.
    snapshot_every = max(1, 2000 // max(capacity, 1)) if capacity else 0

    progress = np.zeros(2)
    args = (code, rates, nx, ny, int(tunnel_rows), int(seed), steps_bound, time_bound,
            snapshots, snapshot_steps, snapshot_times, snapshot_every, event_counts, progress,
            float(hop_ratio or 0.0), int(accelerate_after))
    start = _time.perf_counter()
    if on_progress is None:
        outcome = kernel.run_kmc(*args)
    else:
        box: dict = {}

        def work():
            try:
                box["outcome"] = kernel.run_kmc(*args)
            except BaseException as exc:  # surfaced in the calling thread below
                box["error"] = exc

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(progress_interval_s)
            if worker.is_alive():
                on_progress(int(progress[0]), float(progress[1]),
                            code[: nx * ny].reshape(ny, nx).astype(np.uint8))
        if "error" in box:
            raise box["error"]
        outcome = box["outcome"]
    status, steps, sim_time, n_snap, _, n_locked, n_scaled = outcome
    wall = _time.perf_counter() - start

    lattice = code[: nx * ny].reshape(ny, nx).astype(np.uint8)
    frames = snapshots[:n_snap].reshape(n_snap, ny, nx).astype(np.uint8)
    frame_steps = snapshot_steps[:n_snap]
    frame_times = snapshot_times[:n_snap]
    if capacity:
        # always end on the final state so an animation finishes where the run did
        frames = np.concatenate([np.zeros((1, ny, nx), np.uint8), frames, lattice[None]])
        frame_steps = np.concatenate([[0], frame_steps, [steps]])
        frame_times = np.concatenate([[0.0], frame_times, [sim_time]])
    return KMCResult(
        lattice=lattice,
        barriers=full,
        seed=int(seed),
        steps=int(steps),
        sim_time_s=float(sim_time),
        wall_time_s=wall,
        status=STATUS_NAMES[int(status)],
        event_counts=event_counts,
        locked_sites=int(n_locked),
        observables=compute_observables(lattice),
        hop_ratio=None if hop_ratio is None else float(hop_ratio),
        accelerated_events=int(n_scaled),
        snapshots=frames,
        snapshot_steps=frame_steps,
        snapshot_times=frame_times,
    )


def warm_up() -> float:
    """Compile (or load from numba's cache) the kernel with a tiny run; returns seconds taken."""
    start = _time.perf_counter()
    simulate(nx=MIN_SIZE, ny=MIN_SIZE, seed=0, max_steps=1000)
    return _time.perf_counter() - start
