"""The job runner's own costs: start-up, a job's round trip, how fast a timeout or cancel frees its
worker, and a default 50×50 KMC run as a job against the same run in this process.

Prints one table. Everything runs on loopback in worker processes of a fresh runner.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_jobs.py [--workers 1] [--round-trips 20] [--kills 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from battgen.runtime import configure_threads

configure_threads()

from battgen.jobs import DONE, RUNNING, TIMED_OUT, JobRunner  # noqa: E402
from battgen.jobs.tasks import kmc_job  # noqa: E402


def wait_running(runner: JobRunner, job_id: str) -> float:
    start = time.perf_counter()
    while runner.status(job_id).status != RUNNING:
        time.sleep(0.01)
    return time.perf_counter() - start


def row(name: str, values: list[float]) -> str:
    return (f"{name:<44} {len(values):>4} {statistics.median(values):>9.3f} {max(values):>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--round-trips", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kmc-seeds", type=int, default=3)
    args = parser.parse_args()

    rows = []
    start = time.perf_counter()
    runner = JobRunner(workers=args.workers, poll_s=0.05)
    first = runner.wait(runner.submit("kmc", time.sleep, 0), timeout=120)
    assert first.status == DONE, first.message
    rows.append(row("cluster start + first trivial job (s)", [time.perf_counter() - start]))

    trips = []
    for _ in range(args.round_trips):
        t0 = time.perf_counter()
        view = runner.wait(runner.submit("kmc", time.sleep, 0), timeout=60)
        assert view.status == DONE
        trips.append(time.perf_counter() - t0)
    rows.append(row("trivial job, submit -> result (s)", trips))

    timeouts, refills = [], []
    for _ in range(args.kills):
        job_id = runner.submit("kmc", time.sleep, 600, timeout_s=1.0)
        wait_running(runner, job_id)
        t0 = time.perf_counter()
        view = runner.wait(job_id, timeout=60)
        assert view.status == TIMED_OUT
        timeouts.append(view.running_s - 1.0)
        # The next job can only start once the killed worker's replacement has registered.
        t1 = time.perf_counter()
        nxt = runner.submit("kmc", time.sleep, 0)
        assert runner.wait(nxt, timeout=60).status == DONE
        refills.append(time.perf_counter() - t1)
    rows.append(row("timeout noticed after the limit (s)", timeouts))
    rows.append(row("next job done after a kill (replacement) (s)", refills))

    from battgen.sei.kmc import simulate, warm_up

    warm_up()
    here, queued = [], []
    for seed in range(args.kmc_seeds):
        t0 = time.perf_counter()
        simulate(nx=50, ny=50, seed=seed, max_steps=50_000_000, n_snapshots=60)
        here.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        view = runner.wait(runner.submit("kmc", kmc_job, None, nx=50, ny=50, seed=seed, max_steps=50_000_000,
                                         n_snapshots=60), timeout=600)
        assert view.status == DONE, view.message
        queued.append(time.perf_counter() - t0)
    rows.append(row("KMC 50x50 in this process (s)", here))
    rows.append(row("KMC 50x50 as a job, submit -> result (s)", queued))
    runner.close()

    print(f"job runner, {args.workers} worker(s)\n")
    header = f"{'measure':<44} {'n':>4} {'median':>9} {'max':>8}"
    print(header)
    print("-" * len(header))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
