"""The app's job kinds through a real runner: a KMC result comes back, a CHGNet evaluation and a
design stop at their time limit with one clear message, and a stopped design is recorded as such."""

from __future__ import annotations

import time

import numpy as np
import pytest

from battgen import paths
from battgen.data.evaluate import read_structure
from battgen.data.table import load_scaler, load_table
from battgen.design.jobs import DesignJobs
from battgen.design.request import build_request
from battgen.design.store import DesignStore
from battgen.jobs import CANCELLED, DONE, RUNNING, TIMED_OUT, JobRunner
from battgen.jobs.tasks import evaluate_job, kmc_job, kmc_runs_inline
from tests.structure_files import GOOD_POSCAR

TABLE_DIR = paths.asset_dir(paths.ELECTRODES)


@pytest.fixture(scope="module")
def runner():
    r = JobRunner(workers=1, poll_s=0.05)
    yield r
    r.close()


def test_small_kmc_runs_stay_inline_and_large_ones_queue(monkeypatch):
    assert kmc_runs_inline(20, 20, 10_000_000) and not kmc_runs_inline(50, 50, 50_000_000)
    monkeypatch.setenv("BATTGEN_KMC_INLINE_LIMIT", "0")
    assert not kmc_runs_inline(20, 20, 1)
    monkeypatch.setenv("BATTGEN_KMC_INLINE_LIMIT", "lots")
    with pytest.raises(ValueError, match="BATTGEN_KMC_INLINE_LIMIT"):
        kmc_runs_inline(20, 20, 1)


def test_a_kmc_job_returns_the_same_run_as_in_process(runner):
    from battgen.sei.kmc import simulate

    view = runner.wait(runner.submit("kmc", kmc_job, None, nx=20, ny=20, seed=5, max_steps=200_000,
                                     n_snapshots=5), timeout=120)
    assert view.status == DONE, view.message
    here = simulate(None, nx=20, ny=20, seed=5, max_steps=200_000, n_snapshots=5)
    assert view.result.steps == here.steps and np.array_equal(view.result.lattice, here.lattice)


def test_a_chgnet_evaluation_past_its_limit_stops_with_one_message(runner):
    # Loading CHGNet alone takes longer than this limit: the same path as a structure that relaxes forever.
    structure = read_structure(GOOD_POSCAR[1], GOOD_POSCAR[0])
    view = runner.wait(runner.submit("evaluate", evaluate_job, structure, "Li", name="LiTiS2.vasp", timeout_s=1),
                       timeout=60)
    assert view.status == TIMED_OUT
    assert view.explanation == ("The CHGNet evaluation was stopped after 1 s, its time limit. CHGNet takes too "
                                "long on this structure: try its primitive cell or a structure closer to "
                                "equilibrium.")


def test_a_stopped_design_job_is_recorded_in_the_store(runner, tmp_path, monkeypatch):
    store = DesignStore(tmp_path / "d.sqlite")
    jobs = DesignJobs(store, runner)
    request = build_request(load_table(TABLE_DIR), load_scaler(TABLE_DIR), "Li",
                            {"average_voltage": 3.5, "capacity_grav": 150.0}, max_candidates=1, proposals=20)
    monkeypatch.setenv("BATTGEN_JOB_TIMEOUT_DESIGN", "1")
    timed_out = jobs.submit(request)
    runner.wait(jobs.job(timed_out).id, timeout=60)
    design = store.design(timed_out)
    assert design["status"] == "failed" and design["message"].startswith("The design job was stopped after 1 s")
    assert not store.candidates(timed_out, status="running")

    monkeypatch.setenv("BATTGEN_JOB_TIMEOUT_DESIGN", "600")
    blocker = runner.submit("kmc", kmc_job, None, nx=100, ny=100, seed=0, max_steps=10**9, n_snapshots=0)
    deadline = time.monotonic() + 30
    while runner.status(blocker).status != RUNNING:  # the killed worker's replacement takes a second
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queued = jobs.submit(request)
    assert jobs.job(queued).position == 1 and store.design(queued)["status"] == "queued"
    jobs.cancel(queued)
    assert jobs.job(queued).status == CANCELLED and not jobs.running(queued)
    assert store.design(queued)["status"] == "cancelled" and store.design(queued)["message"] == "cancelled by the user"
    runner.cancel(blocker)
    runner.wait(blocker, timeout=30)
