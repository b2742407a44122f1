"""The composition prior of the guided arm: requested properties + ion → composition fractions.

A random forest on the electrode table (six range-scaled properties and the ion one-hot in, the
discharged composition's atomic fractions out). Proposals whose composition overlaps the
predicted one are drawn more often; the ion-exchange arm draws without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from battgen.data.composition import element_symbols
from battgen.data.properties import PROPERTY_NAMES, PropertyScaler, ion_one_hot
from battgen.data.table import composition_matrix

TRAIN_SPLITS = ("train", "val")


@dataclass
class CompositionPrior:
    model: object  # sklearn RandomForestRegressor
    scaler: PropertyScaler
    columns: list[str]  # element symbol per output

    @classmethod
    def fit(cls, table: pd.DataFrame, scaler: PropertyScaler, splits=TRAIN_SPLITS, seed: int = 0) -> "CompositionPrior":
        from sklearn.ensemble import RandomForestRegressor

        rows = table[table["split"].isin(splits)] if splits else table
        if rows.empty:
            rows = table
        fractions = composition_matrix(rows).astype(np.float64)
        fractions /= fractions.sum(axis=1, keepdims=True)
        used = np.flatnonzero(fractions.sum(axis=0) > 0)
        model = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
        model.fit(cls._features(scaler, rows[list(PROPERTY_NAMES)].to_numpy(), rows["working_ion"]),
                  fractions[:, used])
        symbols = element_symbols()
        return cls(model, scaler, [symbols[i] for i in used])

    @staticmethod
    def _features(scaler: PropertyScaler, properties: np.ndarray, ions) -> np.ndarray:
        return np.hstack([scaler.transform(properties), ion_one_hot(list(ions))])

    def predict(self, ion: str, properties: dict[str, float]) -> dict[str, float]:
        x = self._features(self.scaler, np.array([[properties[n] for n in PROPERTY_NAMES]]), [ion])
        y = np.clip(self.model.predict(x)[0], 0, None)
        y = y / y.sum() if y.sum() > 0 else y
        return {el: float(v) for el, v in zip(self.columns, y) if v > 1e-4}

    def score(self, table: pd.DataFrame) -> float:
        """R² of the predicted fractions on ``table`` (the held-out split)."""
        from sklearn.metrics import r2_score

        fractions = composition_matrix(table).astype(np.float64)
        fractions /= fractions.sum(axis=1, keepdims=True)
        symbols = element_symbols()
        target = fractions[:, [symbols.index(c) for c in self.columns]]
        pred = self.model.predict(self._features(self.scaler, table[list(PROPERTY_NAMES)].to_numpy(),
                                                 table["working_ion"]))
        return float(r2_score(target, pred, multioutput="variance_weighted"))


def overlap(prior: dict[str, float], composition) -> float:
    """Shared atomic fraction of a composition with the prior's (1 = the predicted composition)."""
    comp = composition.element_composition.fractional_composition
    return float(sum(min(prior.get(el.symbol, 0.0), float(f)) for el, f in comp.items()))


@lru_cache(maxsize=4)
def _cached_prior(table_key: str) -> CompositionPrior:
    table, scaler = _table_for(table_key)
    return CompositionPrior.fit(table, scaler)


def _table_for(table_key: str):
    from battgen.data.table import load_scaler, load_table

    return load_table(table_key), load_scaler(table_key)


def prior_for(table_dir) -> CompositionPrior:
    """The prior fitted on the table in ``table_dir``, once per process."""
    return _cached_prior(str(table_dir))
