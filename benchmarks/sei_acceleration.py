"""Does temporal acceleration of the diffusion moves keep the SEI model? Completion and bias.

Runs that never finish are dominated by O and P hops (issue 17), so a rate-scaling scheme in the
spirit of Dybeck et al. (J. Chem. Theory Comput. 2017) is the obvious way to finish them: slow the
diffusion moves whenever they outnumber the reactions by more than ``hop_ratio``
(``simulate(..., hop_ratio=...)``). This measures, on draws of the dataset's own design at the
dataset's lattice size,

1. completion: how many draws passivate within the dataset's event bound, exact and accelerated;
2. bias: on the draws that passivate *exactly* within the bound, the final observables of
   ``--seeds`` seeds, exact against accelerated, as the mean shift in units of the exact seeds'
   standard error and the share of draws shifted by more than 3 standard errors.

Acceleration is only admissible for the dataset if (2) shows no shift beyond seed noise.

    PYTHONPATH=. .venv/bin/python benchmarks/sei_acceleration.py --n 40 --seeds 4 \\
        --out benchmarks/results/sei_acceleration.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from battgen.sei.dataset import run_seed, sample_barriers
from battgen.sei.defaults import DATASET_MAX_EVENTS, DEFAULT_SIZE

OBSERVABLES = ("thickness", "porosity", "inorganic_fraction", "organic_fraction", "density")
RATIOS = (1e4, 1e3, 1e2)


def _run(row, size, seed, max_steps, hop_ratio):
    from battgen.sei.kmc import simulate

    return simulate(row, nx=size, ny=size, seed=seed, max_steps=max_steps, hop_ratio=hop_ratio)


def measure(n: int, seeds: int, size: int, design_seed: int, max_steps: int, ratios) -> str:
    from battgen.sei.kmc import warm_up

    warm_up()
    start = time.perf_counter()
    draws = sample_barriers(4000, design_seed)[:n]
    settings = [None, *ratios]
    finished = {s: 0 for s in settings}
    events = {s: [] for s in settings}
    exact_done = []
    for index, row in enumerate(draws):
        for setting in settings:
            result = _run(row, size, run_seed(design_seed, index), max_steps, setting)
            finished[setting] += result.completed
            events[setting].append(result.steps)
            if setting is None and result.completed:
                exact_done.append(index)
        print(f"completion: draw {index + 1}/{n} done", flush=True)

    # seed 0 of every draw is the dataset's own seed; the others are fresh
    shifts = {s: {k: [] for k in OBSERVABLES} for s in ratios}
    still_done = {s: 0 for s in ratios}
    for count, index in enumerate(exact_done):
        row = draws[index]
        seed_list = [run_seed(design_seed, index)] + [run_seed(design_seed + 1000 + k, index) for k in range(1, seeds)]
        exact = [_run(row, size, sd, max_steps, None).observables for sd in seed_list]
        for setting in ratios:
            fast = [_run(row, size, sd, max_steps, setting) for sd in seed_list]
            still_done[setting] += all(r.completed for r in fast)
            for key in OBSERVABLES:
                a = np.array([o[key] for o in exact])
                b = np.array([r.observables[key] for r in fast])
                se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) + 1e-9
                shifts[setting][key].append(((b.mean() - a.mean()) / se, b.mean() - a.mean(), a.mean()))
        print(f"bias: draw {count + 1}/{len(exact_done)} done", flush=True)
    wall = time.perf_counter() - start

    lines = [f"Draws 0-{n - 1} of the dataset design (seed {design_seed}), {size}x{size}, event bound "
             f"{max_steps:,}; bias on the {len(exact_done)} draws that passivate exactly, {seeds} seeds each. "
             f"Wall time {wall / 60:.1f} min.", "",
             "| hop_ratio | passivated within the bound | median events | draws whose every seed still passivates |",
             "|---|---:|---:|---:|"]
    for setting in settings:
        name = "exact" if setting is None else f"{setting:g}"
        done = "–" if setting is None else f"{still_done[setting]}/{len(exact_done)}"
        lines.append(f"| {name} | {finished[setting]}/{n} ({finished[setting] / n:.0%}) | "
                     f"{np.median(events[setting]):,.0f} | {done} |")
    lines += ["", "Shift of the accelerated mean from the exact mean on the exactly passivating draws: "
              "median |shift| in standard errors, share of draws beyond 3 standard errors, and the median "
              "relative shift.", "",
              "| hop_ratio | " + " | ".join(OBSERVABLES) + " |", "|---|" + "---|" * len(OBSERVABLES)]
    for setting in ratios:
        cells = []
        for key in OBSERVABLES:
            z = np.array([abs(s[0]) for s in shifts[setting][key]])
            rel = np.array([s[1] / s[2] for s in shifts[setting][key] if abs(s[2]) > 1e-9])
            cells.append(f"{np.median(z):.1f} SE, {np.mean(z > 3):.0%} > 3 SE, {np.median(rel):+.0%}"
                         if len(z) else "–")
        lines.append(f"| {setting:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of draws of the dataset design")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per draw for the bias test (>= 2)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--seed", type=int, default=0, help="the dataset's design seed")
    parser.add_argument("--max-steps", type=int, default=DATASET_MAX_EVENTS)
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the bias is measured against seed noise)")
    text = measure(args.n, args.seeds, args.size, args.seed, args.max_steps, args.ratios)
    print(text)
    if args.out:
        command = ("PYTHONPATH=. .venv/bin/python benchmarks/sei_acceleration.py "
                   f"--n {args.n} --seeds {args.seeds} --max-steps {args.max_steps} "
                   f"--ratios {' '.join(f'{r:g}' for r in args.ratios)} --out {args.out}")
        args.out.write_text(f"# SEI: temporal acceleration of the diffusion moves\n\n`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()
