"""Test-split metrics of the SEI (pr)VAE models, as plain dicts ready for ``metrics.json``.

* property regression: R² and MAE per property, in physical units;
* reconstruction: site accuracy overall, per species (recall over the sites that truly hold
  that species) and balanced (mean of per-species recall), because final lattices are mostly
  solvent, Li2CO3 and attached organic, so overall accuracy alone rewards ignoring rare species;
* latent organisation: R² of a linear fit of each property on (PC1, PC2) of the latent means,
  the paper's "does the latent space order the properties" question, for every model kind;
* the Pearson correlation matrix of dataset observables;
* the property metrics on the test runs that passivated, apart from those stopped at the event
  bound (truncated SEIs).

Only numpy: the functions take arrays, so they serve the training script and the app alike.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {a.shape}")
    return a


def r2_score(y_true, y_pred) -> float | None:
    """Coefficient of determination 1 - SS_res / SS_tot; None when y_true is constant (undefined)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if y_true.size < 2 or ss_tot == 0.0:
        return None
    return 1.0 - float(((y_true - y_pred) ** 2).sum()) / ss_tot


def regression_metrics(y_true, y_pred, names: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per property: ``{"r2", "mae", "rmse"}`` (MAE/RMSE in the units of the inputs)."""
    y_true, y_pred = _as_2d(y_true, "y_true"), _as_2d(y_pred, "y_pred")
    if y_true.shape != y_pred.shape or y_true.shape[1] != len(names):
        raise ValueError(f"y_true {y_true.shape}, y_pred {y_pred.shape} and {len(names)} names disagree")
    out = {}
    for j, name in enumerate(names):
        err = y_pred[:, j] - y_true[:, j]
        out[str(name)] = {
            "r2": r2_score(y_true[:, j], y_pred[:, j]),
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
        }
    return out


def reconstruction_metrics(true_lattices, pred_lattices, species_names: Sequence[str]) -> dict:
    """Site-level agreement between true and reconstructed species-code lattices.

    Returns ``accuracy`` (all sites), ``balanced_accuracy`` (mean recall over species present
    in the truth), ``per_species`` {name: recall} for present species only (a species with no
    true sites has no defined recall), ``site_fraction`` {name: share of true sites} for all
    species, and ``confusion`` (rows true, columns predicted, site counts).
    """
    t = np.asarray(true_lattices).astype(np.int64).ravel()
    p = np.asarray(pred_lattices).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {np.shape(true_lattices)} vs {np.shape(pred_lattices)}")
    k = len(species_names)
    if t.size == 0:
        raise ValueError("no lattice sites to compare")
    if t.min() < 0 or t.max() >= k or p.min() < 0 or p.max() >= k:
        raise ValueError(f"species codes must lie in [0, {k - 1}]")
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    support = confusion.sum(1)
    per_species = {
        str(species_names[c]): float(confusion[c, c] / support[c]) for c in range(k) if support[c] > 0
    }
    return {
        "accuracy": float(np.trace(confusion) / t.size),
        "balanced_accuracy": float(np.mean(list(per_species.values()))),
        "per_species": per_species,
        "site_fraction": {str(species_names[c]): float(support[c] / t.size) for c in range(k)},
        "confusion": confusion.tolist(),
    }


def linear_fit_r2(features, target) -> float | None:
    """In-sample R² of an ordinary least-squares fit (with intercept) of target on features."""
    x = _as_2d(features, "features")
    y = np.asarray(target, dtype=np.float64).ravel()
    if x.shape[0] != y.size:
        raise ValueError(f"{x.shape[0]} feature rows but {y.size} targets")
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return r2_score(y, design @ coef)


def latent_pc_r2(pcs, properties, names: Sequence[str], n_components: int = 2) -> dict[str, float | None]:
    """How well the first ``n_components`` principal components order each property.

    R² of a linear fit of the property on (PC1, ..., PCn): 1 means the property varies
    linearly across the PC1-PC2 map the app draws, 0 means the map says nothing about it.
    """
    pcs = _as_2d(pcs, "pcs")
    properties = _as_2d(properties, "properties")
    if pcs.shape[1] < n_components:
        raise ValueError(f"need at least {n_components} principal components, got {pcs.shape[1]}")
    if properties.shape[1] != len(names):
        raise ValueError(f"{properties.shape[1]} property columns but {len(names)} names")
    return {str(n): linear_fit_r2(pcs[:, :n_components], properties[:, j]) for j, n in enumerate(names)}


def sei_test_metrics(
    *,
    species_names: Sequence[str],
    property_names: Sequence[str],
    true_lattices,
    pred_lattices,
    properties_true,
    pcs,
    properties_pred=None,
) -> dict:
    """All test-split metrics of one SEI model; ``properties_pred`` is None for the plain VAE."""
    out = {
        "n_test": int(np.asarray(true_lattices).shape[0]),
        "reconstruction": reconstruction_metrics(true_lattices, pred_lattices, species_names),
        "latent_pc12_r2": latent_pc_r2(pcs, properties_true, property_names),
    }
    if properties_pred is not None:
        out["properties"] = regression_metrics(properties_true, properties_pred, property_names)
    return out


def property_correlation(observables, names: Sequence[str], subset: Sequence[str] | None = None) -> dict:
    """Pearson correlation matrix of dataset observables (columns), optionally of a named subset.

    Returns ``{"names": [...], "matrix": [[...]]}``; a constant column has undefined
    correlation, stored as None.
    """
    obs = _as_2d(observables, "observables")
    names = [str(n) for n in names]
    if obs.shape[1] != len(names):
        raise ValueError(f"{obs.shape[1]} observable columns but {len(names)} names")
    if subset is not None:
        missing = [s for s in subset if s not in names]
        if missing:
            raise ValueError(f"unknown observables {missing}; available: {names}")
        cols = [names.index(s) for s in subset]
        obs, names = obs[:, cols], [names[c] for c in cols]
    if obs.shape[0] < 2:
        raise ValueError("need at least two samples for a correlation")
    centred = obs - obs.mean(0)
    norm = np.sqrt((centred**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (centred.T @ centred) / np.outer(norm, norm)
    corr = np.clip(corr, -1.0, 1.0)
    matrix = [[None if not np.isfinite(v) else float(v) for v in row] for row in corr]
    return {"names": names, "matrix": matrix}


# dataset.STATUS_CODES["complete"], spelled here to keep this module free of the simulator
_STATUS_COMPLETE = 0


def passivated_runs(data) -> np.ndarray:
    """(N,) bool: the runs of an SEI dataset that ended because no event was possible. Datasets
    without a status column count every run as passivated."""
    if getattr(data, "status", None) is None:
        return np.ones(len(data), bool)
    return np.asarray(data.status) == _STATUS_COMPLETE


def passivated_property_metrics(properties_true, properties_pred, mask, names: Sequence[str]) -> dict | None:
    """Property metrics on the passivated test runs only (``mask``); None without a regressor."""
    if properties_pred is None:
        return None
    mask = np.asarray(mask, bool)
    result: dict = {"n": int(mask.sum()), "n_truncated": int((~mask).sum())}
    if mask.sum() >= 2:
        result["properties"] = regression_metrics(np.asarray(properties_true)[mask],
                                                  np.asarray(properties_pred)[mask], names)
    return result
