"""Design loop speed: wall time per verified candidate, funnel time, relaxation time, on this machine.

Runs the first ``--requests`` fixed evaluation requests as real design jobs on a local Dask
cluster, one row per request and arm (``--arms``; the page's default arm unless told), and prints
one table. The target is <= 60 s per verified candidate on a
2-core CPU; the 1-minute load average is printed beside it, because on a shared machine the
relaxations get only a fraction of a core.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_design.py [--requests 2] [--workers 2] [--arms guided,guided-prerelaxed]

(`make bench` sets PYTHONPATH; with the defaults this runs several CHGNet pair relaxations: minutes.)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from battgen.data.table import load_scaler, load_table
from battgen.design.evaluate import fixed_requests
from battgen.design.jobs import make_client, run_design, table_directory
from battgen.design.request import ARMS, DEFAULT_ARMS, build_request
from battgen.design.store import DesignStore

TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--max-candidates", type=int, default=2)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--relax-steps", type=int, default=120)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    args = parser.parse_args()
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())

    table_dir = table_directory()
    table, scaler = load_table(table_dir), load_scaler(table_dir)
    store = DesignStore(os.path.join(tempfile.mkdtemp(prefix="bench_design_"), "designs.sqlite"))
    client = make_client(workers=args.workers)
    header = f"{'request':<44} {'arm':<18} {'funnel s':>8} {'relaxed':>7} {'verified':>8} {'pair s (median)':>15} {'wall s':>7} {'s/verified':>10} {'load':>5}"
    print(header)
    print("-" * len(header))
    per_verified: dict[str, list[float]] = {arm: [] for arm in arms}
    try:
        for item in fixed_requests(table)[: args.requests]:
            for arm in arms:  # one arm per job, so each row's wall time is that arm's alone
                request = build_request(table, scaler, item["ion"], item["targets"],
                                        max_candidates=args.max_candidates, relax_steps=args.relax_steps,
                                        arms=(arm,))
                start = time.perf_counter()
                design_id = run_design(store, request, client=client, table_dir=table_dir)
                wall = time.perf_counter() - start
                counts = store.funnels(design_id)[arm]
                candidates = store.candidates(design_id)
                pairs = [c["result"]["seconds"] for c in candidates if c["result"] and c["result"].get("seconds")]
                verified = counts["counts"].get("verified", 0)
                rate = wall / verified if verified else float("nan")
                if verified:
                    per_verified[arm].append(rate)
                print(f"{item['name'][:44]:<44} {arm:<18} {counts['seconds']:>8.1f} {len(candidates):>7} {verified:>8} "
                      f"{np.median(pairs) if pairs else float('nan'):>15.1f} {wall:>7.1f} {rate:>10.1f} "
                      f"{os.getloadavg()[0]:>5.1f}", flush=True)
    finally:
        client.close()
        client.cluster.close()
    print()
    for arm, rates in per_verified.items():
        if rates:
            median = float(np.median(rates))
            print(f"{arm}: median wall time per verified candidate {median:.1f} s "
                  f"({'meets' if median <= TARGET_S else 'misses'} the {TARGET_S:.0f} s target) "
                  f"with {args.workers} worker(s), {os.cpu_count()} CPUs")
        else:
            print(f"{arm}: no verified candidate")


if __name__ == "__main__":
    main()
