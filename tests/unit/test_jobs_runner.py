"""The job runner with real worker processes: results, errors, queue positions, timeout, cancel, owners."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from battgen.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, TIMED_OUT, JobRunner, report, timeout_for
from battgen.jobs.runner import OWNER_GONE, USER_CANCEL, default_workers

# Sessions the test says are still open; the runner asks about owners through this.
OPEN_SESSIONS: set[str] = set()


def nap(seconds: float, value=None):
    time.sleep(seconds)
    return value


def tell_pid_then_nap(seconds: float, value=None):
    report(pid=os.getpid(), message="working", fraction=0.5)
    time.sleep(seconds)
    return value


def refuse():
    raise ValueError("the structure contains no Li: upload the discharged state")


def crash():
    return {}["missing"]


@pytest.fixture(scope="module")
def runner():
    r = JobRunner(workers=2, owner_alive=OPEN_SESSIONS.__contains__, owner_grace_s=0.5, poll_s=0.05)
    yield r
    r.close()


def until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped by its nanny
    except psutil.NoSuchProcess:
        return True


def running_pid(runner: JobRunner, job_id: str) -> int:
    return until(lambda: runner.status(job_id).progress.get("pid"))


def test_a_result_comes_back_and_on_end_sees_it(runner):
    ended = []
    job_id = runner.submit("kmc", nap, 0, {"answer": 42}, on_end=ended.append)
    view = runner.wait(job_id, timeout=60)
    assert view.status == DONE and view.result == {"answer": 42} and view.message is None
    assert [v.status for v in ended] == [DONE]
    runner.forget(job_id)
    assert runner.status(job_id) is None


def test_errors_come_back_as_one_clear_message(runner):
    refused = runner.wait(runner.submit("evaluate", refuse), timeout=60)
    assert refused.status == FAILED
    assert refused.message == "the structure contains no Li: upload the discharged state"
    crashed = runner.wait(runner.submit("evaluate", crash), timeout=60)
    assert crashed.status == FAILED and crashed.message == "KeyError: 'missing'"
    assert "Traceback" not in crashed.message


def test_jobs_beyond_capacity_queue_in_order_with_positions(runner):
    running = [runner.submit("kmc", tell_pid_then_nap, 60) for _ in range(runner.workers)]
    pids = [running_pid(runner, j) for j in running]
    waiting = [runner.submit("kmc", nap, 0, i) for i in range(3)]
    views = [runner.status(j) for j in waiting]
    assert [v.status for v in views] == [QUEUED] * 3
    assert [v.position for v in views] == [1, 2, 3] and {v.queued for v in views} == {3}
    runner.cancel(waiting[1])  # a queued job leaves the queue at once; the others move up
    assert runner.status(waiting[1]).status == CANCELLED
    assert [runner.status(j).position for j in (waiting[0], waiting[2])] == [1, 2]
    runner.cancel(running[0])  # frees a worker (its process is killed): the queue's head starts
    until(lambda: runner.status(running[0]).status == CANCELLED)
    assert runner.status(running[0]).message == USER_CANCEL
    until(lambda: process_gone(pids[0]))
    assert runner.wait(waiting[0], timeout=60).result == 0
    assert runner.wait(waiting[2], timeout=60).result == 2
    runner.cancel(running[1])
    until(lambda: process_gone(pids[1]))


def test_a_job_past_its_time_limit_is_killed(runner):
    job_id = runner.submit("afm", tell_pid_then_nap, 60, timeout_s=1.5)
    pid = running_pid(runner, job_id)
    assert runner.status(job_id).status == RUNNING and runner.status(job_id).progress["message"] == "working"
    view = runner.wait(job_id, timeout=30)
    assert view.status == TIMED_OUT
    assert view.message.startswith("The AFM simulation was stopped after 2 s, its time limit.")
    assert 1.5 <= view.running_s < 10
    until(lambda: process_gone(pid))
    # The killed worker is replaced: the pool still runs jobs.
    assert runner.wait(runner.submit("kmc", nap, 0, "after"), timeout=60).result == "after"


def test_a_stale_worker_list_in_the_clients_cache_does_not_fail_a_running_job(runner, monkeypatch):
    # What the client's periodic scheduler-info refresh leaves behind: an identity without workers.
    # The runner must not read that as every worker having died (it did, once, under load in CI).
    from distributed.client import SchedulerInfo

    job_id = runner.submit("kmc", tell_pid_then_nap, 1.0, "survived")
    running_pid(runner, job_id)
    monkeypatch.setattr(runner._client, "scheduler_info", lambda *a, **k: SchedulerInfo({"workers": {}}))
    view = runner.wait(job_id, timeout=30)
    assert view.status == DONE and view.result == "survived", view.message


def test_a_worker_that_dies_fails_its_job_with_a_reason(runner):
    job_id = runner.submit("kmc", tell_pid_then_nap, 60)
    os.kill(running_pid(runner, job_id), 9)
    view = runner.wait(job_id, timeout=60)
    assert view.status == FAILED and ("died" in view.message or "failed" in view.message), view.message
    # Its replacement takes the next job.
    assert runner.wait(runner.submit("kmc", nap, 0, "after"), timeout=60).result == "after"


def test_a_closed_session_frees_its_jobs(runner):
    OPEN_SESSIONS.update({"gone", "stays"})
    mine = runner.submit("kmc", tell_pid_then_nap, 60, owner="gone")
    pid = running_pid(runner, mine)
    blocker = runner.submit("kmc", tell_pid_then_nap, 60, owner="stays")
    running_pid(runner, blocker)
    queued = runner.submit("kmc", nap, 0, owner="gone")
    assert runner.status(queued).status == QUEUED
    OPEN_SESSIONS.discard("gone")
    for job_id in (mine, queued):
        view = runner.wait(job_id, timeout=30)
        assert view.status == CANCELLED and view.message == OWNER_GONE
    until(lambda: process_gone(pid))
    assert runner.status(blocker).status == RUNNING  # another session's job is untouched
    runner.cancel(blocker)
    runner.wait(blocker, timeout=30)


def thread_settings() -> dict:
    return {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "NUMBA_NUM_THREADS")}


def test_a_client_closed_under_the_runner_stops_its_ticks_quietly(capsys):
    """distributed closes its clients at interpreter exit while the runner's thread still ticks;
    a tick then must not raise (it printed an AttributeError traceback at the end of every test run)."""
    r = JobRunner(workers=1, poll_s=0.05)
    try:
        assert r.wait(r.submit("kmc", nap, 0, "ok"), timeout=60).status == DONE
        capsys.readouterr()
        r._client.close()
        time.sleep(0.3)  # the runner's own thread ticks several times meanwhile
        r._tick()
        assert "Traceback" not in capsys.readouterr().err
    finally:
        r.close()


def test_workers_run_with_the_servers_thread_policy(runner):
    from battgen.runtime import requested_threads

    view = runner.wait(runner.submit("kmc", thread_settings), timeout=60)
    threads = str(requested_threads())
    assert view.result == {"OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE", "NUMBA_NUM_THREADS": threads}


def test_time_limits_and_worker_count_come_from_the_environment(monkeypatch):
    assert timeout_for("evaluate") == 900.0
    monkeypatch.setenv("BATTGEN_JOB_TIMEOUT_EVALUATE", "5")
    assert timeout_for("evaluate") == 5.0
    monkeypatch.setenv("BATTGEN_JOB_TIMEOUT_EVALUATE", "soon")
    with pytest.raises(ValueError, match="BATTGEN_JOB_TIMEOUT_EVALUATE must be a number"):
        timeout_for("evaluate")
    with pytest.raises(ValueError, match="unknown job kind"):
        timeout_for("training")
    monkeypatch.setenv("BATTGEN_JOB_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("BATTGEN_JOB_WORKERS", "0")
    with pytest.raises(ValueError, match="BATTGEN_JOB_WORKERS"):
        default_workers()


def _child_ran():
    return "ran"


def test_spawned_workers_do_not_rerun_a_script_runners_main(tmp_path, monkeypatch):
    import multiprocessing
    import sys
    import types

    from battgen.jobs.runner import keep_main_script_out_of_children

    marker = tmp_path / "page_ran"
    page = tmp_path / "page.py"
    page.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake_main = types.ModuleType("__main__")  # what Streamlit installs while a page runs
    fake_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    keep_main_script_out_of_children()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_child_ran) == "ran"
    assert not marker.exists()
