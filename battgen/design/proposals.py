"""Proposals: our frameworks and pymatgen's AFLOW prototypes with the requested ion, substituted.

A *source* is a discharged structure whose sites carry three roles: the working-ion sites, the
metal sites and the anion sites (phosphate P stays). Every source is first ion-exchanged to the
requested ion (fewer ions where the new ion carries more charge), then its metal sites are
substituted wholly or half-and-half (an ordered decoration) with a metal of ``METAL_POOL`` and its
anion with one of ``ANION_POOL``. Only the specifications are enumerated (tens of thousands); a
budget of them is drawn by the arm's weights and only those become structures.

- ion-exchange arm (the baseline): weight = substitution probability (lambda.json), no request.
- guided arm: the same weight times exp(overlap with the composition prior / ``PRIOR_TEMPERATURE``)
  times exp(−pre-rank score / ``TARGET_TEMPERATURE``): the surrogate needs only the composition, so
  it can aim every specification before a single structure is built.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from battgen.data.frameworks import _spread_sites
from battgen.data.properties import ION_CHARGE, check_ion
from battgen.design.request import GUIDED_ARMS
from battgen.design.substitution import ANION_POOL, METAL_POOL, element_probability

PRIOR_TEMPERATURE = 0.05  # overlap 0.1 higher → e² ≈ 7× more likely to be drawn
# Pre-rank score (fractions of the property ranges) per e-fold of drawing weight in the guided arm:
# 0.02 of the voltage range is ~0.12 V.
TARGET_TEMPERATURE = 0.02
AFLOW_MAX_SITES = 12
AFLOW_ANIONS = ("O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N")


@dataclass(frozen=True)
class Source:
    id: str  # table row id, or aflow:<prototype>
    structure_type: str
    structure: object  # pymatgen Structure, discharged, ion already exchanged
    original_ion: str
    metals: tuple[str, ...]
    anion: str

    @property
    def n_metal_sites(self) -> int:
        return sum(1 for s in self.structure if s.specie.symbol in self.metals)


@dataclass(frozen=True)
class Spec:
    source: int  # index into the sources
    metal: str
    half: bool  # half of the metal sites substituted (ordered decoration), else all
    anion: str

    def label(self, source: Source) -> str:
        metals = "/".join(source.metals)
        m = f"{metals}→{self.metal}" if self.metal not in source.metals or len(source.metals) > 1 else metals
        if self.half:
            m = f"½{metals}→{self.metal}"
        a = source.anion if self.anion == source.anion else f"{source.anion}→{self.anion}"
        return f"{m}, {a}"


def _exchange_ion(structure, old: str, new: str):
    """``structure`` with ``old`` replaced by ``new`` at equal charge, or None if it cannot be."""
    n_old = sum(1 for s in structure if s.specie.symbol == old)
    total = n_old * ION_CHARGE[old]
    if total % ION_CHARGE[new]:
        return None
    n_new = total // ION_CHARGE[new]
    if n_new == 0 or n_new > n_old:
        return None
    out = structure.copy()
    sites = [i for i, s in enumerate(out) if s.specie.symbol == old]
    keep = set(_spread_sites(out, sites, n_new))
    out.remove_sites([i for i in sites if i not in keep])
    if old != new:
        out.replace_species({old: new})
    return out


def hostable_rows(table: pd.DataFrame, ion: str) -> int:
    """Table electrodes whose ion can be exchanged for ``ion`` (same or lower charge)."""
    z = ION_CHARGE[check_ion(ion)]
    return int(sum(ION_CHARGE.get(i, 99) <= z for i in table["working_ion"]))


def _table_sources(table: pd.DataFrame, ion: str) -> list[Source]:
    from battgen.data.table import row_structure
    from battgen.design.descriptors import roles

    z = ION_CHARGE[ion]
    sources: dict[tuple, Source] = {}
    # Rows of the requested ion first, so a host present in both keeps its own relaxed geometry.
    ordered = pd.concat([table[table["working_ion"] == ion], table[table["working_ion"] != ion]])
    for _, row in ordered.iterrows():
        old = row["working_ion"]
        if ION_CHARGE[old] > z:
            continue
        key = (row["structure_type"], row["framework_formula"])
        if key in sources:
            continue
        exchanged = _exchange_ion(row_structure(row, "discharge"), old, ion)
        if exchanged is None:
            continue
        metals, anions, _ = roles(exchanged.composition, ion)
        if len(anions) != 1 or not metals:
            continue
        sources[key] = Source(row["id"], row["structure_type"], exchanged, old, tuple(sorted(metals)),
                              next(iter(anions)))
    return list(sources.values())


def _aflow_sources(ion: str) -> list[Source]:
    """Ternary AFLOW prototypes read as ion (least electronegative), metal, anion (most)."""
    import pymatgen.analysis.prototypes as prototypes
    from pymatgen.core import Element, Structure

    path = os.path.join(os.path.dirname(prototypes.__file__), "aflow_prototypes.json.gz")
    with gzip.open(path, "rt") as fh:
        entries = json.load(fh)
    out = []
    for entry in entries:
        structure = Structure.from_dict(entry["snl"]["structure"]) if "structure" in entry["snl"] else None
        if structure is None:
            from pymatgen.util.provenance import StructureNL

            structure = StructureNL.from_dict(entry["snl"]).structure
        elements = sorted(structure.composition.elements, key=lambda e: e.X)
        if len(elements) != 3 or len(structure) > AFLOW_MAX_SITES or not structure.is_ordered:
            continue
        lowest, middle, highest = (e.symbol for e in elements)
        if highest not in AFLOW_ANIONS or middle in AFLOW_ANIONS or not Element(lowest).is_metal:
            continue
        if lowest in ION_CHARGE:
            exchanged = _exchange_ion(structure, lowest, ion)
        else:
            exchanged = structure.copy()
            exchanged.replace_species({lowest: ion})
        if exchanged is None:
            continue
        tag = entry.get("tags", {})
        name = tag.get("aflow") or tag.get("mineral") or structure.composition.reduced_formula
        out.append(Source(f"aflow:{name}", f"AFLOW {tag.get('mineral') or name}", exchanged, lowest,
                          (middle,), highest))
    return out


@lru_cache(maxsize=16)
def _sources(table_key: str, ion: str) -> tuple[Source, ...]:
    from battgen.data.table import load_table

    return tuple(_table_sources(load_table(table_key), ion) + _aflow_sources(ion))


def framework_sources(table, ion: str) -> list[Source]:
    """Sources for ``ion``; ``table`` is a DataFrame or the folder of a saved table (cached)."""
    check_ion(ion)
    if isinstance(table, pd.DataFrame):
        return _table_sources(table, ion) + _aflow_sources(ion)
    return list(_sources(str(table), ion))


def _spec_composition(source: Source, spec: Spec):
    from pymatgen.core import Composition

    counts = dict(source.structure.composition.element_composition.get_el_amt_dict())
    metal_counts = {m: counts.pop(m) for m in source.metals}
    n_metal = sum(metal_counts.values())
    anion_n = counts.pop(source.anion)
    if spec.half:
        moved = math.floor(n_metal / 2)
        for m, n in metal_counts.items():
            counts[m] = counts.get(m, 0) + n - moved if m == source.metals[0] else counts.get(m, 0) + n
        counts[spec.metal] = counts.get(spec.metal, 0) + moved
    else:
        counts[spec.metal] = counts.get(spec.metal, 0) + n_metal
    counts[spec.anion] = counts.get(spec.anion, 0) + anion_n
    return Composition({k: v for k, v in counts.items() if v > 0})


def enumerate_specs(sources: list[Source]) -> list[Spec]:
    specs = []
    for i, source in enumerate(sources):
        single = len(source.metals) == 1
        for metal in METAL_POOL:
            for anion in ANION_POOL:
                specs.append(Spec(i, metal, False, anion))
                if single and metal != source.metals[0] and source.n_metal_sites >= 2:
                    specs.append(Spec(i, metal, True, anion))
    return specs


def substitution_weight(source: Source, spec: Spec, ion: str) -> float:
    w = element_probability(source.original_ion, ion) * element_probability(source.anion, spec.anion)
    p_metal = np.mean([element_probability(m, spec.metal) for m in source.metals])
    return float(w * (math.sqrt(p_metal) if spec.half else p_metal))


def build_structure(source: Source, spec: Spec):
    """The discharged proposal structure of ``spec``."""
    from pymatgen.core import DummySpecies

    s = source.structure.copy()
    metal_sites = [i for i, site in enumerate(s) if site.specie.symbol in source.metals]
    if spec.half:
        moved = _spread_sites(s, metal_sites, len(metal_sites) // 2)
    else:
        moved = metal_sites
    # Via dummies: the new metal may already be on other sites (a half decoration of Fe by Co in
    # a Co-containing host must not also move those).
    for i in moved:
        s.replace(i, DummySpecies("Xm"), coords=s[i].frac_coords)
    if spec.anion != source.anion:
        s.replace_species({source.anion: DummySpecies("Xx")})
    mapping = {"Xm0+": spec.metal, "Xx0+": spec.anion}
    s.replace_species({sp: mapping[str(sp)] for sp in s.composition.elements if str(sp) in mapping})
    return s


@dataclass
class Proposal:
    key: str
    arm: str
    source_id: str
    structure_type: str
    substitution: str
    structure: object  # pymatgen Structure, discharged
    weight: float
    prior_overlap: float | None = None
    estimates: dict | None = None  # pre-relaxation property estimates
    score: float | None = None  # pre-rank score, lower is better

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula

    def as_dict(self) -> dict:
        return {"key": self.key, "arm": self.arm, "source_id": self.source_id,
                "structure_type": self.structure_type, "substitution": self.substitution,
                "structure": self.structure.as_dict(), "weight": self.weight,
                "prior_overlap": self.prior_overlap, "estimates": self.estimates, "score": self.score,
                "formula": self.formula}

    @classmethod
    def from_dict(cls, d: dict) -> "Proposal":
        from pymatgen.core import Structure

        fields = {k: d[k] for k in ("key", "arm", "source_id", "structure_type", "substitution", "weight",
                                    "prior_overlap", "estimates", "score")}
        return cls(structure=Structure.from_dict(d["structure"]), **fields)


def draw_proposals(sources: list[Source], ion: str, arm: str, budget: int, *, prior: dict | None = None,
                   target_score=None, seed: int = 0) -> list[Proposal]:
    """``budget`` proposals drawn without replacement by the arm's weights (seeded)."""
    from battgen.design.prior import overlap

    specs = enumerate_specs(sources)
    if not specs:
        return []
    weights = np.array([substitution_weight(sources[s.source], s, ion) for s in specs])
    overlaps = None
    if arm in GUIDED_ARMS:
        if prior is None:
            raise ValueError("the guided arm needs a composition prior")
        compositions = [_spec_composition(sources[s.source], s) for s in specs]
        overlaps = np.array([overlap(prior, c) for c in compositions])
        weights = weights * np.exp((overlaps - overlaps.max()) / PRIOR_TEMPERATURE)
        if target_score is not None:
            scores = np.asarray(target_score(compositions), np.float64)
            weights = weights * np.exp(-(scores - scores.min()) / TARGET_TEMPERATURE)
    positive = np.flatnonzero(weights > 0)
    n = min(budget, len(positive))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(positive, size=n, replace=False, p=weights[positive] / weights[positive].sum())
    out = []
    for i in sorted(chosen, key=lambda j: -weights[j]):
        spec, source = specs[i], sources[specs[i].source]
        structure = build_structure(source, spec)
        key = f"{source.id}|{ion}|{'half-' if spec.half else ''}{spec.metal}|{spec.anion}"
        out.append(Proposal(key, arm, source.id, source.structure_type, spec.label(source), structure,
                            float(weights[i]), None if overlaps is None else float(overlaps[i])))
    return out


def charged_structure(structure, ion: str):
    """The charged state of a proposal: every working-ion site emptied (as evaluate_structure does)."""
    out = structure.copy()
    out.remove_species([ion])
    return out

