"""Data-mined ionic substitution probabilities (Hautier et al., pymatgen's ``lambda.json``), per element.

pymatgen tabulates them between oxidation-state species (Fe2+ → Mn2+); proposals substitute
elements, so an element pair gets the largest probability over its species pairs. This is the
request-independent chemistry both arms share; the ion-exchange arm ranks by it alone.
"""

from __future__ import annotations

from functools import lru_cache

# Metals proposed on the framework's metal sites: our table's redox metals and the other
# transition and p-block metals with common variable oxidation states.
METAL_POOL: tuple[str, ...] = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Nb", "Mo", "W",
                               "Zr", "Sn", "Sb", "Ru", "Ta", "Bi", "Ge", "Sc", "Ga", "In")
ANION_POOL: tuple[str, ...] = ("O", "S", "Se", "F")


@lru_cache(maxsize=1)
def _species_by_element() -> dict[str, list]:
    import warnings

    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = SubstitutionProbability()
    by_element: dict[str, list] = {}
    for sp in table.species:
        by_element.setdefault(sp.symbol, []).append(sp)
    return {"__table__": table, **by_element}


@lru_cache(maxsize=None)
def element_probability(original: str, replacement: str) -> float:
    """P(``replacement`` takes the site of ``original``), max over their oxidation states.

    No change is scored on the same scale (an element's probability of keeping its own site), so
    the unchanged framework does not crowd out every substitution.
    """
    data = _species_by_element()
    table = data["__table__"]
    best = 0.0
    for a in data.get(original, []):
        for b in data.get(replacement, []):
            # Only same-sign states swap (an anion never takes a cation site).
            if (a.oxi_state > 0) == (b.oxi_state > 0):
                best = max(best, float(table.cond_prob(a, b)))
    if best == 0.0 and original == replacement:
        return 1.0  # an element lambda.json does not know still keeps its own site
    return best
