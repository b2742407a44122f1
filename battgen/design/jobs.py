"""A design request as a Dask job: funnel per arm, then the top k verified in parallel.

Runs on a ``LocalCluster`` (one torch thread per worker process) or any scheduler given by
address. Progress and results go to the SQLite store as they happen, so the page can poll it,
another process can read it, and a restart loses only the relaxations in flight. Cancelling sets
a flag in the store; the loop notices within ``POLL_S`` and cancels the futures.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
import warnings

from battgen import paths
from battgen.design.funnel import RESERVE, FunnelResult, run_funnel
from battgen.design.proposals import Proposal
from battgen.design.request import DesignRequest
from battgen.design.store import DesignStore
from battgen.design.verify import verify

POLL_S = 1.0
# App settings: the page's jobs go to this Dask scheduler (a real cluster) when it is set, else
# to a local cluster of this many worker processes.
SCHEDULER_ENV_VAR = "BATTGEN_DASK_SCHEDULER"
WORKERS_ENV_VAR = "BATTGEN_DESIGN_WORKERS"
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
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=40)
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


def _verify_task(proposal: dict, ion: str, table_dir: str, steps: int) -> dict:
    with _quiet():
        return verify(Proposal.from_dict(proposal), ion, table_dir, steps=steps)


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
                queues[arm] = list(enumerate(funnel.ranked[: request.max_candidates + RESERVE]))
        state = {arm: {"verified": 0, "running": 0, "relaxed": 0} for arm in request.arms}
        verify_futures: dict = {}

        def fill(arm: str) -> None:
            s = state[arm]
            while queues[arm] and s["verified"] + s["running"] < request.max_candidates:
                rank, proposal = queues[arm].pop(0)
                store.add_candidate(design_id, arm, rank, proposal.as_dict())
                future = client.submit(_verify_task, proposal.as_dict(), request.working_ion, table_dir,
                                       request.relax_steps, pure=False)
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
    """Design jobs of one app process: each runs ``run_design`` in a thread against one shared client."""

    def __init__(self, store: DesignStore, *, scheduler: str | None = None, workers: int = 1):
        self.store = store
        self.scheduler = scheduler
        self.workers = workers
        self._client = None
        self._threads: dict[str, threading.Thread] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        # Designs a previous process left running cannot finish any more: say so.
        store.mark_interrupted()

    @classmethod
    def from_environment(cls, store: DesignStore) -> "DesignJobs":
        import os

        workers = os.environ.get(WORKERS_ENV_VAR, "1")
        if not workers.isdigit() or int(workers) < 1:
            raise ValueError(f"{WORKERS_ENV_VAR} must be a positive whole number, got {workers!r}")
        return cls(store, scheduler=os.environ.get(SCHEDULER_ENV_VAR) or None, workers=int(workers))

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = make_client(self.scheduler, self.workers)
            return self._client

    def submit(self, request: DesignRequest) -> str:
        design_id = self.store.create(request.as_dict())
        thread = threading.Thread(target=self._run, args=(request, design_id), daemon=True,
                                  name=f"design-{design_id}")
        self._threads[design_id] = thread
        thread.start()
        return design_id

    def _run(self, request: DesignRequest, design_id: str) -> None:
        try:
            run_design(self.store, request, client=self.client(), design_id=design_id)
        except Exception as err:  # recorded in the store by run_design; kept for the page too
            self._errors[design_id] = str(err)
            if self.store.design(design_id)["status"] in ("queued", "running"):
                self.store.set_status(design_id, "failed", stage="failed", message=str(err))

    def running(self, design_id: str) -> bool:
        thread = self._threads.get(design_id)
        return bool(thread and thread.is_alive())

    def cancel(self, design_id: str) -> None:
        self.store.request_cancel(design_id)
