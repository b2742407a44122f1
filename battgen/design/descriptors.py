"""Fixed-length descriptors of a discharged electrode composition, for the voltage surrogate.

Chemistry rather than element identity: the mean oxidation state the metals are reduced to, their
electronegativity and position in the table, the anion mix. Substitution proposes metals our table
never held (Zr, Sn, …); a one-column-per-element vector would give the surrogate nothing to say
about them, these descriptors do.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from battgen.data.frameworks import ANION_CHARGE, SPECTATOR_CHARGE
from battgen.data.properties import ION_CHARGE, WORKING_IONS

ANIONS = tuple(ANION_CHARGE)
F_MAH_PER_MOL = 26801.4811  # Faraday constant in mAh/mol


@lru_cache(maxsize=None)
def _element_facts(symbol: str) -> tuple[float, float, float, float]:
    from pymatgen.core import Element

    el = Element(symbol)
    x = el.X if np.isfinite(el.X) else 1.5
    return float(x), float(el.group), float(el.row), float(el.Z)


def roles(composition, ion: str) -> tuple[dict, dict, dict]:
    """(metals, anions, spectators) as {symbol: amount} of a composition holding ``ion``."""
    amounts = {el.symbol: float(n) for el, n in composition.element_composition.items()}
    amounts.pop(ion, None)
    anions = {k: v for k, v in amounts.items() if k in ANION_CHARGE}
    spectators = {k: v for k, v in amounts.items() if k in SPECTATOR_CHARGE}
    metals = {k: v for k, v in amounts.items() if k not in anions and k not in spectators}
    return metals, anions, spectators


def metal_oxidation(composition, ion: str, with_ions: bool = True) -> float:
    """Mean formal oxidation state of the metals with nominal anion and spectator charges."""
    metals, anions, spectators = roles(composition, ion)
    n_metal = sum(metals.values())
    if n_metal == 0:
        return float("nan")
    charge = sum(-ANION_CHARGE[a] * n for a, n in anions.items())
    charge -= sum(SPECTATOR_CHARGE[s] * n for s, n in spectators.items())
    if with_ions:
        charge -= ION_CHARGE[ion] * float(composition.element_composition[ion])
    return charge / n_metal


def gravimetric_capacity(composition, ion: str) -> float:
    """mAh/g of extracting every ``ion`` from the discharged ``composition`` (pymatgen's definition).

    InsertionElectrode normalises by the mass of the fully discharged formula, so this is exact
    before any relaxation: capacity depends on composition only.
    """
    n_ion = float(composition.element_composition[ion])
    return n_ion * ION_CHARGE[ion] * F_MAH_PER_MOL / float(composition.weight)


def descriptor(composition, ion: str) -> np.ndarray:
    from pymatgen.core import Composition

    composition = Composition(composition)
    metals, anions, spectators = roles(composition, ion)
    total = float(composition.num_atoms)
    n_metal = sum(metals.values()) or 1.0
    n_anion = sum(anions.values()) or 1.0
    n_ion = float(composition.element_composition[ion])
    facts = np.array([_element_facts(m) for m in metals]) if metals else np.zeros((1, 4))
    weights = np.array(list(metals.values())) if metals else np.ones(1)
    mean = (facts * weights[:, None]).sum(0) / weights.sum()
    spread = facts.max(0) - facts.min(0)
    one_hot = np.zeros(len(WORKING_IONS))
    one_hot[WORKING_IONS.index(ion)] = 1.0
    ox_discharged = metal_oxidation(composition, ion, True)
    ox_charged = metal_oxidation(composition, ion, False)
    return np.concatenate([
        one_hot,
        [n_ion / total, n_ion / n_metal, n_metal / total, sum(spectators.values()) / total],
        [anions.get(a, 0.0) / n_anion for a in ANIONS],
        mean, spread,
        [ox_discharged, ox_charged, ox_charged - ox_discharged],
    ]).astype(np.float64)
