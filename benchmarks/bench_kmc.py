"""KMC speed: wall time and steps/s per run, default barriers, several lattice sizes.

Prints one table. The target is a median <= 1 s per 50x50 run with default barriers on a
2-core CPU. The reference pure-Python implementation of the same model needs ~1.7 h
(6,120 s) per 50x50 run (as quoted in shared/notes/sei_kmc.md); the ratio column uses it.

    .venv/bin/python benchmarks/bench_kmc.py [--seeds 10] [--sizes 30 50 70]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from battgen.sei.kmc import simulate, warm_up

REFERENCE_50x50_S = 1.7 * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 50, 70])
    args = parser.parse_args()

    compile_s = warm_up()
    print(f"kernel load/compile: {compile_s:.2f} s (numba cache)\n")
    header = (f"{'size':>7} {'runs':>5} {'median s':>9} {'mean s':>7} {'max s':>6} {'cpu s':>6} "
              f"{'steps (median)':>15} {'Msteps/s':>9} {'thickness':>10} {'porosity':>9} {'vs ref':>8}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        walls, cpus, steps, thick, poro = [], [], [], [], []
        for seed in range(args.seeds):
            cpu0 = time.process_time()
            result = simulate(nx=size, ny=size, seed=seed)
            cpus.append(time.process_time() - cpu0)
            walls.append(result.wall_time_s)
            steps.append(result.steps)
            thick.append(result.observables["thickness"])
            poro.append(result.observables["porosity"])
        median = float(np.median(walls))
        ratio = f"{REFERENCE_50x50_S / median:,.0f}x" if size == 50 else ""
        print(f"{size:>4}x{size:<2} {len(walls):>5} {median:>9.3f} {np.mean(walls):>7.3f} "
              f"{np.max(walls):>6.2f} {np.median(cpus):>6.3f} {int(np.median(steps)):>15,} "
              f"{np.sum(steps) / np.sum(walls) / 1e6:>9.2f} {np.mean(thick):>10.2f} "
              f"{np.mean(poro):>9.3f} {ratio:>8}")


if __name__ == "__main__":
    main()
