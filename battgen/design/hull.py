"""Energy above a hull built offline: our table + pymatgen's reference compounds, on MP2020's scale.

Entries: every discharged and charged structure of the electrode table and each ion metal (CHGNet)
and the 423 compounds pymatgen ships in ``calc_compounds.json.gz`` (raw MP GGA/GGA+U energies).
Only the references pass through ``MaterialsProject2020Compatibility``: CHGNet was trained on
MPtrj's MP2020-*corrected* energies, so its predictions already carry the anion and GGA+U
corrections, and correcting them again would put every oxide or fluoride of a U metal about
1 eV/atom below its references (measured on the shipped table: the 13 compounds it shares with
the references sit a median 0.07 eV/atom above their corrected MP energies, 0.90 eV/atom below
once corrected a second time). A hull is built per chemical system on demand; beside each E_hull
stands the number of compounds that compete in that system, because a candidate alone in an
empty system sits "on the hull" by default, not by merit.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

# MP's Hubbard U (eV) for oxides and fluorides (MPRelaxSet), needed to flag CHGNet entries as GGA+U.
MP_U = {"Co": 3.32, "Cr": 3.7, "Fe": 5.3, "Mn": 3.9, "Mo": 4.38, "Ni": 6.2, "V": 3.25, "W": 6.2}
U_ANIONS = ("O", "F")


def mp_parameters(composition) -> dict:
    """The run parameters MP would have used for ``composition`` (recorded on CHGNet entries)."""
    symbols = {el.symbol for el in composition.elements}
    if symbols & set(U_ANIONS) and symbols & set(MP_U):
        return {"run_type": "GGA+U", "is_hubbard": True, "hubbards": {s: MP_U[s] for s in symbols & set(MP_U)}}
    return {"run_type": "GGA", "is_hubbard": False, "hubbards": {}}


def chgnet_entry(composition, energy: float, entry_id: str):
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

    composition = Composition(composition)
    return ComputedEntry(composition, energy, parameters=mp_parameters(composition), entry_id=entry_id)


def _compatibility():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def correct(entries) -> list:
    """MP2020-corrected copies of raw MP entries (the references); CHGNet entries need none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _compatibility().process_entries(entries, clean=True, inplace=False)


def reference_entries() -> list:
    from pymatgen.entries.computed_entries import ComputedEntry
    import pymatgen.analysis.compatibility as compat_pkg

    path = os.path.join(os.path.dirname(compat_pkg.__file__), "calc_compounds.json.gz")
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    with warnings.catch_warnings():
        # Noble-gas references have no electronegativity; their formulas warn while sorting.
        warnings.simplefilter("ignore")
        return [ComputedEntry.from_dict(d) for d in data.values()]


def table_entries(table) -> list:
    """CHGNet entries of a table's rows: both states of each row, each ion metal once per energy."""
    from pymatgen.core import Composition

    out, metals = [], set()
    for _, row in table.iterrows():
        for state in ("discharge", "charge"):
            comp = _composition_of(row, state)
            out.append(chgnet_entry(comp, row[f"energy_per_atom_{state}"] * comp.num_atoms, f"{row['id']}:{state}"))
        ion, energy = row["working_ion"], float(row["ion_energy_per_atom"])
        if (ion, energy) not in metals:
            metals.add((ion, energy))
            out.append(chgnet_entry(Composition(ion), energy, f"{ion}-metal"))
    return out


def hull_pool(table) -> list:
    """Every entry a hull may use: corrected references and the table's CHGNet entries as they are."""
    return correct(reference_entries()) + table_entries(table)


def _composition_of(row, state: str):
    from pymatgen.core import Structure

    return Structure.from_dict(json.loads(row[f"structure_{state}"])).composition


@lru_cache(maxsize=2)
def _hull_entries(table_key: str) -> tuple:
    from battgen.data.table import load_table

    return tuple(hull_pool(load_table(table_key)))


@dataclass
class HullResult:
    e_hull: float | None  # eV/atom above the hull; None when it could not be built
    competing_phases: int  # compounds (≥ 2 elements) in the chemical system besides the candidate
    reason: str = ""


def e_above_hull(entry, table_dir) -> HullResult:
    """E_hull of a CHGNet ``entry`` (from ``chgnet_entry``) against the offline hull."""
    return hull_heights([entry], _hull_entries(str(table_dir)), in_pool=False)[0]


def hull_heights(entries, pool, *, in_pool: bool = True) -> list[HullResult]:
    """E_hull of each entry against ``pool`` (both on MP2020's scale), one hull per chemical system.

    ``in_pool``: the entries are already part of ``pool`` (a table's own rows), so they are not
    added a second time. Entries of one chemical system share a single phase diagram, which is
    what makes a whole table (thousands of entries, hundreds of systems) take seconds.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the noble-gas formulas again (see reference_entries)
        return _hull_heights(list(entries), list(pool), in_pool)


def _hull_heights(entries: list, pool: list, in_pool: bool) -> list[HullResult]:
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    pool_elements = [frozenset(el.symbol for el in e.composition.elements) for e in pool]
    by_system: dict[frozenset, list[int]] = {}
    for i, entry in enumerate(entries):
        by_system.setdefault(frozenset(el.symbol for el in entry.composition.elements), []).append(i)
    results: list[HullResult | None] = [None] * len(entries)
    for elements, members in by_system.items():
        subset = [e for e, els in zip(pool, pool_elements) if els <= elements]
        compounds = {e.composition.reduced_formula for e in subset if len(e.composition.elements) >= 2}
        elemental = {next(iter(els)) for els in pool_elements if len(els) == 1 and els <= elements}
        missing = elements - elemental
        diagram = None
        if not missing:
            extra = [] if in_pool else [entries[i] for i in members]
            diagram = PhaseDiagram(subset + extra)
        for i in members:
            entry = entries[i]
            competing = len(compounds - {entry.composition.reduced_formula})
            if diagram is None:
                results[i] = HullResult(None, competing, f"no elemental reference for {', '.join(sorted(missing))}")
                continue
            results[i] = HullResult(float(diagram.get_e_above_hull(entry, allow_negative=True)), competing)
    return results
