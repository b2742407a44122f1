"""The app's bounded job runner: a FIFO queue in front of a Dask LocalCluster of worker processes.

One runner per server process (see :func:`battgen.ui.jobs.job_runner`) runs every long job of
every session: KMC simulations above a size, CHGNet evaluations, AFM simulations and design
requests. At most ``workers`` jobs run at once, each in its own worker process with the
one-thread policy of :mod:`battgen.runtime`; the others wait in submission order and can see
their place in the queue.

Why Dask, and why our own queue in front of it: the design loop already ran on a Dask
``LocalCluster``, so the app keeps one mechanism. But Dask can only *forget* a running task, not
stop it, and its scheduler's queue has no positions to show. So the runner keeps the queue, hands
a job to Dask only when a worker is idle and pins it to that worker; a timeout or a cancel then
kills exactly that worker process, and the cluster's nanny starts a fresh one in its place.

A job may belong to an owner (a Streamlit session id). ``owner_alive(owner)`` is asked every
:data:`OWNER_CHECK_S`; a job whose owner has been gone for ``owner_grace_s`` (a browser that
reconnects after a network blip keeps its session) is cancelled, queued or running, so a closed
browser tab frees its slot.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from battgen.jobs.kinds import job_kind, timeout_for
from battgen.jobs.worker import PROGRESS_TOPIC, execute

QUEUED, RUNNING = "queued", "running"
DONE, FAILED, TIMED_OUT, CANCELLED = "done", "failed", "timed out", "cancelled"
ACTIVE = (QUEUED, RUNNING)
WORKERS_ENV_VAR = "BATTGEN_JOB_WORKERS"
POLL_S = 0.2
OWNER_CHECK_S = 2.0
OWNER_GRACE_S = 10.0
# Results a page never collected (its session ended first) are dropped after this long.
KEEP_ENDED_S = 600.0
USER_CANCEL = "cancelled by the user"
OWNER_GONE = "cancelled: the browser session that started it has closed"


def default_workers() -> int:
    """Jobs at once: ``$BATTGEN_JOB_WORKERS``, else one per core's worth of threads less one.

    One core's worth is left to the server itself, so pages and screening answer while jobs run.
    """
    from battgen.runtime import requested_threads

    text = os.environ.get(WORKERS_ENV_VAR, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{WORKERS_ENV_VAR} must be a positive whole number, got {text!r}")
        return int(text)
    return max(1, (os.cpu_count() or 1) // requested_threads() - 1)


def keep_main_script_out_of_children() -> None:
    """Processes this one spawns from now on do not re-run a script runner's ``__main__``.

    Spawn re-executes the parent's ``__main__`` file in every child (as ``__mp_main__``) so that
    objects defined there unpickle. Under Streamlit ``__main__`` is a stand-in module for the
    script being run (app.py or a page), so every worker start, and every restart after a kill,
    would run that script in bare mode: imports, model loads, warnings. Jobs are module-level
    functions of battgen and never need it. A ``__main__`` that is the program that was started
    (``python script.py``) is passed on as before.
    """
    import multiprocessing.spawn as spawn

    if getattr(spawn.get_preparation_data, "battgen_keeps_main_out", False):
        return
    original = spawn.get_preparation_data

    def get_preparation_data(name):
        data = original(name)
        started = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None
        if data.get("init_main_from_path") and os.path.abspath(data["init_main_from_path"]) != started:
            del data["init_main_from_path"]
        return data

    get_preparation_data.battgen_keeps_main_out = True
    spawn.get_preparation_data = get_preparation_data


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


@dataclass(frozen=True)
class JobView:
    """A job as a page sees it, at one moment."""

    id: str
    kind: str
    label: str
    status: str
    owner: str | None
    position: int | None  # 1 = next to start; None unless queued
    queued: int  # jobs waiting in all
    waited_s: float  # in the queue
    running_s: float  # since it started (0 while queued)
    timeout_s: float
    progress: dict  # the job's latest report (message, fraction, ...)
    result: Any = None  # what the job returned, when done
    message: str | None = None  # why it failed, timed out or was cancelled

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def explanation(self) -> str:
        """One sentence for a page when the job did not end with a result."""
        if self.status == CANCELLED:
            return f"The {self.label} was {self.message}."
        return self.message or f"The {self.label} {self.status}."


@dataclass
class _Job:
    id: str
    kind: str
    fn: Callable
    args: tuple
    kwargs: dict
    owner: str | None
    timeout_s: float
    on_end: Callable[[JobView], None] | None
    submitted: float = field(default_factory=time.monotonic)
    status: str = QUEUED
    started: float | None = None
    ended: float | None = None
    future: Any = None
    worker: str | None = None
    pid: int | None = None
    stop: tuple[str, str] | None = None  # (status, message) asked for by cancel(), applied by the loop
    result: Any = None
    message: str | None = None


class JobRunner:
    """Queue, run, time out and cancel jobs; see the module's docstring."""

    def __init__(self, workers: int | None = None, *, owner_alive: Callable[[str], bool] | None = None,
                 owner_grace_s: float = OWNER_GRACE_S, poll_s: float = POLL_S):
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError("the job runner needs at least one worker")
        self._owner_alive = owner_alive
        self._owner_grace_s = owner_grace_s
        self._owners_gone: dict[str, float] = {}  # owner -> when it was first seen gone
        self._poll_s = poll_s
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        # Written by the Dask client's event-loop thread, read by anyone: plain dict assignment
        # only, never under _lock (the loop thread holds _lock while it waits on that event loop).
        self._progress: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._cluster = None
        self._client = None
        self._start_error: str | None = None
        self._pids: dict[str, int] = {}  # worker address -> process id
        self._killed: set[str] = set()  # workers we killed that the scheduler still lists
        self._last_owner_check = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="battgen-jobs")
        self._thread.start()

    # ------------------------------------------------------------------ what callers use
    def submit(self, kind: str, fn: Callable, *args: Any, owner: str | None = None,
               timeout_s: float | None = None, on_end: Callable[[JobView], None] | None = None,
               **kwargs: Any) -> str:
        """Queue ``fn(*args, **kwargs)`` (a module-level function: it runs in a worker process).

        ``on_end(view)`` runs in this process once the job has ended, however it ended.
        """
        timeout = timeout_for(kind) if timeout_s is None else float(timeout_s)
        if not timeout > 0:
            raise ValueError("a job's time limit must be positive")
        job = _Job(uuid.uuid4().hex[:12], job_kind(kind).name, fn, args, kwargs, owner, timeout, on_end)
        with self._lock:
            if self._closed:
                raise ValueError("the job runner has been shut down")
            self._jobs[job.id] = job
            self._queue.append(job.id)
        self._wake.set()
        return job.id

    def status(self, job_id: str) -> JobView | None:
        """The job now; None for a job this runner does not know (or no longer keeps)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else self._view(job)

    def jobs(self) -> list[JobView]:
        with self._lock:
            return [self._view(job) for job in self._jobs.values()]

    def cancel(self, job_id: str, message: str = USER_CANCEL) -> None:
        """Stop a job: a queued one at once, a running one (its process killed) within a poll."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in ACTIVE:
                return
            if job.status == QUEUED:
                self._queue.remove(job.id)
                self._end(job, CANCELLED, message=message)
                return
            job.stop = (CANCELLED, message)
        self._wake.set()

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until the job has ended (or ``timeout`` seconds passed); its view then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = self.status(job_id)
            if view is None:
                raise KeyError(job_id)
            if not view.active or (deadline is not None and time.monotonic() > deadline):
                return view
            time.sleep(self._poll_s / 2)

    def forget(self, job_id: str) -> None:
        """Drop an ended job (its result) once the page has taken it."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.status not in ACTIVE:
                del self._jobs[job_id]
                self._progress.pop(job_id, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job_id in list(self._queue):
                self._end(self._jobs[job_id], CANCELLED, message="the server is shutting down")
            self._queue.clear()
            for job in self._jobs.values():
                if job.status == RUNNING:
                    job.stop = (CANCELLED, "the server is shutting down")
        self._wake.set()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while True:
            self._wake.wait(self._poll_s)
            self._wake.clear()
            try:
                self._tick()
            except Exception:  # the loop serves every session: log and go on
                traceback.print_exc()
            if self._closed and not any(j.status in ACTIVE for j in list(self._jobs.values())):
                break
        self._shutdown_cluster()

    def _tick(self) -> None:
        with self._lock:
            wanted = bool(self._queue) and self._client is None and self._start_error is None
        if wanted:
            self._start_cluster()  # seconds: outside the lock so pages can still read statuses
        with self._lock:
            if self._start_error is not None:
                while self._queue:
                    self._end(self._jobs[self._queue.popleft()], FAILED,
                              message=f"the job runner could not start: {self._start_error}")
                return
            # A client closed under us (distributed closes clients at interpreter exit, before this
            # thread stops) has no scheduler to ask: there is nothing left to serve.
            if self._client is None or self._client.status in ("closing", "closed"):
                return
            live = self._live_workers()
            self._settle(live)
            self._enforce()
            self._dispatch(live)
            self._prune()

    def _start_cluster(self) -> None:
        from dask.distributed import Client, LocalCluster

        from battgen.runtime import configure_threads

        configure_threads()  # spawned workers inherit this environment before torch loads there
        keep_main_script_out_of_children()
        try:
            # No dashboard; the scheduler's always-on HTTP endpoint takes any free loopback port,
            # not the 8787 a user's own cluster may hold.
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            client = Client(cluster)
            client.subscribe_topic(PROGRESS_TOPIC, self._on_progress)
        except Exception as err:  # no ports, no memory, ...: every queued job says so
            traceback.print_exc()
            with self._lock:
                self._start_error = f"{type(err).__name__}: {err}"
            return
        with self._lock:
            self._cluster, self._client = cluster, client

    def _shutdown_cluster(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def _on_progress(self, event) -> None:
        _, message = event
        payload = dict(message)
        job_id = payload.pop("job", None)
        payload.pop("worker", None)
        if job_id is not None:
            self._progress[job_id] = payload

    def _live_workers(self) -> list[str]:
        # Asked of the scheduler directly: scheduler_info() returns the client's cached identity, which
        # its periodic refresh overwrites with a worker-less one (n_workers=0), so a busy moment
        # between the two read as "every worker died" and failed a job that was still running.
        addresses = list(self._client.nthreads())
        self._killed &= set(addresses)  # a killed worker's replacement registers under a new address
        new = [a for a in addresses if a not in self._pids]
        if new:
            self._pids.update(self._client.run(os.getpid, workers=new))
        for gone in set(self._pids) - set(addresses):
            del self._pids[gone]
        return addresses

    def _settle(self, live: list[str]) -> None:
        for job in [j for j in self._jobs.values() if j.status == RUNNING]:
            future = job.future
            if future.status == "finished":
                outcome, value = future.result()
                if outcome == "ok":
                    self._end(job, DONE, result=value)
                else:
                    self._end(job, FAILED, message=value)
            elif future.status in ("error", "cancelled", "lost"):
                error = future.exception() if future.status == "error" else future.status
                self._end(job, FAILED, message=f"the worker process running it failed ({error})")
            elif job.worker not in live and job.stop is None:
                self._client.cancel([future], force=True)  # pinned to a worker that is gone: never runs
                self._end(job, FAILED, message="the worker process running it died (out of memory?)")

    def _enforce(self) -> None:
        now = time.monotonic()
        if self._owner_alive is not None and now - self._last_owner_check >= OWNER_CHECK_S:
            self._last_owner_check = now
            owners = {j.owner for j in self._jobs.values() if j.status in ACTIVE and j.owner is not None}
            gone = {o: self._owners_gone.get(o, now) for o in owners if not self._owner_alive(o)}
            self._owners_gone = gone
            for job in [j for j in self._jobs.values() if j.status in ACTIVE and j.owner in gone]:
                if now - gone[job.owner] >= self._owner_grace_s:
                    self.cancel(job.id, OWNER_GONE)
        for job in [j for j in self._jobs.values() if j.status == RUNNING]:
            if job.stop is not None:
                self._kill(job, *job.stop)
            elif now - job.started > job.timeout_s:
                kind = job_kind(job.kind)
                self._kill(job, TIMED_OUT, f"The {kind.label} was stopped after {format_seconds(job.timeout_s)}, "
                                           f"its time limit. {kind.timeout_hint}".strip())

    def _kill(self, job: _Job, status: str, message: str) -> None:
        # Forget the task first, so the scheduler does not hand it to another worker when this
        # one dies; then end the process, which is the only way to stop the work itself.
        self._client.cancel([job.future], force=True)
        try:
            os.kill(job.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had just ended on its own
            pass
        self._killed.add(job.worker)
        self._end(job, status, message=message)

    def _dispatch(self, live: list[str]) -> None:
        busy = {j.worker for j in self._jobs.values() if j.status == RUNNING}
        idle = [a for a in live if a not in busy and a not in self._killed]
        while self._queue and idle:
            job = self._jobs[self._queue.popleft()]
            job.worker = idle.pop(0)
            job.pid = self._pids[job.worker]
            job.future = self._client.submit(execute, job.id, job.fn, job.args, job.kwargs,
                                             key=f"battgen-job-{job.id}", workers=[job.worker],
                                             allow_other_workers=False, pure=False)
            job.status, job.started = RUNNING, time.monotonic()
            job.args, job.kwargs = (), {}  # the worker has them; do not keep uploads twice

    def _prune(self) -> None:
        now = time.monotonic()
        for job in [j for j in self._jobs.values() if j.ended is not None and now - j.ended > KEEP_ENDED_S]:
            self.forget(job.id)

    def _end(self, job: _Job, status: str, *, result: Any = None, message: str | None = None) -> None:
        job.status, job.result, job.message, job.ended = status, result, message, time.monotonic()
        job.future = None
        if job.on_end is not None:
            try:
                job.on_end(self._view(job))
            except Exception:  # a caller's bookkeeping must not stop the runner
                traceback.print_exc()

    def _view(self, job: _Job) -> JobView:
        now = time.monotonic()
        queue = list(self._queue)
        waited = (job.started or job.ended or now) - job.submitted
        running = 0.0 if job.started is None else (job.ended or now) - job.started
        return JobView(id=job.id, kind=job.kind, label=job_kind(job.kind).label, status=job.status,
                       owner=job.owner, position=queue.index(job.id) + 1 if job.status == QUEUED else None,
                       queued=len(queue), waited_s=waited, running_s=running, timeout_s=job.timeout_s,
                       progress=dict(self._progress.get(job.id, {})), result=job.result, message=job.message)
