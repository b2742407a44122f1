"""Quality table of the SEI generative models, read from their checkpoints (torch-free)."""

from __future__ import annotations

import os
from typing import Mapping

import pandas as pd

from battgen.artifacts import read_metrics
from battgen.sei.observables import PROPERTY_NAMES

PUBLISHED_NOTE = "Published prVAE: R² > 0.98 for volume fraction, thickness and density; 0.833 for porosity."


def sei_quality_table(checkpoints: Mapping[str, str | os.PathLike[str]]) -> pd.DataFrame | None:
    """One row per model (``label -> checkpoint folder``): reconstruction accuracy, regressor R² and
    the R² of a linear fit on the first two latent principal components, per property.

    Folders without metrics are left out; None when none has any.
    """
    rows = []
    for label, directory in checkpoints.items():
        metrics = read_metrics(directory) if os.path.isdir(directory) else None
        if not metrics:
            continue
        test = metrics.get("test", {})
        passivated = (metrics.get("test_passivated") or {}).get("properties", {})
        row = {"model": label,
               "trained on": {"passivated": "passivated runs"}.get(metrics.get("runs"), "all runs"),
               "site accuracy": test.get("reconstruction", {}).get("accuracy"),
               "balanced accuracy": test.get("reconstruction", {}).get("balanced_accuracy")}
        for name in PROPERTY_NAMES:
            row[f"R² {name}"] = test.get("properties", {}).get(name, {}).get("r2")
            # the same model on the test runs that passivated (not stopped at the event bound)
            row[f"R² {name}, passivated runs"] = passivated.get(name, {}).get("r2")
            row[f"PC1-2 R² {name}"] = test.get("latent_pc12_r2", {}).get(name)
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def score_passivated_runs(checkpoint: str | os.PathLike[str], dataset) -> dict | None:
    """The checkpoint's test metrics on the passivated test runs alone, from its saved test
    latents (``latents.npz``: indices, true and predicted properties) and the dataset's run status;
    merged into its ``metrics.json`` as ``test_passivated``. None for a model without a regressor."""
    import numpy as np

    from battgen.artifacts import write_metrics
    from battgen.eval.sei_metrics import passivated_property_metrics, passivated_runs

    directory = os.fspath(checkpoint)
    with np.load(os.path.join(directory, "latents.npz"), allow_pickle=False) as z:
        if "properties_pred" not in z.files:
            return None
        names = [str(n) for n in z["property_names"]]
        result = passivated_property_metrics(z["properties_true"], z["properties_pred"],
                                             passivated_runs(dataset)[z["indices"]], names)
    metrics = read_metrics(directory) or {}
    metrics["test_passivated"] = result
    write_metrics(directory, metrics)
    return result


def regressor_r2(metrics: Mapping | None, names) -> list[float | None]:
    """Test R² of the property regressor per name (None where absent), for the parity plots' titles."""
    properties = (metrics or {}).get("test", {}).get("properties", {})
    return [properties.get(n, {}).get("r2") for n in names]


def sei_baseline_table(checkpoints: Mapping[str, str | os.PathLike[str]]) -> pd.DataFrame | None:
    """Test R² per property of each model's regressor beside the trivial baselines scored on
    the same test runs (``metrics.json`` → ``baselines``, written by training).

    Models without a regressor are left out. The baselines come from the first model that has
    them; a model trained on other runs (all vs passivated) is marked so in its row. None when
    no model has baselines.
    """
    from battgen.eval.sei_baselines import BASELINE_LABELS

    rows, baselines, baseline_runs = [], None, None
    for label, directory in checkpoints.items():
        metrics = read_metrics(directory) if os.path.isdir(directory) else None
        properties = (metrics or {}).get("test", {}).get("properties")
        if not properties:
            continue
        if baselines is None and metrics.get("baselines"):
            baselines, baseline_runs = metrics["baselines"], metrics.get("runs")
        rows.append({"model": f"{label} regressor", "runs": metrics.get("runs"),
                     **{f"R² {n}": properties.get(n, {}).get("r2") for n in PROPERTY_NAMES}})
    if baselines is None:
        return None
    for key, label in BASELINE_LABELS.items():
        if key in baselines:
            rows.append({"model": f"baseline: {label}", "runs": baseline_runs,
                         **{f"R² {n}": baselines[key].get(n, {}).get("r2") for n in PROPERTY_NAMES}})
    table = pd.DataFrame(rows)
    table["runs"] = table["runs"].map({"passivated": "passivated runs"}).fillna("all runs")
    return table
