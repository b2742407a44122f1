"""The screening model's conditional evaluation as tables for the Model quality tab.

``python -m battgen eval screening`` stores, under ``evaluation.conditional`` of the
checkpoint's metrics.json, the generator's composition scores per split, the shuffled-condition
control, the baselines on the same materials and the condition-vs-noise effect
(:mod:`battgen.eval.screening_conditional`). These functions lay them out side by side; the
page only displays them. Both accept the parsed metrics.json or a checkpoint directory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from battgen.artifacts import read_metrics

# predictor key -> (label, kind), in display order: the model, its control, then the baselines.
PREDICTORS = {
    "generator": ("Generator (atom regressor on generated latents)", "model"),
    "generator_consensus": ("Generator, mean composition of a material's samples", "model"),
    "shuffled_condition": ("Generator, conditions shuffled across materials", "control"),
    "random_forest": ("Random forest: properties + ion -> composition", "baseline"),
    "knn5": ("k-NN (k = 5, same ion, by properties)", "baseline"),
    "nearest_by_properties": ("Nearest material by properties (same ion)", "baseline"),
    "per_ion_mean": ("Mean composition of the requested ion", "baseline"),
    "train_mean": ("Mean composition of the training set", "baseline"),
}
QUALITY_COLUMNS = ("predictor", "label", "kind", "train_r2", "test_r2", "train_mae", "test_mae")
EFFECT_COLUMNS = ("split", "condition_effect_latent_l2", "noise_effect_latent_l2", "ratio_latent",
                  "condition_effect_composition", "noise_effect_composition", "ratio_composition",
                  "median_rank_by_latent", "median_rank_by_composition", "chance_median_rank")


def _conditional(metrics: dict | str | Path) -> dict:
    if isinstance(metrics, (str, Path)):
        loaded = read_metrics(metrics)
        if loaded is None:
            raise ValueError(f"no metrics.json in {metrics}")
        metrics = loaded
    conditional = (metrics.get("evaluation") or {}).get("conditional")
    if not conditional:
        raise ValueError("the metrics hold no conditional evaluation; run `python -m battgen eval screening`")
    return conditional


def quality_table(metrics: dict | str | Path) -> pd.DataFrame:
    """One row per predictor: composition R² and MAE on the train and the test materials.

    Rows whose numbers are absent (e.g. baselines skipped) are left out; a split that was not
    evaluated leaves its columns empty (NaN).
    """
    conditional = _conditional(metrics)
    rows = []
    for key, (label, kind) in PREDICTORS.items():
        row = {"predictor": key, "label": label, "kind": kind}
        for split in ("train", "test"):
            result = conditional.get(split) or {}
            scores = result.get(key) if key in ("generator", "generator_consensus", "shuffled_condition") \
                else (result.get("baselines") or {}).get(key)
            row[f"{split}_r2"] = None if scores is None else scores["r2"]
            row[f"{split}_mae"] = None if scores is None else scores["mae"]
        if any(row[f"{s}_r2"] is not None for s in ("train", "test")):
            rows.append(row)
    return pd.DataFrame(rows, columns=list(QUALITY_COLUMNS)).astype(
        {c: float for c in QUALITY_COLUMNS[3:]})


def below_baseline_warning(metrics: dict | str | Path) -> str | None:
    """A sentence for the page when the generated compositions lose, on the test split, to simply
    predicting each ion's average composition; None when they win or nothing was evaluated."""
    try:
        test = _conditional(metrics).get("test") or {}
    except ValueError:
        return None
    generator = (test.get("generator") or {}).get("r2")
    baseline = ((test.get("baselines") or {}).get("per_ion_mean") or {}).get("r2")
    if generator is None or baseline is None or generator >= baseline:
        return None
    return (f"On held-out materials the generated compositions are less accurate than each ion's average "
            f"composition (R² {generator:.2f} vs {baseline:.2f}, Model quality tab): read them as illustrations. "
            "The candidates are ranked by their real, computed properties.")


def condition_effect_table(metrics: dict | str | Path) -> pd.DataFrame:
    """One row per split: condition effect vs noise effect, and where the true material ranks."""
    conditional = _conditional(metrics)
    rows = []
    for split in ("train", "test"):
        result = conditional.get(split)
        if not result:
            continue
        rank = result.get("rank_of_true_material") or {}
        rows.append({"split": split, **result["condition_vs_noise"],
                     **{k: rank.get(k) for k in EFFECT_COLUMNS[7:]}})
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))


ABLATION_COLUMNS = ("variant", "change", "steps", "train_minutes", "train_r2", "test_r2", "train_shuffled_r2",
                    "test_shuffled_r2", "train_ratio_latent", "test_ratio_latent", "test_median_rank_by_latent")


def ablation_table(metrics: dict | str | Path) -> pd.DataFrame:
    """One row per ablation variant (``python -m battgen eval screening-ablation``), headline columns."""
    if isinstance(metrics, (str, Path)):
        metrics = read_metrics(metrics) or {}
    rows = (metrics.get("ablation") or {}).get("rows")
    if not rows:
        raise ValueError("the metrics hold no ablation; run `python -m battgen eval screening-ablation`")
    return pd.DataFrame([{c: row.get(c) for c in ABLATION_COLUMNS} for row in rows], columns=list(ABLATION_COLUMNS))


DENOISING_COLUMNS = ("split", "timestep", "snr", "own_mse", "shuffled_mse", "null_mse", "constant_mse",
                     "own_vs_constant", "condition_gain")


def denoising_table(metrics: dict | str | Path) -> pd.DataFrame:
    """One row per split and noise level of ``eval screening``'s clean-latent error (empty when absent)."""
    if isinstance(metrics, (str, Path)):
        metrics = read_metrics(metrics) or {}
    report = (metrics.get("evaluation") or {}).get("denoising") or {}
    rows = [{"split": split, **row} for split in ("train", "test") for row in (report.get(split) or {}).get("rows", [])]
    return pd.DataFrame([{c: r.get(c) for c in DENOISING_COLUMNS} for r in rows], columns=list(DENOISING_COLUMNS))
