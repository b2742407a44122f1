"""The one parallel-map helper of the builders: same results in-process, on a process pool and
on Dask; a failing item is reported after the others finished, never lost; progress adds up."""

from __future__ import annotations

import math
import os

import pytest

from battgen.parallel import LOCAL_DASK, WorkFailed, local_workers, parallel_map

# math.factorial is a real, picklable function that raises ValueError on a negative item.
ITEMS = [5, 3, -1, 10, 0, 7, -2, 4]
GOOD = {i: math.factorial(x) for i, x in enumerate(ITEMS) if x >= 0}


def _run(**kwargs) -> tuple[dict[int, int], WorkFailed]:
    results = {}
    with pytest.raises(WorkFailed) as failed:
        for done in parallel_map(math.factorial, ITEMS, progress=False, **kwargs):
            assert done.item == ITEMS[done.index]
            results[done.index] = done.value
    return results, failed.value


def _check_failures(failed: WorkFailed) -> None:
    assert [(f.index, f.item) for f in failed.failures] == [(2, -1), (6, -2)]
    assert all(isinstance(f.error, ValueError) for f in failed.failures)
    assert "2 of 8 work items failed" in str(failed) and "item 2: ValueError" in str(failed)
    assert isinstance(failed.__cause__, ValueError)


def test_in_process_runs_in_order_and_reports_every_failure_after_the_rest():
    order = []
    with pytest.raises(WorkFailed) as failed:
        for done in parallel_map(math.factorial, ITEMS, workers=1, progress=False):
            order.append(done.index)
    assert order == sorted(GOOD)  # in item order, failures skipped, the items after them still run
    _check_failures(failed.value)


def test_process_pool_gives_the_in_process_results():
    serial, serial_failed = _run(workers=1)
    pooled, pooled_failed = _run(workers=2)
    assert serial == pooled == GOOD
    _check_failures(serial_failed)
    _check_failures(pooled_failed)


def test_progress_counts_weights_from_what_was_done_before(capsys):
    seen = []
    items = [[1, 2, 3], [4], [5, 6]]
    results = sorted(done.value for done in parallel_map(
        sum, items, workers=1, progress=True, desc="batches", unit="run", already_done=4, weight=len,
        on_progress=lambda done, total: seen.append((done, total))))
    assert results == [4, 6, 11]
    assert seen == [(4, 10), (7, 10), (8, 10), (10, 10)]
    bar = capsys.readouterr().err
    assert "batches" in bar and "10/10" in bar


def test_worker_setup_runs_in_each_started_process_and_not_in_this_one():
    before = os.environ.get("BATTGEN_TEST_PARALLEL")
    values = [done.value for done in parallel_map(
        os.getenv, ["BATTGEN_TEST_PARALLEL"] * 2, workers=2, progress=False,
        worker_setup=_mark_worker)]
    threads = str(max(1, (os.cpu_count() or 1) // 2))  # each of the two workers gets half the cores
    assert values == [threads, threads] and os.environ.get("BATTGEN_TEST_PARALLEL") == before


def _mark_worker(threads: int) -> None:
    os.environ["BATTGEN_TEST_PARALLEL"] = str(threads)


def test_nothing_to_do_starts_nothing_and_reaches_no_scheduler():
    # An unreachable address would fail on connect: an empty run must not try.
    assert list(parallel_map(math.factorial, [], dask_scheduler="tcp://127.0.0.1:9", progress=False)) == []
    assert local_workers(None, 3) <= 3 and local_workers(8, 3) == 3 and local_workers(1, 100) == 1
    with pytest.raises(ValueError, match="at least 1"):
        local_workers(0, 3)


def test_local_dask_cluster_gives_the_same_results():  # ~4 s: two spawned Dask workers
    results, failed = _run(workers=2, dask_scheduler=LOCAL_DASK)
    assert results == GOOD
    _check_failures(failed)


@pytest.mark.parametrize("command", [["sei", "build-dataset", "--n", "4"], ["afm", "build-dataset"],
                                     ["data", "build-electrodes"]])
def test_every_builder_command_names_the_dask_address_alike(command, capsys):
    from battgen.cli import build_parser

    args = build_parser().parse_args([*command, "--workers", "2", "--dask-scheduler", "tcp://host:8786"])
    assert (args.workers, args.dask_scheduler) == (2, "tcp://host:8786")
    with pytest.raises(SystemExit):  # one name per concept: --scheduler is a diffusion sampler elsewhere
        build_parser().parse_args([*command, "--scheduler", "tcp://host:8786"])
    assert "unrecognized arguments: --scheduler" in capsys.readouterr().err
