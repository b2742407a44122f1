"""What the six properties + ion say about composition without any generator: the baselines to beat.

Every baseline predicts a material's (112,) atom counts from its properties and working ion,
fitted on the table's train split and scored on the same materials the generator is scored on
(:func:`baseline_scores`), with the metric of the generator's evaluation (R² and MAE of the
flattened atom counts, :func:`battgen.eval.afm_metrics.atom_regressor_metrics`):

* ``train_mean``: the train split's mean composition, for every request;
* ``per_ion_mean``: the mean composition of the train materials of the requested ion;
* ``nearest_by_properties``: the composition of the train material of the same ion closest in
  scaled properties (the classical screen);
* ``knn5``: distance-weighted mean of the 5 nearest train materials of the same ion;
* ``random_forest``: a random forest from the scaled properties + ion one-hot to the counts.

On the train split the lookups leave the material itself out (otherwise they return it at
distance 0); the random forest and the means are scored in-sample, like the generator, which
saw these materials: they say how much of the training set a model of this input can reproduce.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from battgen.data.properties import WORKING_IONS, PropertyScaler, ion_one_hot
from battgen.data.table import composition_matrix
from battgen.eval.afm_metrics import atom_regressor_metrics

BASELINES = ("train_mean", "per_ion_mean", "nearest_by_properties", "knn5", "random_forest")
FOREST_TREES = 200


def _features(frame: pd.DataFrame, scaler: PropertyScaler) -> np.ndarray:
    scaled = scaler.transform(frame[list(scaler.names)].to_numpy(np.float64))
    return np.hstack([scaled, ion_one_hot(frame["working_ion"].astype(str).to_numpy())])


def _lookup(train: pd.DataFrame, query: pd.DataFrame, scaler: PropertyScaler, train_comp: np.ndarray,
            k: int, leave_self_out: bool) -> np.ndarray:
    """Distance-weighted mean composition of the k nearest same-ion train materials by scaled properties."""
    train_x = scaler.transform(train[list(scaler.names)].to_numpy(np.float64))
    query_x = scaler.transform(query[list(scaler.names)].to_numpy(np.float64))
    train_ion = train["working_ion"].astype(str).to_numpy()
    train_id = train["id"].astype(str).to_numpy()
    out = np.zeros((len(query), train_comp.shape[1]))
    for row, (x, ion, mid) in enumerate(zip(query_x, query["working_ion"].astype(str), query["id"].astype(str))):
        pool = np.flatnonzero((train_ion == ion) & ~((train_id == mid) & leave_self_out))
        if len(pool) == 0:
            pool = np.flatnonzero(train_id != mid) if leave_self_out else np.arange(len(train))
        distance = np.linalg.norm(train_x[pool] - x, axis=1)
        nearest = np.argsort(distance, kind="stable")[:k]
        if k == 1:
            out[row] = train_comp[pool[nearest[0]]]
        else:
            weights = 1.0 / np.maximum(distance[nearest], 1e-6)
            out[row] = (weights[:, None] * train_comp[pool[nearest]]).sum(axis=0) / weights.sum()
    return out


def baseline_predictions(table: pd.DataFrame, scaler: PropertyScaler, query: pd.DataFrame,
                         *, seed: int = 0) -> dict[str, np.ndarray]:
    """baseline name -> (len(query), 112) predicted counts, fitted on the table's train split."""
    from sklearn.ensemble import RandomForestRegressor

    train = table[table["split"] == "train"].reset_index(drop=True)
    if train.empty:
        raise ValueError("the table has no train materials to fit the baselines on")
    train_comp = composition_matrix(train).astype(np.float64)
    query_ions = query["working_ion"].astype(str).to_numpy()
    train_ions = train["working_ion"].astype(str).to_numpy()
    overall = train_comp.mean(axis=0)
    per_ion = {ion: train_comp[train_ions == ion].mean(axis=0) if (train_ions == ion).any() else overall
               for ion in WORKING_IONS}
    in_train = bool(query["id"].isin(train["id"]).any())
    forest = RandomForestRegressor(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1)
    forest.fit(_features(train, scaler), train_comp)
    return {
        "train_mean": np.tile(overall, (len(query), 1)),
        "per_ion_mean": np.stack([per_ion[ion] for ion in query_ions]),
        "nearest_by_properties": _lookup(train, query, scaler, train_comp, 1, in_train),
        "knn5": _lookup(train, query, scaler, train_comp, 5, in_train),
        "random_forest": forest.predict(_features(query, scaler)),
    }


def baseline_scores(table: pd.DataFrame, scaler: PropertyScaler, query: pd.DataFrame, *, seed: int = 0) -> dict:
    """baseline name -> {"r2", "mae", "mse", "n_views"} on ``query``'s materials."""
    truth = composition_matrix(query).astype(np.float64)
    ions = query["working_ion"].astype(str).to_numpy()
    return {name: atom_regressor_metrics(truth, pred, ions)["overall"]
            for name, pred in baseline_predictions(table, scaler, query, seed=seed).items()}
