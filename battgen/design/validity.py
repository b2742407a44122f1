"""Validity filters of the funnel: interatomic distance and charge neutrality of both states.

Charge neutrality asks two independent judges and needs both: SMACT's ``smact_validity``
(charge balance + electronegativity order; alone it accepts LiCoO3) and pymatgen's oxidation-state
guess (ICSD-observed states only). Each is applied to the discharged and the charged formula.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MIN_DISTANCE = 0.5  # Å; closer atoms are a broken structure, not chemistry


def min_distance(structure) -> float:
    if len(structure) < 2:
        return float(min(structure.lattice.abc))
    d = structure.distance_matrix + np.eye(len(structure)) * 1e9
    # A single site's own periodic images (the shortest lattice vector) also count.
    return float(min(d.min(), min(structure.lattice.abc)))


@lru_cache(maxsize=None)
def smact_neutral(formula: str) -> bool:
    import warnings

    from smact.screening import smact_validity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(smact_validity(formula))
        except Exception:  # SMACT has no data for some elements: not a vote for neutrality
            return False


@lru_cache(maxsize=None)
def pymatgen_neutral(formula: str) -> bool:
    from pymatgen.core import Composition

    try:
        return bool(Composition(formula).oxi_state_guesses(max_sites=-20))
    except ValueError:
        return False


def charge_neutral(formula: str) -> bool:
    return smact_neutral(formula) and pymatgen_neutral(formula)


def neutral_pair(discharged_formula: str, charged_formula: str) -> tuple[bool, str]:
    """(ok, reason) for the discharged and charged reduced formulas."""
    for state, formula in (("discharged", discharged_formula), ("charged", charged_formula)):
        if not smact_neutral(formula):
            return False, f"{state} {formula} fails SMACT charge neutrality"
        if not pymatgen_neutral(formula):
            return False, f"{state} {formula} has no oxidation-state assignment (pymatgen)"
    return True, ""
