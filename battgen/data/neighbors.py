"""Nearest materials of the table: by properties (the classical screening baseline) and by composition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from battgen.data.properties import PROPERTY_NAMES, PropertyScaler, check_ion
from battgen.data.table import composition_matrix


def nearest_by_properties(df: pd.DataFrame, request: dict, scaler: PropertyScaler, *,
                          ion: str | None = None, k: int = 10,
                          names=PROPERTY_NAMES) -> pd.DataFrame:
    """Rows closest to ``request`` (property → value, physical units) in scaled property space.

    Only the properties named in ``request`` count. Adds ``property_distance`` (Euclidean in
    [0, 1]-scaled units, so 0.1 means "10 % of the dataset's range away").
    """
    used = [n for n in names if n in request]
    if not used:
        raise ValueError(f"request names none of the properties {list(names)}")
    sub = df if ion is None else df[df["working_ion"] == check_ion(ion)]
    if sub.empty:
        return sub.assign(property_distance=pd.Series(dtype=float))
    columns = [scaler.names.index(n) for n in used]
    low, high = np.array(scaler.low)[columns], np.array(scaler.high)[columns]
    target = (np.array([request[n] for n in used], np.float64) - low) / (high - low)
    values = (sub[used].to_numpy(np.float64) - low) / (high - low)
    distance = np.linalg.norm(values - target, axis=1)
    order = np.argsort(distance, kind="stable")[:k]
    return sub.iloc[order].assign(property_distance=distance[order])


def nearest_by_composition(df: pd.DataFrame, vector, *, k: int = 10,
                           ion: str | None = None) -> pd.DataFrame:
    """Rows whose composition is closest to ``vector`` (112 counts).

    Compositions are compared as atomic fractions (cells of different size describe the same
    material), by L1 distance; ``composition_distance`` is half of it, the fraction of atoms
    that would have to change element: 0 = same composition, 1 = nothing in common.
    """
    vector = np.asarray(vector, np.float64).reshape(-1)
    sub = df if ion is None else df[df["working_ion"] == check_ion(ion)]
    if sub.empty:
        return sub.assign(composition_distance=pd.Series(dtype=float))
    matrix = composition_matrix(sub).astype(np.float64)
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1e-12)
    target = vector / max(vector.sum(), 1e-12)
    distance = 0.5 * np.abs(fractions - target).sum(axis=1)
    order = np.argsort(distance, kind="stable")[:k]
    return sub.iloc[order].assign(composition_distance=distance[order])
