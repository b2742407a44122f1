"""AFM simulation speed: stacks/s (stack + all six descriptor maps) for ~30-atom electrode clusters.

Prints one table, one row per scan grid. The target is >= 1 stack/s for ~30 atoms at the
shipped 64 x 64 grid on a 2-core CPU (PoCL); 128 x 128 is the published grid. Clusters are
cut from the shipped electrode table (layered and rutile-channel hosts give 32-33 atoms),
each seen along its most informative views, so the numbers are what a campaign sees.
One AFMSimulator per grid, created (and its kernels compiled) before timing starts.
"CPU s" is the process's CPU time per stack (all OpenCL threads): on a busy machine wall-clock
stacks/s drops, while stacks per CPU-second shows what the cores would give if they were free.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_afm.py [--grids 64 128] [--stacks 12]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from battgen.afm.cluster import cut_cluster
from battgen.afm.rotations import select_rotations
from battgen.afm.simulate import AFMSimulator, SimulationConfig
from battgen.data.table import load_table, row_structure

# Hosts whose clusters have ~30 atoms at the default target (spinels give 42-54).
SMALL_CLUSTER_TYPES = ("layered-1T", "layered-O3", "rutile-channel")


def benchmark_views(n_stacks: int) -> list[tuple[str, object, np.ndarray, str]]:
    """(material id, cluster, rotation, ion) for n_stacks views spread over the small-cluster materials."""
    df = load_table()
    df = df[df["structure_type"].isin(SMALL_CLUSTER_TYPES)]
    materials = [(row["id"], cut_cluster(row_structure(row)), row["working_ion"]) for _, row in df.iterrows()]
    per_material = max(1, -(-n_stacks // len(materials)))
    views = []
    for material_id, cluster, ion in materials:
        rotations, _, _ = select_rotations(cluster.xyz, 100, per_material)
        views.extend((material_id, cluster, r, ion) for r in rotations)
    return views[:n_stacks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--stacks", type=int, default=12, help="timed stacks per grid")
    args = parser.parse_args()

    views = benchmark_views(args.stacks)
    atoms = [len(v[1]) for v in views]
    print(f"{len(views)} views of {len({v[0] for v in views})} materials, "
          f"{min(atoms)}-{max(atoms)} atoms (median {int(np.median(atoms))})")
    header = (f"{'grid':>9} {'stack':>14} {'set-up s':>8} {'median s':>8} {'AFM s':>6} {'desc s':>6} "
              f"{'CPU s':>6} {'stacks/s':>8} {'per CPU-s':>9} {'valid':>6}")
    rows = []
    for grid in args.grids:
        simulator = AFMSimulator(SimulationConfig(grid=grid))
        walls, afm, desc, valid = [], [], [], 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for _, cluster, rotation, ion in views:
            result = simulator.simulate(cluster.xyz, cluster.Zs, rotation, ion=ion)
            walls.append(result.wall_time_s)
            afm.append(result.timings["afm_s"])
            desc.append(result.timings["descriptors_s"])
            valid += result.valid
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        shape = "x".join(map(str, result.stack.shape))
        rows.append(f"{grid:>4}x{grid:<4} {shape:>14} {simulator.setup_time_s:>8.2f} {np.median(walls):>8.3f} "
                    f"{np.median(afm):>6.3f} {np.median(desc):>6.3f} {cpu / len(views):>6.3f} "
                    f"{len(views) / total:>8.2f} {len(views) / cpu:>9.2f} {valid:>3}/{len(views):<2}")
    print(f"device: {simulator.device}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print(header)
    print("-" * len(header))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
