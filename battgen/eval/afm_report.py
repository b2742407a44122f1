"""Quality tables of the shipped AFM models, read from their checkpoints (torch-free).

The AFM page's *Model quality* tab draws these; the numbers come from ``metrics.json`` and
``predictions.npz`` that training writes, with the published atom-regressor table beside ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from battgen.afm.augment import TRAINING_RANGES, kind_probabilities
from battgen.artifacts import read_metadata, read_metrics
from battgen.data.properties import WORKING_IONS

# Rajagopal et al. 2025, atom regressor per working ion on their test set: the numbers to beat.
PUBLISHED_ATOM_REGRESSOR: dict[str, dict[str, float]] = {
    "Li": {"mae": 0.021, "mse": 0.0236, "r2": 0.9989},
    "Na": {"mae": 0.0181, "mse": 0.1593, "r2": 0.9707},
    "Mg": {"mae": 0.0138, "mse": 0.03, "r2": 0.9996},
    "Al": {"mae": 0.0475, "mse": 0.2687, "r2": 0.8097},
    "K": {"mae": 0.0211, "mse": 0.1054, "r2": 0.849},
    "Ca": {"mae": 0.0089, "mse": 0.011, "r2": 0.9931},
    "Zn": {"mae": 0.0072, "mse": 0.0073, "r2": 0.9989},
    "Rb": {"mae": 0.0169, "mse": 0.0738, "r2": 0.7284},
    "Y": {"mae": 0.0158, "mse": 0.0411, "r2": 0.9015},
    "Cs": {"mae": 0.0115, "mse": 0.0705, "r2": 0.5087},
}
# Written by battgen.train.atom_regressor next to its metrics.json.
PREDICTIONS_FILENAME = "predictions.npz"
_COUNT_METRICS = ("mae", "mse", "r2")


def translator_comparison(checkpoints: Mapping[str, str | os.PathLike[str]]) -> pd.DataFrame | None:
    """Test-split numbers of several translators side by side: one column per model, one row per metric.

    ``checkpoints`` maps a column name to a checkpoint folder; folders without metrics are left out,
    and None comes back when none has any.
    """
    columns = {}
    for name, directory in checkpoints.items():
        metrics = read_metrics(directory)
        if metrics:
            flat = pd.json_normalize(metrics.get("test", {})).iloc[0]
            columns[name] = {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return pd.DataFrame(columns) if columns else None


def different_training_data(checkpoints: Mapping[str, str | os.PathLike[str]]) -> str | None:
    """A warning when the compared translators learned from different AFM datasets, else None.

    Their test splits then differ too, so a side-by-side column is not a like-for-like ablation.
    """
    seen = {}
    for name, directory in checkpoints.items():
        meta, metrics = read_metadata(directory), read_metrics(directory)
        if meta and metrics:
            seen[name] = (meta.get("input_sha256"), metrics.get("n_train"), metrics.get("n_test"),
                          str(meta.get("created_utc", ""))[:10])
    if len({sha for sha, *_ in seen.values()}) < 2:
        return None
    parts = [f"{name}: {n_train} training and {n_test} test views, trained {day}"
             for name, (_, n_train, n_test, day) in seen.items()]
    return ("These models learned from different AFM datasets, so their test splits differ and the columns are "
            "not a like-for-like comparison (" + "; ".join(parts) + ").")


def robust_encoder_tables(metrics: Mapping) -> tuple[pd.DataFrame, pd.DataFrame | None, str] | None:
    """What the robust-encoder fine-tune (``metrics.json`` → ``robust_encoder``) changed: per distortion
    kind, the latent error before (the teacher) and after, on held-out training materials; per
    descriptor, the clean test SSIM of both (when scored); and a line saying what was trained on
    what. None without one."""
    robust = metrics.get("robust_encoder")
    if not robust:
        return None
    kinds = pd.DataFrame([{"distortion": kind, "latent MSE before": m["teacher_mse"],
                           "latent MSE after": m["student_mse"], "views": m["views"]}
                          for kind, m in robust["validation"]["per_kind"].items()]).round(4)
    clean = None
    if "test_teacher" in metrics and "test" in metrics:
        clean = pd.DataFrame([{"descriptor": name, "SSIM before": metrics["test_teacher"]["per_descriptor"][name]["ssim"],
                               "SSIM after": m["ssim"]}
                              for name, m in metrics["test"]["per_descriptor"].items()]).round(3)
    instruments = robust.get("instrument_views") or {}
    counts = "; ".join(f"{name}: {n['train']} training, {n['val']} held-out views" for name, n in instruments.items())
    imaged = f", plus the same views imaged by other instruments simulated with ppafm ({counts})" if instruments else ""
    also = ", and on the other instruments' held-out views" if instruments else ""
    stages = [*(robust.get("earlier_stages") or []), robust]
    epochs = (f"{robust['epochs_run']} epochs, best {robust['best_epoch']}" if len(stages) == 1 else
              f"{len(stages)} stages of {' + '.join(str(stage.get('epochs_run')) for stage in stages)} epochs, "
              f"best {robust['best_epoch']} of the last")
    even = float(kind_probabilities()[list(TRAINING_RANGES).index("pink")])
    weighted = [f"stage {i} drew 1/f noise in {pink:.0%} of its pairs" for i, stage in enumerate(stages, 1)
                if abs((pink := (stage.get("kind_probabilities") or {}).get("pink", even)) - even) > 1e-3]
    weighting = f"; {', '.join(weighted)}" if weighted else ""
    about = (f"Encoder fine-tuned from {robust['teacher']} on {robust['n_train']} views of "
             f"{robust['train_materials']} training materials{imaged} ({epochs}{weighting}, "
             f"{robust.get('total_train_seconds', robust['train_seconds']) / 60:.0f} min); "
             f"decoder frozen. Latent MSE in the diffusion model's unit-variance units on {robust['n_val']} held-out "
             f"views, each randomly distorted{also}, "
             f"against the teacher's latent of the clean stack (moved with the sample). Clean stacks move by an RMS of "
             f"{robust['clean_rms']:.3f}.")
    return kinds, clean, about


def atom_regressor_table(metrics: Mapping) -> pd.DataFrame:
    """Per working ion: our test MAE / MSE / R² beside the published ones (None where absent)."""
    per_ion = metrics.get("test", {}).get("per_ion", {})
    rows = [{"ion": ion,
             **{f"{k} (ours)": per_ion.get(ion, {}).get(k) for k in _COUNT_METRICS},
             **{f"{k} (published)": PUBLISHED_ATOM_REGRESSOR.get(ion, {}).get(k) for k in _COUNT_METRICS}}
            for ion in WORKING_IONS]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RegressorPredictions:
    """The test split's true and predicted atom counts, one row per view."""

    true: np.ndarray  # (views, 112)
    pred: np.ndarray  # (views, 112)
    working_ion: np.ndarray  # (views,) str


def load_regressor_predictions(checkpoint: str | os.PathLike[str]) -> RegressorPredictions | None:
    """``predictions.npz`` of an atom-regressor checkpoint, or None when the folder has none."""
    path = Path(checkpoint) / PREDICTIONS_FILENAME
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return RegressorPredictions(z["true"], z["pred"], z["working_ion"].astype(str))


_ROBUSTNESS_COLUMNS = {"condition": "condition", "views": "views", "within_bar": "within the bar",
                       "ssim_before": "SSIM before", "ssim_drop_before": "SSIM drop before",
                       "ssim_mean": "SSIM", "ssim_drop": "SSIM drop",
                       "composition_r2_before": "composition R² before",
                       "composition_r2_drop_before": "R² drop before",
                       "composition_r2": "composition R²", "composition_r2_drop": "R² drop",
                       "composition_r2_as_given": "composition R², stack as given only",
                       "ood_detection_rate": "OOD warned (%)", "ood_caution_rate": "OOD unusual or warned (%)",
                       "ood_median_percentile": "median OOD percentile", "noise_flag_rate": "too noisy (%)"}


# Elements that are the anion of battery electrodes (oxides, fluorides, sulfides, selenides, nitrides, halides).
ANIONS = ("N", "O", "F", "S", "Cl", "Se", "Br", "Te", "I")


def anion_confusion(true: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """Which anion the regressor reads as a view's main one (most atoms among :data:`ANIONS`), per true main anion.

    The overall R² hides a chemist's first question, oxide or fluoride (or sulfide or selenide).
    One row per true main anion with any view: views, % read right, and
    % read as each anion; views without any of these anions are left out.
    """
    from battgen.data.composition import element_symbols

    symbols = element_symbols()
    columns = [symbols.index(a) for a in ANIONS]
    true, pred = np.asarray(true)[:, columns], np.asarray(pred)[:, columns]
    has_anion = true.max(1) > 0
    true_main, pred_main = true.argmax(1)[has_anion], pred.argmax(1)[has_anion]
    rows = []
    for i, anion in enumerate(ANIONS):
        mine = true_main == i
        if not mine.any():
            continue
        shares = {f"read as {other} (%)": 100.0 * float(np.mean(pred_main[mine] == j)) for j, other in enumerate(ANIONS)}
        rows.append({"main anion": anion, "views": int(mine.sum()), "read right (%)": shares[f"read as {anion} (%)"],
                     **shares})
    frame = pd.DataFrame(rows)
    # Drop anions that no view is read as: the table stays as wide as the confusions it has.
    read_as = [c for c in frame.columns if c.startswith("read as ") and frame[c].any()]
    return frame[["main anion", "views", "read right (%)", *read_as]].round(1)


def robustness_frame(checkpoint: str | os.PathLike[str]) -> tuple[pd.DataFrame, str] | None:
    """The translator's ``robustness.json`` as one row per condition, and a line saying what it was measured on.

    None when the checkpoint has no robustness table (``python -m battgen afm robustness`` writes it).
    """
    import json

    from battgen.afm.robustness import ROBUSTNESS_FILENAME

    path = Path(checkpoint) / ROBUSTNESS_FILENAME
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    frame = pd.DataFrame(result["rows"])
    # Rows simulated with another instrument score the views that campaign holds; the others score all.
    frame["views"] = (frame["views"] if "views" in frame.columns else pd.Series(index=frame.index, dtype=float)
                      ).fillna(result["views"]).astype(int)
    bar = result.get("bar", {})
    if {"max_ssim_drop", "max_composition_r2_drop"} <= set(bar) and "composition_r2_drop" in frame.columns:
        within = ((frame["ssim_drop"] <= bar["max_ssim_drop"])
                  & (frame["composition_r2_drop"] <= bar["max_composition_r2_drop"]))
        frame["within_bar"] = within.map({True: "yes", False: "no"}).where(frame["condition"] != "clean", "")
    before = {r["condition"]: r for r in result.get("before", {}).get("rows", [])}
    for key in ("ssim_mean", "ssim_drop", "composition_r2", "composition_r2_drop"):
        values = {condition: row[key] for condition, row in before.items() if key in row}
        if values:
            frame[key.replace("_mean", "") + "_before"] = frame["condition"].map(values)
    for rate in ("ood_detection_rate", "ood_caution_rate", "noise_flag_rate"):
        if rate in frame.columns:
            frame[rate] = 100.0 * frame[rate]
    frame = frame[[c for c in _ROBUSTNESS_COLUMNS if c in frame.columns]].rename(columns=_ROBUSTNESS_COLUMNS)
    frame = frame.round(3)
    about = (f"{result['views']} {result['split']}-split views"
             + (f" of {result['materials']} materials" if result.get("materials") else "")
             + f"; OOD warned = % of views above the {result['ood_threshold_percentile']:g}th percentile of "
               f"held-out distances ({result['ood_threshold']:.2f})"
             + (f", unusual = above the {result['ood_caution_percentile']:g}th ({result['ood_caution']:.2f})"
                if "ood_caution" in result else "")
             + ("; too noisy = % of views whose estimated pixel SNR is below the least the models were trained "
                "on (the page warns about those whatever their OOD score)" if "too noisy (%)" in frame.columns else "")
             + (f"; translator {_made(result['translator'])}" if "translator" in result else "")
             + (f"; atom regressor {_made(result['regressor'])}" if "regressor" in result else "")
             + (f"; before = the models this table replaced: translator {_made(result['before']['translator'])}, "
                f"atom regressor {_made(result['before']['regressor'])}" if before else "")
             + ". Issue 16's bar: SSIM drop ≤ "
               f"{bar.get('max_ssim_drop')}, R² drop ≤ {bar.get('max_composition_r2_drop')}. {result['definition']}")
    return frame, about


def _made(record: Mapping) -> str:
    when = record.get("created_utc")
    return f"{record.get('path', '?')}" + (f" (trained {when[:16].replace('T', ' ')} UTC)" if when else " (not recorded)")


def atom_regressor_ablation(metrics: Mapping) -> tuple[pd.DataFrame, str] | None:
    """The ablation table the trainer recorded (one row per variant, then the baselines), and its definition."""
    ablation = metrics.get("ablation")
    if not ablation:
        return None
    rows = [{"variant": row["variant"], "test R²": row["test_r2"],
             **{f"R², latent rolled {k.removeprefix('test_r2_rolled_')} px": v for k, v in row.items()
                if k.startswith("test_r2_rolled_")},
             "best epoch": row["best_epoch"], "seconds": row["seconds"]}
            for row in ablation["rows"]]
    rows += [{"variant": f"baseline: {name}", "test R²": r2} for name, r2 in ablation["baselines"].items()]
    rows += [{"variant": f"{name}, material-grouped split", "test R²": cost["material_grouped"]}
             for name, cost in ablation.get("split_cost", {}).items()]
    return pd.DataFrame(rows).round(3), ablation["definition"]
