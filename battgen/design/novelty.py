"""Uniqueness within a batch and novelty against the electrode table, by structure.

Both use pymatgen's ``StructureMatcher`` (default tolerances) and compare only structures of the
same reduced formula. "Novel" means "not in our table", which holds known compounds too
(LiMnPO4 is novel here): the UI says so. A request may name further tables (a fetched Materials
Project one), and then "novel" means "in none of them".
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd


def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()


def unique_indices(structures) -> list[int]:
    """Indices of the first structure of every group of equivalent ``structures``."""
    by_formula: dict[str, list[int]] = {}
    for i, s in enumerate(structures):
        by_formula.setdefault(s.composition.reduced_formula, []).append(i)
    matcher = _matcher()
    keep = []
    for indices in by_formula.values():
        representatives: list[int] = []
        for i in indices:
            if not any(matcher.fit(structures[i], structures[j]) for j in representatives):
                representatives.append(i)
        keep.extend(representatives)
    return sorted(keep)


@lru_cache(maxsize=4)
def _table_by_formula(table_key: str) -> dict[str, list[str]]:
    from battgen.data.table import load_table

    return table_structures_by_formula(load_table(table_key))


def table_structures_by_formula(table: pd.DataFrame) -> dict[str, list[str]]:
    """Discharged and charged structure JSON of the table by reduced formula."""
    out: dict[str, list[str]] = {}
    for state in ("discharge", "charge"):
        for formula, text in zip(table[f"formula_{state}"], table[f"structure_{state}"]):
            out.setdefault(formula, []).append(text)
    return out


class NoveltyChecker:
    """Is a structure absent from the table? Table structures are parsed only when a formula matches."""

    def __init__(self, by_formula: dict[str, list[str]]):
        self._by_formula = by_formula
        self._parsed: dict[str, list] = {}
        self._matcher = _matcher()

    @classmethod
    def for_table(cls, table) -> "NoveltyChecker":
        return cls.for_tables(table)

    @classmethod
    def for_tables(cls, *tables) -> "NoveltyChecker":
        """Novel against every table given (frames or table directories)."""
        merged: dict[str, list[str]] = {}
        for table in tables:
            known = table_structures_by_formula(table) if isinstance(table, pd.DataFrame) else _table_by_formula(str(table))
            for formula, texts in known.items():  # copied: the per-directory dicts are cached
                merged.setdefault(formula, []).extend(texts)
        return cls(merged)

    def _known(self, formula: str) -> list:
        if formula not in self._parsed:
            import json

            from pymatgen.core import Structure

            self._parsed[formula] = [Structure.from_dict(json.loads(t)) for t in self._by_formula.get(formula, [])]
        return self._parsed[formula]

    def match(self, structure) -> bool:
        return any(self._matcher.fit(structure, known) for known in self._known(structure.composition.reduced_formula))

    def is_novel(self, structure) -> bool:
        return not self.match(structure)
