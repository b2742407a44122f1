"""Energy above hull and competing phases for every computed row of an electrode table.

``python -m battgen data stability --table DIR`` (and the builder's assembly) fills the
``stability_*`` and ``competing_phases_*`` columns with :mod:`battgen.design.hull`: one hull per
chemical system over the table's own computed entries (discharged, charged and each ion metal,
CHGNet, whose energies are on MP2020's corrected scale) plus pymatgen's 423 reference
compounds with MP2020 corrections. A row's own entries are part of the hull, so its height is ≥ 0 and another
row can be what it decomposes into.

Rows fetched from the Materials Project keep MP's own stability values (a hull over all of MP's
phases, better than ours) and their already-corrected energies stay out of our hull, where they
would be corrected twice; their competing-phase counts stay empty.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from battgen.data.table import STATES

COMMAND = "python -m battgen data stability"
METHOD = ("offline hull per chemical system: the table's computed entries (CHGNet, MP2020 scale) "
          "+ pymatgen's calc_compounds reference entries with MaterialsProject2020Compatibility")


def stability_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """``table`` with E_hull and competing phases of both states for its computed rows, and a
    report (counts, reasons for rows left empty, seconds)."""
    from battgen.design.hull import hull_heights, hull_pool

    start = time.perf_counter()
    out = table.copy()
    computed = out[out["source"] == "computed"]
    pool = hull_pool(computed)
    by_id = {e.entry_id: e for e in pool}
    targets, where = [], []
    reasons: Counter = Counter()
    for index, row in computed.iterrows():
        for state in STATES:
            targets.append(by_id[f"{row['id']}:{state}"])
            where.append((index, state))
    heights = hull_heights(targets, pool) if targets else []
    for state in STATES:
        out.loc[computed.index, f"stability_{state}"] = np.nan
        out[f"competing_phases_{state}"] = out.get(f"competing_phases_{state}",
                                                   pd.Series(pd.NA, index=out.index)).astype("Int64")
        out.loc[computed.index, f"competing_phases_{state}"] = pd.NA
    for (index, state), result in zip(where, heights):
        out.at[index, f"competing_phases_{state}"] = result.competing_phases
        if result.e_hull is None:
            reasons[result.reason] += 1
        else:
            out.at[index, f"stability_{state}"] = result.e_hull
    report = {
        "method": METHOD,
        "rows_computed": int(len(computed)),
        "rows_kept_from_mp": int(len(out) - len(computed)),
        "reference_entries": sum(not e.entry_id.endswith(("-metal", ":discharge", ":charge")) for e in pool),
        "hull_entries": len(pool),
        "chemical_systems": len({frozenset(el.symbol for el in e.composition.elements) for e in targets}),
        "missing_by_reason": dict(reasons.most_common()),
        "seconds": round(time.perf_counter() - start, 2),
    }
    return out, report


def stability_summary(table: pd.DataFrame) -> dict:
    """Coverage and spread of E_hull in a table (what ``battgen data summary`` reports)."""
    out = {"rows": int(len(table))}
    for state in STATES:
        values = table[f"stability_{state}"].astype(float)
        finite = values.dropna()
        competing = table.get(f"competing_phases_{state}")
        out[state] = {
            "with_e_hull": int(len(finite)),
            "coverage": round(len(finite) / len(table), 4) if len(table) else None,
            "median_e_hull_eV_per_atom": round(float(finite.median()), 4) if len(finite) else None,
            "on_hull_below_1meV": int((finite < 1e-3).sum()),
            "below_0.1_eV": int((finite < 0.1).sum()),
            "with_competing_phases": None if competing is None else int((competing.fillna(0) > 0).sum()),
        }
    return out


def add_stability(table_dir: str | Path) -> dict:
    """Fill the stability columns of the table in ``table_dir`` in place (atomic writes) and
    record how in its metadata and metrics; returns the report."""
    import importlib.metadata
    import json

    from battgen import atomic
    from battgen.artifacts import git_revision, read_metadata, read_metrics, to_json_safe, write_metrics
    from battgen.data.table import load_table, save_table

    directory = Path(table_dir)
    table, report = stability_columns(load_table(directory))
    save_table(table, directory)
    provenance = {"command": f"{COMMAND} --table {directory}", **report,
                  "created_utc": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                  "pymatgen_version": importlib.metadata.version("pymatgen"),
                  "git": git_revision()}
    metadata = read_metadata(directory)
    if metadata is not None:
        metadata["stability"] = provenance
        # The build's own provenance stays as it was; only this step's record is added.
        atomic.write_text(directory / "metadata.json",
                          json.dumps(to_json_safe(metadata), indent=2, sort_keys=True) + "\n")
    metrics = read_metrics(directory)
    if metrics is not None:
        metrics["stability"] = stability_summary(table)
        write_metrics(directory, metrics)
    return {**report, "summary": stability_summary(table)}
