"""Does temporal acceleration of the diffusion moves keep the SEI model? Completion and bias.

Runs that never finish are dominated by O and P hops (issue 17), so a rate-scaling scheme in the
spirit of Dybeck et al. (J. Chem. Theory Comput. 2017) is the obvious way to finish them: slow the
diffusion moves whenever they outnumber the reactions by more than ``hop_ratio``
(``simulate(..., hop_ratio=...)``), optionally only after the first N events
(``accelerate_after``), so that runs finishing by then stay exact. This measures, on draws of the dataset's own design at the
dataset's lattice size,

1. completion: how many draws passivate within the dataset's event bound, exact and accelerated;
2. bias: on the draws that passivate *exactly* within the bound, the final observables of
   ``--seeds`` seeds, exact against accelerated, as the mean shift in units of the exact seeds'
   standard error and the share of draws shifted by more than 3 standard errors, over the draws
   on which the acceleration acted at all.

Acceleration is only admissible for the dataset if (2) shows no shift beyond seed noise.

    PYTHONPATH=. .venv/bin/python benchmarks/sei_acceleration.py --n 40 --seeds 4 \\
        --settings 10000 1000 100 1000@1000000 300@1000000 --out benchmarks/results/sei_acceleration.md
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


def _run(row, size, seed, max_steps, setting):
    from battgen.sei.kmc import simulate

    ratio, after = setting if setting is not None else (None, 0)
    return simulate(row, nx=size, ny=size, seed=seed, max_steps=max_steps, hop_ratio=ratio,
                    accelerate_after=after)


def _name(setting) -> str:
    if setting is None:
        return "exact"
    ratio, after = setting
    return f"{ratio:g}" + (f" after {after:,} events" if after else "")


def measure(n: int, seeds: int, size: int, design_seed: int, max_steps: int, settings_in) -> str:
    from battgen.sei.kmc import warm_up

    warm_up()
    start = time.perf_counter()
    draws = sample_barriers(4000, design_seed)[:n]
    settings = [None, *settings_in]
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

    # seed 0 of every draw is the dataset's own seed; the others are fresh. A draw counts for a
    # setting only where the acceleration acted in one of its seeds: elsewhere it is the exact run.
    shifts = {s: {k: [] for k in OBSERVABLES} for s in settings_in}
    still_done = {s: 0 for s in settings_in}
    acted = {s: 0 for s in settings_in}
    for count, index in enumerate(exact_done):
        row = draws[index]
        seed_list = [run_seed(design_seed, index)] + [run_seed(design_seed + 1000 + k, index) for k in range(1, seeds)]
        exact = [_run(row, size, sd, max_steps, None).observables for sd in seed_list]
        for setting in settings_in:
            fast = [_run(row, size, sd, max_steps, setting) for sd in seed_list]
            if not any(r.accelerated_events for r in fast):
                continue
            acted[setting] += 1
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
             "| hop_ratio | passivated within the bound | median events | exactly passivating draws it acted on | of those, every seed passivates |",
             "|---|---:|---:|---:|---:|"]
    for setting in settings:
        used = "–" if setting is None else f"{acted[setting]}/{len(exact_done)}"
        done = "–" if setting is None else f"{still_done[setting]}/{acted[setting]}"
        lines.append(f"| {_name(setting)} | {finished[setting]}/{n} ({finished[setting] / n:.0%}) | "
                     f"{np.median(events[setting]):,.0f} | {used} | {done} |")
    lines += ["", "Shift of the accelerated mean from the exact mean, on the exactly passivating draws the "
              "acceleration acted on: median |shift| in standard errors, share of draws beyond 3 standard "
              "errors, and the median relative shift.", "",
              "| hop_ratio | " + " | ".join(OBSERVABLES) + " |", "|---|" + "---|" * len(OBSERVABLES)]
    for setting in settings_in:
        cells = []
        for key in OBSERVABLES:
            z = np.array([abs(s[0]) for s in shifts[setting][key]])
            rel = np.array([s[1] / s[2] for s in shifts[setting][key] if abs(s[2]) > 1e-9])
            cells.append(f"{np.median(z):.1f} SE, {np.mean(z > 3):.0%} > 3 SE, {np.median(rel):+.0%}"
                         if len(z) else "–")
        lines.append(f"| {_name(setting)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _setting(text: str):
    """'1000' or '1000@3000000' (ratio, exact events before the acceleration starts)."""
    ratio, _, after = text.partition("@")
    return float(ratio), int(float(after)) if after else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="number of draws of the dataset design")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per draw for the bias test (>= 2)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--seed", type=int, default=0, help="the dataset's design seed")
    parser.add_argument("--max-steps", type=int, default=DATASET_MAX_EVENTS)
    parser.add_argument("--settings", nargs="+", default=[f"{r:g}" for r in RATIOS],
                        help="hop ratios, each optionally @N: exact for the first N events")
    parser.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the bias is measured against seed noise)")
    text = measure(args.n, args.seeds, args.size, args.seed, args.max_steps, [_setting(t) for t in args.settings])
    print(text)
    if args.out:
        command = ("PYTHONPATH=. .venv/bin/python benchmarks/sei_acceleration.py "
                   f"--n {args.n} --seeds {args.seeds} --max-steps {args.max_steps} "
                   f"--settings {' '.join(args.settings)} --out {args.out}")
        args.out.write_text(f"# SEI: temporal acceleration of the diffusion moves\n\n`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()
