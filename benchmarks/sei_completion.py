"""How many KMC events a dataset run needs to passivate: the completion curve behind DATASET_MAX_EVENTS.

Draws the first ``--n`` barrier sets of the dataset's design (``sample_barriers(--design-n, --seed)``)
and runs each as the dataset builder would (same lattice and per-run seed) up to ``--max-steps``
events. A finished run records its events and simulated time to passivation. The results go to a
JSON-lines file, one line per draw. The script resumes from it: a draw is run again only if it
stopped below the current bound, so the bound can be raised for the unfinished draws alone.
Prints the completion curve (event bound → fraction finished), the same for simulated-time
bounds, and the CPU time of a dataset build at each bound.

    PYTHONPATH=. .venv/bin/python benchmarks/sei_completion.py --n 40 --max-steps 30000000 \\
        --out benchmarks/results/sei_completion_runs.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from battgen.sei.dataset import run_seed, sample_barriers
from battgen.sei.defaults import DATASET_MAX_EVENTS, DEFAULT_SIZE

CURVE_BOUNDS = (1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9)
TIME_BOUNDS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def _load(path: Path) -> dict[int, dict]:
    runs: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                runs[record["index"]] = record  # later lines (larger bounds) win
    return runs


def measure(n: int, size: int, seed: int, design_n: int, max_steps: int, out: Path) -> dict[int, dict]:
    from battgen.sei.kmc import simulate, warm_up

    warm_up()
    runs = _load(out)
    barriers = sample_barriers(design_n, seed)[:n]
    for index, row in enumerate(barriers):
        done = runs.get(index)
        if done and (done["status"] == "complete" or done["max_steps"] >= max_steps):
            continue
        result = simulate(row, nx=size, ny=size, seed=run_seed(seed, index), max_steps=max_steps)
        record = {
            "index": index, "size": size, "max_steps": int(max_steps), "status": result.status,
            "steps": result.steps, "sim_time_s": result.sim_time_s, "wall_time_s": result.wall_time_s,
            "thickness": result.observables["thickness"],
            "barriers": [round(float(b), 6) for b in row],
        }
        runs[index] = record
        with out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"draw {index:3d}: {result.status:9s} {result.steps:>12,} events  {result.sim_time_s:8.3g} s sim  "
              f"{result.wall_time_s:7.2f} s wall  thickness {record['thickness']:.1f}  e13 {row[12]:.3f}", flush=True)
    return runs


def cpu_rate(runs: dict[int, dict], size: int) -> float:
    """Events per CPU second of the kernel, measured now on a default run and on a hop-dominated
    unfinished draw (2 M events): wall times of a shared machine overstate the cost."""
    import time

    from battgen.sei.kmc import simulate, warm_up

    warm_up()
    stuck = [r for r in runs.values() if r["status"] != "complete"]
    cases = [(None, 10**9)] + ([(np.array(stuck[0]["barriers"]), 2_000_000)] if stuck else [])
    events = cpu = 0.0
    for barriers, bound in cases:
        start = time.process_time()
        events += simulate(barriers, nx=size, ny=size, seed=0, max_steps=bound).steps
        cpu += time.process_time() - start
    return events / cpu


def report(runs: dict[int, dict], rate: float) -> str:
    records = list(runs.values())
    n = len(records)
    finished = [r for r in records if r["status"] == "complete"]
    stopped = [r for r in records if r["status"] != "complete"]
    # beyond the smallest bound an unfinished run was given, its fate is unknown
    largest = min(r["max_steps"] for r in stopped) if stopped else max(r["max_steps"] for r in records)
    lines = [f"{n} draws, {len(finished)} finished within {largest:,} events; "
             f"kernel speed {rate / 1e6:.2f} M events per CPU second (costs below use it).", "",
             "| event bound | finished | fraction | CPU s per run (mean) | 4,000-run build, CPU h |",
             "|---:|---:|---:|---:|---:|"]
    for bound in sorted(set(CURVE_BOUNDS) | {float(DATASET_MAX_EVENTS)}):
        if bound > largest:
            break
        k = sum(r["steps"] <= bound for r in finished)
        cpu = np.mean([min(r["steps"], bound) / rate for r in records])
        lines.append(f"| {bound:,.0f} | {k}/{n} | {k / n:.2f} | {cpu:.1f} | {4000 * cpu / 3600:.1f} |")
    lines += ["", "| simulated-time bound (s) | finished | fraction |", "|---:|---:|---:|"]
    for bound in TIME_BOUNDS:
        k = sum(r["sim_time_s"] <= bound for r in finished)
        lines.append(f"| {bound:g} | {k}/{n} | {k / n:.2f} |")
    if finished:
        steps = np.array([r["steps"] for r in finished])
        times = np.array([r["sim_time_s"] for r in finished])
        lines += ["", f"finished runs: events median {np.median(steps):,.0f}, p90 {np.percentile(steps, 90):,.0f}, "
                  f"max {steps.max():,}; simulated time median {np.median(times):.3g} s, max {times.max():.3g} s"]
    if stopped:
        lines.append("unfinished at the largest bound: " + ", ".join(
            f"draw {r['index']} (e13 {r['barriers'][12]:.2f}, thickness {r['thickness']:.1f}, "
            f"{r['sim_time_s']:.2g} s sim)" for r in sorted(stopped, key=lambda r: r["index"])))
        if finished:
            # Simulated time per event stays about constant in a run dominated by hops, so this is
            # what an unfinished run needs just to reach the earliest passivation seen among the rest.
            t_min = min(r["sim_time_s"] for r in finished)
            behind = [r for r in stopped if r["sim_time_s"] < t_min]
            if behind:
                needed = sorted(r["steps"] * t_min / max(r["sim_time_s"], 1e-300) for r in behind)
                lines.append(f"{len(behind)} unfinished runs are still short of {t_min:.3g} s simulated (the "
                             f"earliest passivation of a finished run); at their own pace they need "
                             f"{needed[0]:.2g}-{needed[-1]:.2g} events (median {np.median(needed):.2g}) "
                             f"to get there")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of draws of the dataset design")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--seed", type=int, default=0, help="the dataset's design seed")
    parser.add_argument("--design-n", type=int, default=4000, help="size of the dataset design drawn from")
    parser.add_argument("--max-steps", type=int, default=10 * DATASET_MAX_EVENTS)
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file of runs (resumed)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    runs = _load(args.out) if args.report_only else measure(args.n, args.size, args.seed, args.design_n,
                                                            args.max_steps, args.out)
    print(report(runs, cpu_rate(runs, args.size)))


if __name__ == "__main__":
    main()
