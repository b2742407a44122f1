"""What the SEI dataset's unfinished runs look like when the event bound stops them (issue 17).

A run stopped at the bound spends ≥ 98 % of its events on O and P hops. Whether an exact
event-skipping scheme could finish it depends on *why* its hops are so many: lone walkers crossing
empty electrolyte can be moved to the edge of an empty box in one step (first-passage KMC); a
crowd cannot, because every hop changes a neighbourhood something else reacts with. This census
reads the final lattices of a built dataset (the shipped ``assets/sei`` by default) and prints,
for stopped and passivated runs: species counts, how crowded the Li2EDC monomers are (the radius
of the empty box around each one, the largest first-passage domain it could be given), the monomer
density by distance from the electrode, and the barriers that separate the two groups.

    PYTHONPATH=. .venv/bin/python benchmarks/sei_truncated_census.py [--data assets/sei] [--sample 300]
"""

from __future__ import annotations

import argparse

import numpy as np

from battgen.sei.species import MONOMER, SOLVENT, SYMBOLS

BOX_RADII = (1, 2, 3, 5)


def empty_box_radius(lattice: np.ndarray, y: int, x: int) -> int:
    """Largest r such that the (2r+1)² box around (y, x) holds only solvent besides (y, x), stays
    off the electrode row and the absorbing top row, and inside the side walls."""
    rows, cols = lattice.shape
    occupied = lattice != SOLVENT
    r = 0
    while True:
        s = r + 1
        if y - s < 1 or x - s < 0 or y + s > rows - 2 or x + s > cols - 1:
            return r
        box = occupied[y - s:y + s + 1, x - s:x + s + 1].copy()
        box[s, s] = False
        if box.any():
            return r
        r = s


def census(data: str, sample: int, seed: int) -> str:
    with np.load(f"{data}/dataset.npz", allow_pickle=False) as z:
        lattices, status, names = z["lattices"], z["status"], z["status_names"].astype(str)
        barriers, barrier_names = z["barriers"], z["barrier_names"].astype(str)
    complete = status == list(names).index("complete")
    stopped = np.flatnonzero(~complete)
    lines = [f"# Census of the unfinished SEI runs ({data}: {len(status):,} runs, "
             f"{len(stopped):,} stopped at the bound, {int(complete.sum()):,} passivated)", "",
             "## Species per run (final lattice, sites of 2,500)", "",
             "| species | stopped: median | stopped: 90th pct | passivated: median |", "|---|---|---|---|"]
    for code, symbol in enumerate(SYMBOLS):
        counts = (lattices == code).sum(axis=(1, 2))
        lines.append(f"| {symbol} | {np.median(counts[stopped]):.0f} | {np.percentile(counts[stopped], 90):.0f} "
                     f"| {np.median(counts[complete]):.0f} |")
    rng = np.random.default_rng(seed)
    radii = []
    for run in rng.choice(stopped, min(sample, len(stopped)), replace=False):
        for y, x in zip(*np.nonzero(lattices[run] == MONOMER)):
            radii.append(empty_box_radius(lattices[run], int(y), int(x)))
    radii = np.asarray(radii)
    lines += ["", f"## How crowded the monomers (O) of stopped runs are ({len(radii):,} monomers in "
              f"{min(sample, len(stopped))} runs)", "",
              "An exact first-passage step can move a walker only across an empty box around it; "
              "radius r lets it skip about r² hops at once.", "",
              "| empty box radius ≥ | " + " | ".join(map(str, BOX_RADII)) + " |",
              "|---|" + "---|" * len(BOX_RADII),
              "| share of monomers | " + " | ".join(f"{100 * (radii >= r).mean():.1f} %" for r in BOX_RADII) + " |"]
    density = (lattices[stopped] == MONOMER).mean(axis=(0, 2))
    lines += ["", "## Monomer density by row (0 = next to the electrode), stopped runs", "",
              "| rows | " + " | ".join(f"{r}" for r in range(0, 12)) + " | 40–49 |",
              "|---|" + "---|" * 13,
              "| O share | " + " | ".join(f"{d:.2f}" for d in density[:12]) + f" | {density[40:].mean():.2f} |"]
    lines += ["", "## Barriers (eV) that separate the groups (median)", "",
              "| barrier | stopped | passivated |", "|---|---|---|"]
    medians = [(abs(np.median(barriers[stopped, k]) - np.median(barriers[complete, k])), k)
               for k in range(barriers.shape[1])]
    for _, k in sorted(medians, reverse=True)[:5]:
        lines.append(f"| {barrier_names[k]} | {np.median(barriers[stopped, k]):.3f} "
                     f"| {np.median(barriers[complete, k]):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="assets/sei", help="SEI dataset directory (default assets/sei)")
    parser.add_argument("--sample", type=int, default=300, help="stopped runs whose monomers are measured")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(census(args.data, args.sample, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
