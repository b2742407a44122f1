"""Run one function over many work items: in this process, on a local process pool, or on Dask.

Every dataset builder (SEI runs, AFM materials, electrode relaxations) and the design jobs use
:func:`parallel_map`, so they share one behaviour:

- results are yielded as they complete, each with the position of its item, so a builder
  writes every finished item to disk at once and a killed build resumes where it stopped;
- an item whose call raises does not stop the others: every other item still runs (and its
  result is yielded), then :class:`WorkFailed` lists each failed item with its exception;
- one tqdm bar (and an optional ``on_progress(done, total)`` for pages) counts finished work,
  starting from what an earlier session already finished.

``fn`` and the items must pickle (a module-level function, or a :func:`functools.partial` of
one) unless ``workers`` is 1; in this process they are called directly, which tests rely on.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, NamedTuple

# ``dask_scheduler=LOCAL_DASK`` starts a Dask LocalCluster on this machine for the call.
LOCAL_DASK = "local"


class Done(NamedTuple):
    index: int  # position of the item in ``items``
    item: Any
    value: Any  # what ``fn(item)`` returned


class Failure(NamedTuple):
    index: int
    item: Any
    error: BaseException  # what ``fn(item)`` raised (re-raised from the worker)


class WorkFailed(RuntimeError):
    """Some items raised; ``failures`` holds each of them. Every other item ran to the end."""

    def __init__(self, failures: list[Failure], total: int):
        self.failures = sorted(failures, key=lambda f: f.index)
        shown = "; ".join(f"item {f.index}: {type(f.error).__name__}: {f.error}" for f in self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} of {total} work items failed ({shown}{more})")


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--dask-scheduler``, the same in every command that calls parallel_map."""
    parser.add_argument("--workers", type=int, default=None, help="local processes (default: cores)")
    parser.add_argument("--dask-scheduler", dest="dask_scheduler", default=None,
                        help=f"Dask scheduler address, e.g. tcp://host:8786, or '{LOCAL_DASK}' "
                             "for a Dask cluster on this machine")


def local_workers(workers: int | None, n_items: int) -> int:
    """Processes a local run uses: ``workers`` (default: every core), never more than the items."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return max(1, min(workers or os.cpu_count() or 1, n_items))


def parallel_map(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    progress: bool = True,
    desc: str | None = None,
    unit: str = "item",
    already_done: int = 0,
    weight: Callable[[Any], int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    worker_setup: Callable[[int], None] | None = None,
) -> Iterator[Done]:
    """Call ``fn(item)`` for every item; yield a :class:`Done` per success as it completes.

    Where it runs:
      ``dask_scheduler``: a Dask scheduler address (``tcp://host:8786``), or ``"local"`` for a
      LocalCluster of ``workers`` processes started for this call;
      otherwise ``workers`` local processes (default: every core, at most one per item), and
      in this process, in item order, when that comes to one.

    Progress: ``already_done`` units finished earlier show as done; each item adds
    ``weight(item)`` units (default 1) to the bar labelled ``desc``/``unit`` (hidden unless
    ``progress``) and to ``on_progress(done, total)``, which is also called once at the start.

    ``worker_setup(threads)`` runs first in every process this call starts, with that process's
    share of the cores (e.g. to cap OpenMP or OpenCL threads before a library starts its pool).

    After the last item, raises :class:`WorkFailed` if any item raised.
    """
    from tqdm.auto import tqdm

    items = list(items)
    weights = [weight(item) if weight else 1 for item in items]
    total = already_done + sum(weights)
    failures: list[Failure] = []
    bar = tqdm(total=total, initial=already_done, desc=desc, unit=unit, disable=not progress)
    done = already_done
    if on_progress:
        on_progress(done, total)
    try:
        for index, value, error in _outcomes(fn, items, workers, dask_scheduler, worker_setup):
            done += weights[index]
            bar.update(weights[index])
            if on_progress:
                on_progress(done, total)
            if error is None:
                yield Done(index, items[index], value)
            else:
                failures.append(Failure(index, items[index], error))
    finally:
        bar.close()
    if failures:
        raise WorkFailed(failures, len(items)) from failures[0].error


def _outcomes(fn, items, workers, dask_scheduler, worker_setup) -> Iterator[tuple[int, Any, BaseException | None]]:
    """(index, value, error) per item, in completion order."""
    if not items:
        return  # nothing to run: no pool to start, no scheduler to reach
    if dask_scheduler:
        yield from _on_dask(fn, items, workers, dask_scheduler, worker_setup)
        return
    n = local_workers(workers, len(items))
    if n == 1:
        for index, item in enumerate(items):
            try:
                yield index, fn(item), None
            except Exception as error:  # one bad item must not stop the others
                yield index, None, error
        return
    # spawn, not fork: a forked child would inherit the parent's half-started thread pools
    # (torch's OpenMP, an OpenCL runtime) and could deadlock in them.
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_setup,
                               initargs=(_threads_per_worker(n),) if worker_setup else ())
    try:
        futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
        for future in as_completed(futures):
            yield _settled(futures[future], future)
    finally:
        # A caller that stops early (its own error, Ctrl-C) should not wait for queued items.
        pool.shutdown(wait=True, cancel_futures=True)


def _on_dask(fn, items, workers, address, worker_setup):
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    cluster = None
    n = local_workers(workers, len(items))
    if address == LOCAL_DASK:
        # No dashboard; its always-on HTTP endpoint takes any free port, not the 8787 a user's
        # own cluster may hold.
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        address = cluster.scheduler_address
    try:
        with Client(address) as client:
            if cluster is not None and worker_setup is not None:
                # Only workers this call started: a shared cluster's workers are its owner's to tune.
                client.run(worker_setup, _threads_per_worker(n))
            # pure=False: the same item submitted twice (a retry) must run twice.
            futures = {client.submit(fn, item, pure=False): index for index, item in enumerate(items)}
            for future in dask_completed(futures):
                yield _settled(futures[future], future)
    finally:
        if cluster is not None:
            cluster.close()


def _settled(index: int, future) -> tuple[int, Any, BaseException | None]:
    try:
        return index, future.result(), None
    except Exception as error:
        return index, None, error


def _threads_per_worker(n_workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // n_workers)
