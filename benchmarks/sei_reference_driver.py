"""Run the public reference SEI KMC (KIT-Workflows/KMC-CIDEMOD, folder ``KMC_SEI``) on our terms.

The reference is a script: its modules read ``rendered_wano.yml`` from the working directory when
imported, and ``KMC_SEI.py`` runs the main loop at module level until no event is left. This driver
leaves its files untouched. It writes a temporary input file (size, temperature, barriers) and seeds
Python's ``random`` (the reference's only random source). Then it imports the reference's modules,
wraps two of their functions and executes ``KMC_SEI.py`` in a fresh namespace:

* ``update`` (applies one event) is wrapped to count events per type and to stop at an event bound.
  Slow barrier sets would otherwise run for days.
* ``--mode repaired`` also wraps ``pre_event`` (collects the events of a list of sites) to repair
  the reference's lost events, and nothing else. After each event the reference deletes every
  listed event that touches the changed neighbourhood, but rebuilds events only for the sites
  inside it. An event owned by a site one step further out (an O next to the changed area, say)
  is deleted and never rebuilt, until the list runs empty and a full rescan happens. The repair
  tags every event with the site that produced it. Every site that lost an event has its events
  rebuilt by the reference's own ``pre_event``, and its surviving events are removed first so
  nothing is duplicated. Free clusters are skipped: the reference rebuilds their events every
  step from one representative site.

``--mode published`` runs the reference exactly as published apart from the bound. The final
lattice is converted to our species codes (:func:`reference_lattice_to_codes`), so the harness
computes our observables on it. One run per process: the reference keeps its state in module
globals.

    .venv/bin/python benchmarks/sei_reference_driver.py --reference DIR --nx 10 --ny 30 --seed 0 \
        --mode repaired --max-steps 2000000 --out run.npz
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from battgen.sei.barriers import N_EVENTS, resolve_barriers
from battgen.sei.species import ATTACHED, DIMER, FREE_CLUSTER, INORGANIC, MONOMER, RADICAL, SOLVENT

MODES = ("published", "repaired")
REFERENCE_URL = "https://github.com/KIT-Workflows/KMC-CIDEMOD"
# The reference writes its progress file every SaveStep events (an O(lattice) pass); we read the
# final lattice from memory instead, so the file is written only at the end.
NEVER_SAVE = 10**12


class _BoundReached(Exception):
    pass


def reference_script_dir(reference: str | os.PathLike[str]) -> Path:
    """``KMC_SEI`` inside a checkout of the reference (or the folder itself); ValueError if absent."""
    root = Path(reference)
    for candidate in (root / "KMC_SEI", root):
        if (candidate / "KMC_SEI.py").is_file() and (candidate / "collection.py").is_file():
            return candidate
    raise ValueError(f"{root} holds no KMC_SEI/KMC_SEI.py: clone {REFERENCE_URL} and pass the checkout")


def reference_lattice_to_codes(sites, nx: int, ny: int) -> np.ndarray:
    """The reference's final lattice as our (ny, nx) species codes, row 0 next to the electrode.

    ``sites`` are the reference's site objects (``coordinate`` [x, y] with x = 1..nx and y = 0..ny+1,
    ``species``, ``bonds``, ``status``). Its species map to ours as: E and A rows are boundaries
    (dropped), S → solvent, P → radical, F → Li2CO3, O → monomer, or dimer when bonded to another O,
    C → attached organic SEI when its status carries the 'SEI' flag, else a free cluster.
    """
    lattice = np.full((ny, nx), 255, np.uint8)
    for site in sites:
        x, y = int(site.coordinate[0]), int(site.coordinate[1])
        if y == 0 or y == ny + 1:
            continue  # the electrode and absorbing rows are boundaries in our lattice
        if not (1 <= x <= nx and 1 <= y <= ny):
            raise ValueError(f"reference site {site.coordinate} lies outside a {nx}x{ny} lattice")
        species = site.species
        if species == "S":
            code = SOLVENT
        elif species == "P":
            code = RADICAL
        elif species == "F":
            code = INORGANIC
        elif species == "O":
            code = DIMER if site.bonds else MONOMER
        elif species == "C":
            code = ATTACHED if site.status[3][1] == "SEI" else FREE_CLUSTER
        else:
            raise ValueError(f"unexpected reference species {species!r} at {site.coordinate}")
        if lattice[y - 1, x - 1] != 255:
            raise ValueError(f"two reference sites at {site.coordinate}")
        lattice[y - 1, x - 1] = code
    if (lattice == 255).any():
        raise ValueError("the reference lattice does not cover every interior site")
    return lattice


def partial_path(out: Path) -> Path:
    """Where a run writing ``out`` keeps its latest snapshot."""
    return out.with_name(out.stem + ".partial.npz")


def _write_input(path: Path, nx: int, ny: int, barriers: np.ndarray, temperature: float) -> None:
    import yaml

    wano = {
        "Lattice size": {"Xdim": int(nx), "Ydim": int(ny)},
        "Temperature (K)": {"T": float(temperature)},
        "Save step": {"SaveStep": NEVER_SAVE},
        "Activation energy barriers (eV)": {f"E{i + 1}": float(b) for i, b in enumerate(barriers)},
    }
    path.write_text(yaml.safe_dump(wano))


def run_reference(reference, *, nx: int, ny: int, seed: int, barriers=None, mode: str = "published",
                  max_steps: int = 10**9, temperature: float = 300.0, snapshot=None,
                  snapshot_every: int = 0) -> dict:
    """One reference run in this process (call it once per process). Returns the final lattice in
    our codes, status ('complete' or 'max_steps'), events, simulated time, wall time, event counts.
    ``snapshot(lattice, t, steps)`` is called with the reference's site list every ``snapshot_every`` events,
    so a run that cannot finish in the time at hand still leaves a state to compare."""
    if not snapshot_every:
        snapshot = None
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    script_dir = reference_script_dir(reference).resolve()
    full = resolve_barriers(barriers)
    work = Path(tempfile.mkdtemp(prefix="sei_reference_"))
    run_dir = work / "run"  # the reference writes its summary to ../kmc_data.yml
    run_dir.mkdir()
    _write_input(run_dir / "rendered_wano.yml", nx, ny, full, temperature)
    os.chdir(run_dir)
    sys.path.insert(0, str(script_dir))
    import collection  # noqa: E402  (reads rendered_wano.yml at import)
    import update as update_module  # noqa: E402

    namespace: dict = {"__name__": "__main__", "__file__": str(script_dir / "KMC_SEI.py")}
    counts = np.zeros(N_EVENTS, np.int64)
    original_update = update_module.update
    original_pre_event = collection.pre_event
    repair = {"before": None, "rebuilt": 0}

    def counted_update(event, t, lattice):
        if counts.sum() >= max_steps:
            raise _BoundReached
        counts[event.new_coord[-1]] += 1
        if mode == "repaired":
            # the script rebinds ``pre`` to filtered copies after the event, so this list object
            # keeps the events as they were before the deletion
            repair["before"] = namespace["pre"]
        result = original_update(event, t, lattice)
        if snapshot is not None and counts.sum() % snapshot_every == 0:
            snapshot(lattice, t, int(counts.sum()))
        return result

    def owned_events(sites):
        events = []
        for site in sites:  # one site at a time: same events, same random draws, known owner
            for event in original_pre_event([site]):
                event.owner = site
                events.append(event)
        return events

    def repaired_pre_event(top_list):
        before, repair["before"] = repair["before"], None
        if before is None:
            return owned_events(top_list)
        kept = {id(e) for e in namespace["pre"]}
        rebuild = {id(s) for s in top_list}
        extra = []
        for event in before:
            owner = event.owner
            if id(event) in kept or id(owner) in rebuild or owner.species in ("S", "A"):
                continue
            if owner.species == "C" and owner.status[3][1] != "SEI":
                continue  # free clusters: rebuilt each step from their representative
            rebuild.add(id(owner))
            extra.append(owner)
        if extra:
            gone = {id(s) for s in extra}
            namespace["pre"] = [e for e in namespace["pre"] if id(e.owner) not in gone]
            repair["rebuilt"] += len(extra)
        return owned_events(list(top_list) + extra)

    # ``from module import *`` copied both functions into every reference module that imports
    # them, and KMC_SEI.py takes them from the last one it star-imports: replace them everywhere.
    for module in (sys.modules[name] for name in ("support", "initialize", "collection", "update")):
        if getattr(module, "update", None) is original_update:
            module.update = counted_update
        if mode == "repaired" and getattr(module, "pre_event", None) is original_pre_event:
            module.pre_event = repaired_pre_event
    source = (script_dir / "KMC_SEI.py").read_text()
    code = compile(source, str(script_dir / "KMC_SEI.py"), "exec")
    random.seed(seed)
    start = time.perf_counter()
    try:
        exec(code, namespace)
        status = "complete"
    except _BoundReached:
        status = "max_steps"
    wall = time.perf_counter() - start
    lattice = reference_lattice_to_codes(namespace["lattice"], nx, ny)
    return {
        "lattice": lattice,
        "status": status,
        "steps": int(counts.sum()),
        "sim_time_s": float(namespace["t"]),
        "wall_time_s": wall,
        "event_counts": counts,
        "sites_rebuilt": int(repair["rebuilt"]),
        "barriers": full,
        "seed": int(seed),
        "mode": mode,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help=f"a checkout of {REFERENCE_URL}")
    parser.add_argument("--nx", type=int, default=20)
    parser.add_argument("--ny", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--barriers", default="", help="overrides in eV, e.g. e1=0.5,e7=0.6")
    parser.add_argument("--mode", choices=MODES, default="published")
    parser.add_argument("--max-steps", type=int, default=10**9)
    parser.add_argument("--out", required=True, help="write the result to this .npz")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="also keep the state every this many events in OUT.partial.npz (0: never)")
    args = parser.parse_args(argv)
    from battgen.sei.barriers import parse_barrier_string

    out = Path(args.out).resolve()
    partial = partial_path(out)

    def snapshot(sites, t, steps):
        # the state so far, replaced atomically: a run stopped from outside leaves a whole file
        tmp = partial.with_name(partial.name + ".tmp.npz")
        np.savez_compressed(tmp, lattice=reference_lattice_to_codes(sites, args.nx, args.ny),
                            sim_time_s=t, steps=steps, status=np.array("partial"))
        os.replace(tmp, partial)

    try:
        result = run_reference(args.reference, nx=args.nx, ny=args.ny, seed=args.seed,
                               barriers=parse_barrier_string(args.barriers) if args.barriers else None,
                               mode=args.mode, max_steps=args.max_steps, snapshot=snapshot,
                               snapshot_every=args.snapshot_every)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    np.savez_compressed(out, **{k: v for k, v in result.items() if k != "mode" and k != "status"},
                        mode=np.array(result["mode"]), status=np.array(result["status"]))
    print(json.dumps({k: result[k] for k in ("status", "steps", "sim_time_s", "wall_time_s", "sites_rebuilt")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
