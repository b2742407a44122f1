"""The app's four job kinds as functions a runner's worker process calls, and when KMC needs one.

Each wraps the library call a page used to make in its own session, turning the library's
progress callback into :func:`battgen.jobs.worker.report`. Arguments and results travel between
processes (pickled by Dask, never read from a user's file), so they are plain library objects.
"""

from __future__ import annotations

import os
import threading

from battgen.jobs.worker import report

# KMC work is bounded by lattice sites × the event bound. Up to this product a run stays in the
# page's own session (it ends within a second or two and shows its lattice live); above it, it
# queues as a job. 20×20 sites at 10 M events is the line: the page's default 50×50 run with its
# 50 M bound takes about a second when it passivates, but one that never does runs to its bound.
KMC_INLINE_ENV_VAR = "BATTGEN_KMC_INLINE_LIMIT"
KMC_INLINE_LIMIT = 20 * 20 * 10_000_000
PROGRESS_INTERVAL_S = 0.5
# One simulator per worker process (OpenCL set-up takes seconds); one job at a time uses it.
_AFM_LOCK = threading.Lock()


def kmc_inline_limit() -> int:
    text = os.environ.get(KMC_INLINE_ENV_VAR, "").strip()
    if not text:
        return KMC_INLINE_LIMIT
    if not text.isdigit():
        raise ValueError(f"{KMC_INLINE_ENV_VAR} must be a whole number of site-events, got {text!r}")
    return int(text)


def kmc_runs_inline(nx: int, ny: int, max_steps: int) -> bool:
    """True when a KMC run is small enough to run in the requesting session."""
    return int(nx) * int(ny) * int(max_steps) <= kmc_inline_limit()


def kmc_job(barriers, *, nx: int, ny: int, seed: int, max_steps: int, n_snapshots: int):
    """:func:`battgen.sei.kmc.simulate`, reporting the live lattice (uint8 bytes + shape)."""
    from battgen.sei.kmc import simulate

    def progress(steps: int, sim_time: float, lattice) -> None:
        report(message=f"{steps / 1e6:.2f} M events · simulated {sim_time:.3g} s", steps=steps,
               lattice=lattice.tobytes(), shape=list(lattice.shape))

    return simulate(barriers, nx=nx, ny=ny, seed=seed, max_steps=max_steps, n_snapshots=n_snapshots,
                    on_progress=progress, progress_interval_s=PROGRESS_INTERVAL_S)


def evaluate_job(structure, ion: str, *, name: str):
    """"Evaluate my electrode": :func:`battgen.data.evaluate.evaluate_structure`."""
    from battgen.data.evaluate import evaluate_structure

    return evaluate_structure(structure, ion, name=name,
                              progress=lambda fraction, message: report(fraction=fraction, message=message))


def afm_job(structure, *, ion: str, grid: int, keep: int):
    """AFM views of a structure (:func:`battgen.afm.dataset.simulate_structure`) on this process's simulator."""
    from battgen.afm import dataset
    from battgen.afm.simulate import SimulationConfig
    from battgen.runtime import requested_threads

    dataset._limit_opencl_threads(requested_threads())  # before PoCL starts its thread pool
    with _AFM_LOCK:
        report(message="starting the OpenCL simulator", fraction=0.0)
        simulator = dataset._worker_simulator(SimulationConfig(grid=grid))
        return dataset.simulate_structure(
            structure, simulator, ion=ion, keep=keep,
            progress=lambda done, total: report(fraction=done / total, message=f"view {done} of {total}"))


def design_job(db_path: str, request: dict, design_id: str, *, scheduler: str | None, table_dir: str) -> str:
    """A whole design request (:func:`battgen.design.jobs.run_design`), recorded in the store at ``db_path``.

    Its funnel and relaxations run one after another in this worker (a Dask client of threads in
    this process: the same code path as a cluster, and one job slot's worth of CPU), or on the
    Dask cluster at ``scheduler`` when the app is given one.
    """
    from battgen.design.jobs import make_client, run_design
    from battgen.design.request import DesignRequest
    from battgen.design.store import DesignStore

    client = make_client(scheduler, workers=1, processes=False)
    try:
        return run_design(DesignStore(db_path), DesignRequest.from_dict(request), client=client,
                          design_id=design_id, table_dir=table_dir)
    finally:
        client.close()
        if not scheduler and client.cluster is not None:
            client.cluster.close()
