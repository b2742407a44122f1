"""The 112-long composition vector: atom counts indexed by atomic number (H = index 0, Cn = 111)."""

from __future__ import annotations

import functools

import numpy as np

N_ELEMENTS = 112


def composition_vector(composition) -> np.ndarray:
    """Atom counts by atomic number of a pymatgen Structure, Composition or formula string."""
    from pymatgen.core import Composition, Structure

    if isinstance(composition, Structure):
        composition = composition.composition
    composition = Composition(composition)
    out = np.zeros(N_ELEMENTS, np.float32)
    for element, amount in composition.element_composition.items():
        if element.Z > N_ELEMENTS:
            raise ValueError(f"{element} (Z={element.Z}) is beyond the 112 elements the models know")
        out[element.Z - 1] += amount
    return out


@functools.lru_cache(maxsize=1)
def _element_symbols() -> tuple[str, ...]:
    from pymatgen.core import Element

    return tuple(Element.from_Z(z).symbol for z in range(1, N_ELEMENTS + 1))


def element_symbols() -> list[str]:
    return list(_element_symbols())


def top_elements(vector, k: int = 8, threshold: float = 0.05) -> list[tuple[str, float]]:
    """Largest entries of a (predicted) composition vector as (symbol, count), largest first."""
    vector = np.asarray(vector, np.float64).reshape(-1)
    if vector.shape != (N_ELEMENTS,):
        raise ValueError(f"a composition vector has {N_ELEMENTS} entries, got {vector.shape[0]}")
    symbols = element_symbols()
    order = np.argsort(-vector)[:k]
    return [(symbols[i], float(vector[i])) for i in order if vector[i] > threshold]


def formula_guess(vector, threshold: float = 0.5) -> str:
    """Reduced formula from counts rounded to integers; elements below ``threshold`` are dropped."""
    from pymatgen.core import Composition

    counts = {sym: round(n) for sym, n in top_elements(vector, k=N_ELEMENTS, threshold=threshold)}
    counts = {sym: n for sym, n in counts.items() if n > 0}
    if not counts:
        return ""
    import warnings

    with warnings.catch_warnings():
        # Noble gases and superheavy elements have no electronegativity to order the formula by.
        warnings.simplefilter("ignore", UserWarning)
        return Composition(counts).reduced_formula


def working_ions_in(structure) -> list[str]:
    """The working ions (in the order of WORKING_IONS) that a structure or composition contains."""
    from battgen.data.properties import WORKING_IONS

    composition = structure.composition if hasattr(structure, "composition") else structure
    present = {e.symbol for e in composition.elements}
    return [ion for ion in WORKING_IONS if ion in present]
