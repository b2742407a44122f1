"""Cheap targeting before relaxing: a voltage surrogate plus the exact gravimetric capacity.

The voltage comes from a random forest on composition descriptors (``descriptors.py``) trained
on the electrode table's train+val rows; gravimetric capacity needs no model (it follows from
the composition); gravimetric energy is their product. Volumetric values and the volume change
need a relaxed cell, so they are not pre-ranked on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from battgen.design.descriptors import descriptor, gravimetric_capacity
from battgen.design.prior import TRAIN_SPLITS

# The properties the pre-rank can estimate before any relaxation.
PRERANKED = ("average_voltage", "capacity_grav", "energy_grav")


def _row_descriptor(row) -> np.ndarray:
    from battgen.data.composition import element_symbols
    from pymatgen.core import Composition

    symbols = element_symbols()
    counts = np.asarray(row["composition"], np.float64)
    comp = Composition({symbols[i]: float(counts[i]) for i in np.flatnonzero(counts)})
    return descriptor(comp, row["working_ion"])


@dataclass
class VoltageSurrogate:
    model: object  # sklearn RandomForestRegressor

    @classmethod
    def fit(cls, table: pd.DataFrame, splits=TRAIN_SPLITS, seed: int = 0) -> "VoltageSurrogate":
        from sklearn.ensemble import RandomForestRegressor

        rows = table[table["split"].isin(splits)] if splits else table
        if rows.empty:
            rows = table
        x = np.stack([_row_descriptor(r) for _, r in rows.iterrows()])
        model = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)
        model.fit(x, rows["average_voltage"].to_numpy(np.float64))
        return cls(model)

    def predict(self, compositions, ions) -> np.ndarray:
        return self.predict_with_spread(compositions, ions)[0]

    def predict_with_spread(self, compositions, ions) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over the forest's trees: the spread flags extrapolation."""
        if len(compositions) == 0:
            return np.zeros(0), np.zeros(0)
        x = np.stack([descriptor(c, i) for c, i in zip(compositions, ions)])
        per_tree = np.stack([tree.predict(x) for tree in self.model.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)

    def score(self, table: pd.DataFrame) -> dict:
        """R² and median absolute error (V) on ``table`` (the held-out split)."""
        from sklearn.metrics import r2_score

        x = np.stack([_row_descriptor(r) for _, r in table.iterrows()])
        y = table["average_voltage"].to_numpy(np.float64)
        pred = self.model.predict(x)
        return {"r2": float(r2_score(y, pred)), "median_abs_error_V": float(np.median(np.abs(pred - y))),
                "n": int(len(y))}


def estimate(surrogate: VoltageSurrogate, compositions, ion: str) -> list[dict[str, float]]:
    """Pre-relaxation estimates of the ``PRERANKED`` properties for discharged compositions."""
    voltages, spreads = surrogate.predict_with_spread(compositions, [ion] * len(compositions))
    out = []
    for comp, v, spread in zip(compositions, voltages, spreads):
        cap = gravimetric_capacity(comp, ion)
        out.append({"average_voltage": float(v), "capacity_grav": float(cap), "energy_grav": float(v * cap),
                    "average_voltage_spread": float(spread)})
    return out


@lru_cache(maxsize=4)
def _cached_surrogate(table_key: str) -> VoltageSurrogate:
    from battgen.data.table import load_table

    return VoltageSurrogate.fit(load_table(table_key))


def surrogate_for(table_dir) -> VoltageSurrogate:
    """The surrogate fitted on the table in ``table_dir``, once per process."""
    return _cached_surrogate(str(table_dir))
