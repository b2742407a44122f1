"""Energy above a hull built offline: our table + pymatgen's reference compounds, MP2020-corrected.

Entries: every discharged and charged structure of the electrode table and each ion metal (CHGNet,
which predicts raw Materials Project GGA/GGA+U energies) and the 423 compounds pymatgen ships in
``calc_compounds.json.gz`` (raw MP energies). All pass through ``MaterialsProject2020Compatibility``,
so CHGNet entries get the GGA+U flags MP would have used (oxides and fluorides of the U metals).
A hull is built per chemical system on demand; beside each E_hull stands the number of compounds
that compete in that system, because a candidate alone in an empty system sits "on the hull" by
default, not by merit.
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
    """The run parameters MP would have used for ``composition`` (what the compatibility reads)."""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _compatibility().process_entries(entries, clean=True, inplace=False)


def reference_entries() -> list:
    from pymatgen.entries.computed_entries import ComputedEntry
    import pymatgen.analysis.compatibility as compat_pkg

    path = os.path.join(os.path.dirname(compat_pkg.__file__), "calc_compounds.json.gz")
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    return [ComputedEntry.from_dict(d) for d in data.values()]


def table_entries(table) -> list:
    from pymatgen.core import Composition

    out = []
    for _, row in table.iterrows():
        for state in ("discharge", "charge"):
            comp = _composition_of(row, state)
            out.append(chgnet_entry(comp, row[f"energy_per_atom_{state}"] * comp.num_atoms, f"{row['id']}:{state}"))
        ion = row["working_ion"]
        out.append(chgnet_entry(Composition(ion), float(row["ion_energy_per_atom"]), f"{ion}-metal"))
    return out


def _composition_of(row, state: str):
    from pymatgen.core import Structure

    return Structure.from_dict(json.loads(row[f"structure_{state}"])).composition


@lru_cache(maxsize=2)
def _hull_entries(table_key: str) -> tuple:
    from battgen.data.table import load_table

    return tuple(correct(reference_entries() + table_entries(load_table(table_key))))


@dataclass
class HullResult:
    e_hull: float | None  # eV/atom above the hull; None when it could not be built
    competing_phases: int  # compounds (≥ 2 elements) in the chemical system besides the candidate
    reason: str = ""


def e_above_hull(entry, table_dir) -> HullResult:
    """E_hull of a raw CHGNet ``entry`` (from ``chgnet_entry``) against the offline hull."""
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    processed = correct([entry])
    if not processed:
        return HullResult(None, 0, "MP2020 compatibility rejected the entry")
    entry = processed[0]
    elements = {el.symbol for el in entry.composition.elements}
    pool = [e for e in _hull_entries(str(table_dir))
            if {el.symbol for el in e.composition.elements} <= elements]
    competing = {e.composition.reduced_formula for e in pool if len(e.composition.elements) >= 2}
    competing.discard(entry.composition.reduced_formula)
    missing = elements - {e.composition.elements[0].symbol for e in pool if len(e.composition.elements) == 1}
    if missing:
        return HullResult(None, len(competing), f"no elemental reference for {', '.join(sorted(missing))}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diagram = PhaseDiagram(pool + [entry])
        return HullResult(float(diagram.get_e_above_hull(entry, allow_negative=True)), len(competing))
