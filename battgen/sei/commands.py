"""``python -m battgen sei ...``: simulate one run, build the dataset."""

from __future__ import annotations

import argparse
import json

from battgen.parallel import add_parallel_options
from battgen.sei.defaults import DATASET_MAX_EVENTS, DEFAULT_SIZE


def register(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser("simulate", help="run one KMC simulation")
    sim.add_argument("--size", type=int, default=DEFAULT_SIZE, help="lattice width and height in sites")
    sim.add_argument("--nx", type=int, help="lattice width (overrides --size)")
    sim.add_argument("--ny", type=int, help="lattice height (overrides --size)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--barriers", default="", help="overrides in eV, e.g. e1=0.5,e7=0.6")
    sim.add_argument("--max-steps", type=int, default=None)
    sim.add_argument("--max-time", type=float, default=None, help="simulated seconds")
    sim.add_argument("--save", help="write the final lattice and snapshots to this .npz")
    sim.add_argument("--json", action="store_true", help="print observables as JSON")
    sim.set_defaults(func=_simulate)

    build = commands.add_parser("build-dataset", help="Latin-hypercube KMC dataset")
    build.add_argument("--n", type=int, required=True, help="number of runs")
    build.add_argument("--size", type=int, default=DEFAULT_SIZE)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--out", default="data/sei")
    build.add_argument("--max-steps", type=int, default=None,
                       help=f"event bound per run (default {DATASET_MAX_EVENTS:,})")
    build.add_argument("--hop-ratio", type=float, default=None,
                       help="temporal acceleration of the diffusion moves (default: exact runs); "
                            "see benchmarks/results/sei_acceleration.md for its measured bias")
    build.add_argument("--accelerate-after", type=int, default=None,
                       help="with --hop-ratio: exact for this many events first")
    add_parallel_options(build)
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=_build)


def _simulate(args) -> int:
    from battgen.sei.barriers import parse_barrier_string
    from battgen.sei.kmc import simulate

    result = simulate(
        parse_barrier_string(args.barriers) if args.barriers else None,
        nx=args.nx or args.size,
        ny=args.ny or args.size,
        seed=args.seed,
        max_steps=args.max_steps,
        max_time=args.max_time,
        n_snapshots=100 if args.save else 0,
    )
    if args.save:
        result.to_npz(args.save)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key in ("thickness", "porosity", "porosity_half", "inorganic_fraction", "organic_fraction", "density",
                    "steps", "sim_time_s", "wall_time_s", "status"):
            print(f"{key:>20}: {summary[key]}")
    return 0


def _build(args) -> int:
    from battgen.sei.dataset import DatasetPlan, build_dataset

    plan = DatasetPlan(n=args.n, size=args.size, seed=args.seed,
                       max_steps=args.max_steps or DATASET_MAX_EVENTS, hop_ratio=args.hop_ratio,
                       accelerate_after=args.accelerate_after)
    path = build_dataset(args.out, plan, workers=args.workers, dask_scheduler=args.dask_scheduler,
                         progress=not args.no_progress)
    print(f"wrote {path}")
    return 0
