"""Trivial baselines for the SEI models' property regressors, scored on the same test runs.

The (c)prVAE regressor reads properties off a final lattice through a 50-dimensional latent.
The simplest things that answer the same question, fitted on the same train runs:

* ``train_mean``: the train split's mean property (R² ≈ 0 by construction: the floor);
* ``species_fractions_linear``: least squares on the lattice's seven global species fractions;
* ``row_profile_forest``: a random forest on each row's species fractions (rows × species
  features), i.e. the depth profile a chemist would plot by hand;
* ``barriers_forest``: a random forest on the 15 barriers alone, without the lattice (what the
  conditioned model is given besides the lattice).

The observables are exact functions of the lattice, so a hand-made profile can come close; the
point of the table is to show how much of the regressor's R² comes from the latent and how much
any reader of the lattice would get.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from battgen.eval.sei_metrics import regression_metrics

BASELINE_LABELS = {
    "train_mean": "train mean",
    "species_fractions_linear": "linear fit on species fractions",
    "row_profile_forest": "random forest on per-row species fractions",
    "barriers_forest": "random forest on the 15 barriers (no lattice)",
}


def row_profiles(lattices, num_species: int) -> np.ndarray:
    """(N, rows, columns) species codes -> (N, rows * num_species): each row's species fractions."""
    lattices = np.asarray(lattices)
    if lattices.ndim != 3:
        raise ValueError(f"lattices must be (N, rows, columns), got shape {lattices.shape}")
    if lattices.size and (lattices.min() < 0 or lattices.max() >= num_species):
        raise ValueError(f"species codes must lie in [0, {num_species}), got {lattices.min()}..{lattices.max()}")
    n, rows, cols = lattices.shape
    counts = np.zeros((n, rows, num_species), np.float32)
    for code in range(num_species):
        counts[:, :, code] = (lattices == code).sum(axis=2)
    return (counts / cols).reshape(n, rows * num_species)


def species_fractions(lattices, num_species: int) -> np.ndarray:
    """(N, rows, columns) species codes -> (N, num_species) fractions over the whole lattice."""
    return _fractions_from_profiles(row_profiles(lattices, num_species), num_species)


def _fractions_from_profiles(profiles: np.ndarray, num_species: int) -> np.ndarray:
    return profiles.reshape(len(profiles), -1, num_species).mean(axis=1)


def _least_squares(x_train, y_train, x_test) -> np.ndarray:
    design = np.hstack([x_train, np.ones((len(x_train), 1))])
    coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    return np.hstack([x_test, np.ones((len(x_test), 1))]) @ coef


def _forest(x_train, y_train, x_test, seed: int, n_estimators: int) -> np.ndarray:
    from sklearn.ensemble import RandomForestRegressor

    # One job: the baselines run beside training on a 2-core machine.
    forest = RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=2, max_features=0.3,
                                   random_state=seed, n_jobs=1)
    return forest.fit(x_train, y_train).predict(x_test)


def property_baselines(
    *,
    lattices,
    barriers,
    properties,
    train_idx,
    test_idx,
    names: Sequence[str],
    num_species: int,
    seed: int = 0,
    n_estimators: int = 200,
) -> dict[str, dict]:
    """Every baseline's per-property test metrics (``regression_metrics`` layout), keyed as in
    ``BASELINE_LABELS``. Fitted on ``train_idx``, scored on ``test_idx``."""
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    if len(train_idx) < 2 or len(test_idx) < 2:
        raise ValueError(f"need at least two train and two test runs, got {len(train_idx)} and {len(test_idx)}")
    props = np.asarray(properties, dtype=np.float64)
    y_train, y_test = props[train_idx], props[test_idx]
    lattices = np.asarray(lattices)
    profiles = row_profiles(lattices[np.concatenate([train_idx, test_idx])], num_species)
    prof_train, prof_test = profiles[:len(train_idx)], profiles[len(train_idx):]
    frac_train = _fractions_from_profiles(prof_train, num_species)
    frac_test = _fractions_from_profiles(prof_test, num_species)
    barriers = np.asarray(barriers, dtype=np.float64)

    predictions = {
        "train_mean": np.broadcast_to(y_train.mean(axis=0), y_test.shape),
        "species_fractions_linear": _least_squares(frac_train, y_train, frac_test),
        "row_profile_forest": _forest(prof_train, y_train, prof_test, seed, n_estimators),
        "barriers_forest": _forest(barriers[train_idx], y_train, barriers[test_idx], seed, n_estimators),
    }
    return {key: regression_metrics(y_test, pred, names) for key, pred in predictions.items()}
