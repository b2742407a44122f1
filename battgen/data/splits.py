"""Grouped train/val/test splits and per-ion sample weights, shared by every model.

A composition must not sit in two splits: polymorphs of one formula (or the same formula from
MP and from the builder) would otherwise let a model score on materials it has seen.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def grouped_split(groups, ions, fractions=DEFAULT_FRACTIONS, seed: int = 0,
                  strict: bool = True, keep: Mapping[str, str] | None = None) -> np.ndarray:
    """Assign each row to train/val/test so that no group spans two splits.

    Groups are dealt per working ion (a group goes with the ion of its first row), largest
    first, each to the split furthest below its target share of that ion's rows. Every ion
    with at least three groups therefore appears in every split; an ion with fewer groups
    cannot: a ``ValueError`` says so, or with ``strict=False`` (small test builds) its rows all
    go to train. Returns an array of split names.

    ``keep`` (group -> split, e.g. the splits of the table being grown) fixes those groups where
    they were and deals only the new ones around them: growing a table must not move a test
    material into training, or every model trained on the old splits would be scored on data
    it has seen.
    """
    groups = np.asarray(groups, dtype=object)
    ions = np.asarray(ions, dtype=object)
    if groups.shape != ions.shape or groups.ndim != 1:
        raise ValueError("groups and ions must be 1-D and of equal length")
    fractions = np.asarray(fractions, np.float64)
    if fractions.shape != (3,) or (fractions <= 0).any() or not np.isclose(fractions.sum(), 1):
        raise ValueError("fractions must be three positive numbers summing to 1")
    keep = dict(keep or {})
    unknown = sorted({v for v in keep.values() if v not in SPLITS})
    if unknown:
        raise ValueError(f"keep names unknown splits {unknown}; use {', '.join(SPLITS)}")
    rng = np.random.default_rng(seed)
    out = np.empty(len(groups), dtype=object)
    group_ion: dict = {}
    for g, ion in zip(groups, ions):
        group_ion.setdefault(g, ion)
    for ion in sorted(set(group_ion.values())):
        members = [g for g, i in group_ion.items() if i == ion]
        if len(members) < 3:
            if not strict:
                for g in members:
                    out[groups == g] = keep.get(g, SPLITS[0])
                continue
            raise ValueError(f"{ion} has {len(members)} distinct compositions; a split with "
                             "every ion in train, val and test needs at least 3")
        sizes = {g: int((groups == g).sum()) for g in members}
        kept = [g for g in members if g in keep]
        new = [g for g in members if g not in keep]
        order = list(rng.permutation(new)) if new else []
        order.sort(key=lambda g: -sizes[g])  # stable: random among equal sizes
        total = sum(sizes.values())
        filled = np.zeros(3)
        assign = {g: SPLITS.index(keep[g]) for g in kept}
        for g in kept:
            filled[assign[g]] += sizes[g]
        # Seed an empty val and test with one group each so small ions still reach every split.
        seeded = [k for k in (1, 2) if filled[k] == 0][:len(order)]
        for split_index, g in zip(seeded, order[len(order) - len(seeded):]):
            assign[g] = split_index
            filled[split_index] += sizes[g]
        for g in order[:len(order) - len(seeded)]:
            deficit = fractions * total - filled
            k = int(np.argmax(deficit))
            assign[g] = k
            filled[k] += sizes[g]
        for g, k in assign.items():
            out[groups == g] = SPLITS[k]
    return out.astype(str)


def inverse_frequency_weights(ions) -> np.ndarray:
    """Per-row weights ∝ 1 / (rows of that ion), scaled to mean 1, so each ion weighs the same."""
    ions = np.asarray(ions, dtype=object)
    if ions.ndim != 1 or len(ions) == 0:
        raise ValueError("need a non-empty 1-D array of working ions")
    names, inverse, counts = np.unique(ions.astype(str), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return (weights * len(ions) / weights.sum()).astype(np.float32)
