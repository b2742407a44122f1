"""A design request as a Dask job: funnel per arm, then the top k verified in parallel.

Runs on a ``LocalCluster`` (one torch thread per worker process) or any scheduler given by
address. Progress and results go to the SQLite store as they happen, so the page can poll it,
another process can read it, and a restart loses only the relaxations in flight. Cancelling sets
a flag in the store; the loop notices within ``POLL_S`` and cancels the futures. In the app a
whole request is one job of the app's job runner (:class:`DesignJobs`, :mod:`battgen.jobs`).
"""

from __future__ import annotations

import contextlib
import time
import traceback
import warnings

from battgen import paths
from battgen.design.funnel import RESERVE, FunnelResult, run_funnel
from battgen.design.prerelax import PRERELAX_CANDIDATES, prerelax, rerank
from battgen.design.proposals import Proposal
from battgen.design.request import PRERELAXED_ARMS, DesignRequest
from battgen.design.store import ACTIVE, DesignStore
from battgen.design.verify import verify

POLL_S = 1.0
# App setting: a design job's funnel and relaxations go to this Dask scheduler (a real cluster)
# when it is set, else they run in the job's own worker process.
SCHEDULER_ENV_VAR = "BATTGEN_DASK_SCHEDULER"
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class Cancelled(Exception):
    pass


def table_directory():
    return paths.asset_dir(paths.ELECTRODES)


def make_client(scheduler: str | None = None, workers: int = 1, processes: bool = True):
    """A Dask client: the scheduler at ``scheduler``, or a local cluster of ``workers`` processes."""
    import os

    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s")
        except OSError as err:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    if workers < 1:
        raise ValueError("a local cluster needs at least one worker")
    os.environ.update(WORKER_ENV)  # inherited by spawned workers before torch loads there
    # The scheduler's always-on HTTP endpoint takes any free loopback port, not 8787 (see parallel.py).
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=40,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    return Client(cluster)


@contextlib.contextmanager
def _quiet():
    # Worker processes share the terminal: pymatgen's magmom warnings drown the progress lines.
    # (stdout is not redirected here: with in-process workers that would swap sys.stdout under
    # the caller's feet; CHGNet's banner is silenced where the model loads, in verify.py.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _funnel_task(request: dict, arm: str, table_dir: str) -> dict:
    with _quiet():
        return run_funnel(DesignRequest.from_dict(request), arm, table_dir).as_dict()


def _verify_task(proposal: dict, ion: str, table_dir: str, steps: int, novelty_tables: tuple = ()) -> dict:
    with _quiet():
        return verify(Proposal.from_dict(proposal), ion, table_dir, steps=steps, novelty_tables=novelty_tables)


def _wait(client, futures, store, design_id):
    from dask.distributed import wait

    while True:
        if store.cancel_requested(design_id):
            client.cancel(list(futures))
            raise Cancelled()
        try:
            done, _ = wait(list(futures), timeout=POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished within POLL_S: look at the cancel flag again
            continue
        if done:
            return done


def _prerelax_task(proposal: dict, ion: str) -> dict:
    with _quiet():
        return prerelax(Proposal.from_dict(proposal), ion)


def _prerelaxed(client, store: DesignStore, design_id: str, request: DesignRequest, arm: str,
                funnel: FunnelResult, table_dir: str, active: dict, say) -> list[Proposal]:
    """The arm's survivors with the best ``PRERELAX_CANDIDATES`` re-ranked by a short CHGNet relaxation;
    its seconds count as the arm's funnel time (the evaluation charges them to the arm)."""
    from battgen.data.table import load_scaler
    from battgen.design.funnel import ranking_targets

    head = funnel.ranked[:PRERELAX_CANDIDATES]
    store.set_stage(design_id, f"pre-relaxing {len(head)} ({arm})")
    futures = {client.submit(_prerelax_task, p.as_dict(), request.working_ion, pure=False): p.key for p in head}
    active.update(futures)
    estimates: dict[str, dict] = {}
    while futures:
        for future in _wait(client, futures, store, design_id):
            key = futures.pop(future)
            active.pop(future)
            try:
                estimates[key] = future.result()
            except Exception as err:  # a dead worker costs this proposal its estimate, not the design
                estimates[key] = {"key": key, "status": "failed", "reason": f"{type(err).__name__}: {err}",
                                  "seconds": 0.0}
    ranked = rerank(head, estimates, ranking_targets(request), load_scaler(table_dir)) + funnel.ranked[len(head):]
    estimated = sum(e["status"] == "estimated" for e in estimates.values())
    seconds = funnel.seconds + sum(float(e.get("seconds") or 0.0) for e in estimates.values())
    store.record_funnel(design_id, arm, {**funnel.counts, "prerelaxed": estimated}, funnel.rejections, seconds)
    say(f"  {arm}: pre-relaxed {estimated}/{len(head)}; new order " + ", ".join(p.formula for p in ranked[:3]))
    return ranked


def run_design(store: DesignStore, request: DesignRequest, *, client, design_id: str | None = None,
               table_dir=None, log=None) -> str:
    """Run ``request`` to the end (or cancellation), recording everything in ``store``."""

    table_dir = str(table_dir or table_directory())
    say = log or (lambda message: None)
    design_id = design_id or store.create(request.as_dict())
    start = time.perf_counter()
    store.set_status(design_id, "running", stage="proposing and filtering")
    say(f"design {design_id}: proposing and filtering ({', '.join(request.arms)})")
    active: dict = {}
    try:
        funnel_futures = {client.submit(_funnel_task, request.as_dict(), arm, table_dir, pure=False): arm
                          for arm in request.arms}
        active.update(funnel_futures)
        queues: dict[str, list] = {}
        while funnel_futures:
            for future in _wait(client, funnel_futures, store, design_id):
                arm = funnel_futures.pop(future)
                active.pop(future)
                funnel = FunnelResult.from_dict(future.result())
                store.record_funnel(design_id, arm, funnel.counts, funnel.rejections, funnel.seconds)
                say(f"  {arm}: " + " → ".join(f"{k} {v}" for k, v in funnel.counts.items()))
                ranked = funnel.ranked
                if arm in PRERELAXED_ARMS and ranked:
                    ranked = _prerelaxed(client, store, design_id, request, arm, funnel, table_dir, active, say)
                queues[arm] = list(enumerate(ranked[: request.max_candidates + RESERVE]))
        state = {arm: {"verified": 0, "running": 0, "relaxed": 0} for arm in request.arms}
        verify_futures: dict = {}

        def fill(arm: str) -> None:
            s = state[arm]
            while queues[arm] and s["verified"] + s["running"] < request.max_candidates:
                rank, proposal = queues[arm].pop(0)
                store.add_candidate(design_id, arm, rank, proposal.as_dict())
                future = client.submit(_verify_task, proposal.as_dict(), request.working_ion, table_dir,
                                       request.relax_steps, request.novelty_tables, pure=False)
                verify_futures[future] = (arm, proposal.key)
                active[future] = arm
                s["running"] += 1

        for arm in request.arms:
            fill(arm)
        total = sum(s["running"] for s in state.values())
        store.set_stage(design_id, f"relaxing 0/{total}")
        finished = 0
        while verify_futures:
            for future in _wait(client, verify_futures, store, design_id):
                arm, key = verify_futures.pop(future)
                active.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # a dead worker is a failed candidate, with its reason
                    result = {"key": key, "arm": arm, "status": "failed", "reason": f"{type(err).__name__}: {err}"}
                store.finish_candidate(design_id, arm, result)
                s = state[arm]
                s["running"] -= 1
                s["relaxed"] += 1
                s["verified"] += result["status"] == "verified"
                store.update_counts(design_id, arm, relaxed=s["relaxed"], verified=s["verified"])
                finished += 1
                say(f"  {arm}: {key} {result['status']}" + (f" ({result['reason']})" if result.get("reason") else ""))
                fill(arm)
            total = finished + len(verify_futures)
            store.set_stage(design_id, f"relaxing {finished}/{total}")
        verified = sum(s["verified"] for s in state.values())
        store.set_status(design_id, "done", stage="done", message=f"{verified} verified",
                         seconds=time.perf_counter() - start)
    except Cancelled:
        _close_running(store, design_id, "cancelled before it finished")
        store.set_status(design_id, "cancelled", stage="cancelled", message="cancelled by the user",
                         seconds=time.perf_counter() - start)
    except Exception as err:
        client.cancel(list(active))
        _close_running(store, design_id, "the design job failed")
        store.set_status(design_id, "failed", stage="failed", message=f"{type(err).__name__}: {err}",
                         seconds=time.perf_counter() - start)
        if not isinstance(err, ValueError):
            traceback.print_exc()
        raise
    return design_id


def _close_running(store: DesignStore, design_id: str, reason: str) -> None:
    for c in store.candidates(design_id, status="running"):
        store.finish_candidate(design_id, c["arm"], {"key": c["key"], "status": "cancelled", "reason": reason})


class DesignJobs:
    """Design requests of one app process, each one job of the app's job runner (kind ``design``).

    A design is a job like a KMC run or a CHGNet evaluation: it waits its turn behind them, holds
    one worker process while it runs (funnel and relaxations one after another there, or on the
    cluster at ``scheduler``), has a time limit, and a cancel kills that process at once rather
    than waiting for a relaxation in flight. The store records everything as before; when a job
    ends without ``run_design`` having said so (killed, timed out), :meth:`_ended` does.
    Designs are not tied to a browser session: they are stored and meant to be looked at later.
    """

    def __init__(self, store: DesignStore, runner, *, scheduler: str | None = None):
        self.store = store
        self.runner = runner
        self.scheduler = scheduler
        self._jobs: dict[str, str] = {}  # design id -> job id
        # Designs a previous process left running cannot finish any more: say so.
        store.mark_interrupted()

    @classmethod
    def from_environment(cls, store: DesignStore, runner) -> "DesignJobs":
        import os

        return cls(store, runner, scheduler=os.environ.get(SCHEDULER_ENV_VAR) or None)

    def submit(self, request: DesignRequest) -> str:
        from battgen.jobs.tasks import design_job

        design_id = self.store.create(request.as_dict())
        self._jobs[design_id] = self.runner.submit(
            "design", design_job, str(self.store.path), request.as_dict(), design_id, scheduler=self.scheduler,
            table_dir=str(table_directory()), on_end=lambda view: self._ended(design_id, view))
        return design_id

    def _ended(self, design_id: str, view) -> None:
        from battgen.jobs import CANCELLED, DONE

        if view.status == DONE or self.store.design(design_id)["status"] not in ACTIVE:
            return
        cancelled = view.status == CANCELLED
        _close_running(self.store, design_id, view.message or view.status)
        self.store.set_status(design_id, "cancelled" if cancelled else "failed",
                              stage="cancelled" if cancelled else "failed", message=view.message,
                              seconds=view.running_s)

    def job(self, design_id: str):
        """The design's job in the runner (queue position, elapsed time), None once it has ended."""
        job_id = self._jobs.get(design_id)
        return None if job_id is None else self.runner.status(job_id)

    def running(self, design_id: str) -> bool:
        view = self.job(design_id)
        return bool(view and view.active)

    def cancel(self, design_id: str) -> None:
        self.store.request_cancel(design_id)  # a run_design that is still reading the flag stops cleanly
        job_id = self._jobs.get(design_id)
        if job_id is not None:
            self.runner.cancel(job_id)
