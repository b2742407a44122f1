"""Side by side: the public reference SEI KMC (as published and repaired) and ours, same lattices and barriers.

Issue 17. The reference (https://github.com/KIT-Workflows/KMC-CIDEMOD, folder ``KMC_SEI``) is not
part of the product. Clone it and pass the checkout with ``--reference``. Each reference run is
one process of ``sei_reference_driver.py``, which sets the size, seed, barriers and event bound and,
in the repaired mode, patches only its lost events at run time (see that file). Both codes' final
lattices go through our observables (:func:`battgen.sei.observables.compute_observables`), so
thickness, both porosities and the volume fractions are computed the same way.

Barrier sets: the defaults, the issue's sets A and B, and ``--draws`` rows of the dataset's design
(``sample_barriers(4000, 0)``, the design of the 4,000-run dataset). Every set is run to completion
or to ``--max-steps`` events. The sets in ``--bounded-sets``, and any set whose first run of ours does
not finish within that bound, are compared at ``--slow-max-steps`` on both sides: the reference
cannot reach their end in any sensible time. Their "ours, to completion" row (``--complete-seeds``
runs up to ``--complete-max-steps``) gives the events such a set needs. Reference runs are cached in
``--cache`` (one .npz per run), so a second call only adds what is missing.

    git clone https://github.com/KIT-Workflows/KMC-CIDEMOD /tmp/KMC-CIDEMOD
    PYTHONPATH=. .venv/bin/python benchmarks/sei_reference.py --reference /tmp/KMC-CIDEMOD \\
        --nx 10 --ny 50 --ref-seeds 3 --our-seeds 20 --cache /tmp/sei_reference_cache
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from battgen.sei.barriers import BARRIER_NAMES, resolve_barriers
from battgen.sei.dataset import sample_barriers
from battgen.sei.kmc import BOLTZMANN_EV
from battgen.sei.observables import compute_observables
from sei_reference_driver import partial_path, reference_script_dir

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "sei_reference_driver.py"
DESIGN_N, DESIGN_SEED = 4000, 0

# The two dataset barrier sets (e1 ... e15, eV).
SET_A = (0.5592, 0.4245, 0.2692, 0.5232, 0.5518, 0.6893, 0.4886, 0.5783, 0.4888, 0.4151, 0.6392, 0.5608,
         0.6511, 0.5496, 0.5023)
SET_B = (0.5304, 0.2198, 0.3059, 0.1977, 0.8130, 0.5840, 0.5766, 0.7425, 0.7033, 0.6534, 0.6191, 0.3853,
         0.5557, 0.4405, 0.4206)
# Rows of the dataset design: 0, 4 and 6 passivate within 0.1 M events at 50x50; 3 and 12 stop at
# thickness 1 even at 30 M events (benchmarks/results/sei_reference.md, section 2).
DEFAULT_DRAWS = (0, 3, 4, 6, 12)
# Compared at an event bound on both sides: set B needs 1.7-2.5 M events at 20x50 (hours per reference
# run at ~2,000 events/s); draws 3 and 12 do not passivate within 30 M events at 50x50.
BOUNDED_SETS = ("B", "draw 3", "draw 12")
COLUMNS = ("thickness", "porosity", "porosity_half", "inorganic_fraction", "organic_fraction")


def pairs_counted_twice(barriers: np.ndarray, temperature: float = 300.0) -> np.ndarray:
    """Our model with the reference's pair counting: it lists P+P, O+O, OO+OO and O+OO from both sites,
    which doubles their rates; lowering their barriers by k_B·T·ln 2 does exactly that in ours."""
    shifted = np.array(barriers, float)
    shifted[[3, 4, 5, 9]] -= BOLTZMANN_EV * temperature * np.log(2)  # e4, e5, e6, e10
    return np.maximum(shifted, 0.0)


def dimer_moves_as_reference(barriers: np.ndarray, temperature: float = 300.0) -> np.ndarray:
    """Our model with the reference's dimer mobility: in free solvent a reference dimer has up to 6
    moves (either site to one of its 3 outward neighbours), ours 4 rigid translations. Lowering e12
    by k_B·T·ln 1.5 gives ours the reference's total hop rate; the rotation that its non-rigid moves
    add is not reproduced."""
    shifted = np.array(barriers, float)
    shifted[11] -= BOLTZMANN_EV * temperature * np.log(1.5)  # e12
    return np.maximum(shifted, 0.0)


def barrier_sets(draws) -> dict[str, np.ndarray]:
    sets = {"default": resolve_barriers(None), "A": resolve_barriers(SET_A), "B": resolve_barriers(SET_B)}
    design = sample_barriers(DESIGN_N, DESIGN_SEED)
    for index in draws:
        sets[f"draw {index}"] = resolve_barriers(design[index])
    return sets


def _barrier_string(barriers: np.ndarray) -> str:
    return ",".join(f"e{i + 1}={b:.6f}" for i, b in enumerate(barriers))


def _cache_file(cache: Path, mode: str, nx: int, ny: int, seed: int, bound: int, barriers: np.ndarray) -> Path:
    key = hashlib.sha1(np.round(barriers, 6).tobytes()).hexdigest()[:8]
    return cache / f"ref-{mode}-{nx}x{ny}-seed{seed}-max{bound}-{key}.npz"


def run_reference(reference: Path, cache: Path, mode: str, nx: int, ny: int, seed: int, bound: int,
                  barriers: np.ndarray, use_partial: bool = False, cached_only: bool = False) -> dict | None:
    path = _cache_file(cache, mode, nx, ny, seed, bound, barriers)
    partial = partial_path(path)
    if cached_only and not path.is_file() and not (use_partial and partial.is_file()):
        return None
    if use_partial and not path.is_file() and partial.is_file():
        # a run still going (or stopped): its latest snapshot, compared at its simulated time
        with np.load(partial, allow_pickle=False) as z:
            return {"lattice": z["lattice"], "status": "partial", "steps": int(z["steps"]),
                    "wall_time_s": float("nan"), "sim_time_s": float(z["sim_time_s"])}
    if not path.is_file():
        env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, str(DRIVER), "--reference", str(reference), "--nx", str(nx), "--ny", str(ny),
                   "--seed", str(seed), "--mode", mode, "--max-steps", str(bound),
                   "--barriers", _barrier_string(barriers), "--out", str(path)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"reference run failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    with np.load(path, allow_pickle=False) as z:
        return {"lattice": z["lattice"], "status": str(z["status"]), "steps": int(z["steps"]),
                "wall_time_s": float(z["wall_time_s"]), "sim_time_s": float(z["sim_time_s"])}


def run_ours(nx: int, ny: int, seed: int, bound: int, barriers: np.ndarray, max_time: float | None = None) -> dict:
    from battgen.sei.kmc import simulate

    result = simulate(barriers, nx=nx, ny=ny, seed=seed, max_steps=bound, max_time=max_time)
    return {"lattice": result.lattice, "status": result.status, "steps": result.steps,
            "wall_time_s": result.wall_time_s, "sim_time_s": result.sim_time_s}


def summarise(label: str, runs: list[dict]) -> dict:
    observables = [compute_observables(r["lattice"]) for r in runs]
    row = {"code": label, "runs": len(runs),
           "passivated": sum(r["status"] == "complete" for r in runs),
           "events": float(np.median([r["steps"] for r in runs])),
           "events_range": (min(r["steps"] for r in runs), max(r["steps"] for r in runs)),
           "wall_s": float(np.median([r["wall_time_s"] for r in runs])),
           "events_per_s": sum(r["steps"] for r in runs) / max(sum(r["wall_time_s"] for r in runs), 1e-12),
           "sim_time_s": float(np.median([r["sim_time_s"] for r in runs]))}
    for name in COLUMNS:
        values = np.array([o[name] for o in observables])
        row[name] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return row


def format_table(rows: list[dict]) -> str:
    head = ("| set | code | passivated | events (median; range) | thickness | porosity (layer) | "
            "porosity (half-thickness) | Li2CO3 fraction | organic fraction | sim. time (s) | s/run | events/s | "
            "ours faster |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        cells = [row["set"], row["code"], f"{row['passivated']}/{row['runs']}",
                 f"{row['events']:,.0f} ({row['events_range'][0]:,}–{row['events_range'][1]:,})"]
        cells += [f"{row[name][0]:.3f} ± {row[name][1]:.3f}" if name != "thickness"
                  else f"{row[name][0]:.2f} ± {row[name][1]:.2f}" for name in COLUMNS]
        cells += [f"{row['sim_time_s']:.3g}", f"{row['wall_s']:.3g}", f"{row['events_per_s']:,.0f}",
                  row.get("ratio", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a checkout of the reference (none: ours only)")
    parser.add_argument("--nx", type=int, default=10)
    parser.add_argument("--ny", type=int, default=50)
    parser.add_argument("--ref-seeds", type=int, default=3)
    parser.add_argument("--our-seeds", type=int, default=20)
    parser.add_argument("--sets", nargs="+", help="names of barrier sets to run (default: all)")
    parser.add_argument("--draws", type=int, nargs="*", default=list(DEFAULT_DRAWS),
                        help="rows of the dataset design to add as barrier sets")
    parser.add_argument("--max-steps", type=int, default=3_000_000,
                        help="event bound of both codes; a set ours does not finish within it is bounded")
    parser.add_argument("--slow-max-steps", type=int, default=10_000, help="event bound of bounded sets")
    parser.add_argument("--bounded-sets", nargs="*", default=list(BOUNDED_SETS),
                        help="sets compared at --slow-max-steps whatever ours needs")
    parser.add_argument("--complete-max-steps", type=int, default=3_000_000,
                        help="bound of the 'ours, to completion' runs of bounded sets")
    parser.add_argument("--complete-seeds", type=int, default=3)
    parser.add_argument("--pairs-twice", action="store_true",
                        help="add a row of ours with the reference's pair counting (isolates its effect)")
    parser.add_argument("--dimer-six-moves", action="store_true",
                        help="add a row of ours with the reference's dimer hop rate (isolates its effect)")
    parser.add_argument("--modes", nargs="+", default=["published", "repaired"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/sei_reference_cache"))
    parser.add_argument("--use-partial", action="store_true",
                        help="for a reference run not finished yet, take its latest snapshot "
                             "(driver --snapshot-every) and add ours stopped at the same simulated time")
    parser.add_argument("--cached-only", action="store_true",
                        help="start no reference run: use what the cache holds (and snapshots, with --use-partial)")
    parser.add_argument("--jobs", type=int, default=1, help="reference runs at once (one core each)")
    args = parser.parse_args(argv)

    sets = barrier_sets(args.draws)
    if args.sets:
        unknown = set(args.sets) - set(sets)
        if unknown:
            print(f"error: unknown barrier sets {sorted(unknown)}; known: {list(sets)}", file=sys.stderr)
            return 2
        sets = {name: sets[name] for name in args.sets}
    if args.reference is not None:
        try:
            reference_script_dir(args.reference)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        args.cache.mkdir(parents=True, exist_ok=True)
    print(f"lattice {args.nx}x{args.ny}; seeds: reference {args.ref_seeds}, ours {args.our_seeds}; "
          f"bound {args.max_steps:,} events (slow sets {args.slow_max_steps:,})\n", flush=True)

    plans = {}
    for name, barriers in sets.items():
        probe = run_ours(args.nx, args.ny, 0, args.max_steps, barriers)
        bounded = name in args.bounded_sets or probe["status"] != "complete"
        plans[name] = args.slow_max_steps if bounded else args.max_steps
    keys = [(name, mode) for name in sets for mode in args.modes for _ in range(args.ref_seeds)]
    jobs = [(args.reference, args.cache, mode, args.nx, args.ny, seed, plans[name], sets[name], args.use_partial,
             args.cached_only)
            for name in sets for mode in args.modes for seed in range(args.ref_seeds)]
    reference_runs = {}
    if args.reference is not None:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # each job is its own process
            for key, result in zip(keys, pool.map(lambda job: run_reference(*job), jobs)):
                if result is not None:
                    reference_runs.setdefault(key, []).append(result)

    rows = []
    for name, barriers in sets.items():
        bound = plans[name]
        ours = [run_ours(args.nx, args.ny, seed, bound, barriers) for seed in range(args.our_seeds)]
        ours_row = summarise("ours", ours)
        set_rows = []
        same_time = {}
        for mode in args.modes if args.reference is not None else ():
            runs = reference_runs.get((name, mode), [])
            unfinished = [r for r in runs if r["status"] == "partial"]
            finished_runs = [r for r in runs if r["status"] != "partial"]
            if finished_runs:
                row = summarise(f"reference, {mode}", finished_runs)
                row["ratio"] = f"{ours_row['events_per_s'] / row['events_per_s']:,.0f}x"
                set_rows.append(row)
            if unfinished:
                t_stop = float(np.median([r["sim_time_s"] for r in unfinished]))
                set_rows.append(summarise(f"reference, {mode}, still running at t = {t_stop:.3g} s", unfinished))
                same_time[mode] = t_stop
        set_rows.append(ours_row)
        for mode, t_stop in same_time.items():
            set_rows.append(summarise(f"ours, stopped at t = {t_stop:.3g} s (as reference, {mode})",
                                      [run_ours(args.nx, args.ny, seed, bound, barriers, max_time=t_stop)
                                       for seed in range(args.our_seeds)]))
        if args.pairs_twice:
            twice = pairs_counted_twice(barriers)
            set_rows.append(summarise("ours, pairs from both sites",
                                      [run_ours(args.nx, args.ny, seed, bound, twice)
                                       for seed in range(args.our_seeds)]))
        if args.dimer_six_moves:
            six = dimer_moves_as_reference(barriers)
            set_rows.append(summarise("ours, dimer hops x1.5 (reference's 6 moves)",
                                      [run_ours(args.nx, args.ny, seed, bound, six)
                                       for seed in range(args.our_seeds)]))
        if ours_row["passivated"] < ours_row["runs"]:
            full = [run_ours(args.nx, args.ny, seed, args.complete_max_steps, barriers)
                    for seed in range(args.complete_seeds)]
            set_rows.append(summarise("ours, to completion", full))
        label = f"{name} (bound {bound:,})" if bound != args.max_steps else name
        for row in set_rows:
            row["set"] = label
        rows += set_rows
        print(format_table(set_rows), flush=True)
        print(flush=True)

    print("All sets:\n")
    print(format_table(rows))
    print("\nBarrier sets (eV):")
    for name, barriers in sets.items():
        print(f"- {name}: " + ", ".join(f"{n}={b:.4f}" for n, b in zip(BARRIER_NAMES, barriers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
