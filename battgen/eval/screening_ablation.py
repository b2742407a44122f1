"""The screening model's ablation: one short training per change, scored by the conditional metrics.

Each variant is a set of :func:`battgen.train.screening.train_screening` options, cumulative from
the published setup (epsilon-prediction, min-max conditions, all views) to the shipped one. Every
variant trains the same small U-Net for a fixed number of optimiser steps on one torch thread and
is scored by :func:`battgen.eval.screening_conditional.conditional_evaluation` on the same
materials, so a row differs from the previous one by the change it names. Short runs rank the
changes; they do not reach the shipped model's numbers.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

V_ZSNR = {"prediction_type": "v_prediction", "zero_terminal_snr": True}
# name -> (what changed, train_screening options); cumulative unless the text says otherwise.
VARIANTS: dict[str, tuple[str, dict]] = {
    "A_eps_minmax_all": ("published: epsilon, min-max conditions, all views", {}),
    "B_eps_minmax_canon": ("+ one canonical view per material", {"targets": "canonical"}),
    "C_v_zsnr_minmax_canon": ("+ v-prediction, zero terminal SNR", {**V_ZSNR, "targets": "canonical"}),
    "D_v_zsnr_zscore_canon": ("+ z-scored conditions", {**V_ZSNR, "targets": "canonical", "condition_norm": "zscore"}),
    "E_v_zsnr_zscore_minsnr_canon": ("+ min-SNR-5 loss weights (the shipped configuration)",
                                     {**V_ZSNR, "targets": "canonical", "condition_norm": "zscore",
                                      "min_snr_gamma": 5.0}),
    "G_v_zsnr_zscore_minsnr_all": ("E, but all views", {**V_ZSNR, "targets": "all", "condition_norm": "zscore",
                                                        "min_snr_gamma": 5.0}),
    "H_v_zsnr_zscore_minsnr_mean": ("E, but the per-material mean latent",
                                    {**V_ZSNR, "targets": "mean", "condition_norm": "zscore", "min_snr_gamma": 5.0}),
    "F_x0_zsnr_zscore_minsnr_canon": ("E, but x0-prediction", {"prediction_type": "sample", "zero_terminal_snr": True,
                                                               "targets": "canonical", "condition_norm": "zscore",
                                                               "min_snr_gamma": 5.0}),
    "T_tokens_v_zsnr_zscore_minsnr_canon": ("E, but per-property tokens through cross-attention",
                                            {**V_ZSNR, "targets": "canonical", "condition_norm": "zscore",
                                             "min_snr_gamma": 5.0, "embedding": "tokens"}),
}
ABLATION_CHANNELS = (32, 64, 64)  # the shipped model's widths (Makefile SCREENING_ARGS)
TARGETS_PER_MATERIAL = {"all": 4, "canonical": 1, "mean": 1}  # the translator's latents: 4 views per material


def ablation_row(name: str, description: str, options: dict, train_metrics: dict, conditional: dict,
                 train_minutes: float) -> dict:
    """One table row: what changed, its budget, and the conditional metrics per split."""
    row = {"variant": name, "change": description, "options": options, "train_minutes": round(train_minutes, 2),
           "steps": train_metrics["steps"], "epochs": train_metrics["epochs_run"],
           "best_epoch": train_metrics["best_epoch"],
           "best_val_composition_r2": train_metrics.get("best_val_composition_r2")}
    for split in ("train", "test"):
        result = conditional[split]
        row[f"{split}_r2"] = result["generator"]["r2"]
        row[f"{split}_shuffled_r2"] = result["shuffled_condition"]["r2"]
        row[f"{split}_ratio_latent"] = result["condition_vs_noise"]["ratio_latent"]
        row[f"{split}_ratio_composition"] = result["condition_vs_noise"]["ratio_composition"]
        row[f"{split}_median_rank_by_latent"] = result["rank_of_true_material"]["median_rank_by_latent"]
    return row


def run_variant(name: str, latents_path, table_dir, out_root, *, translator, atom_regressor, session_table, scaler,
                latent_index=None, material_epochs: int = 12, max_materials: int = 48, seed: int = 0,
                batch_size: int = 64, max_minutes: float = 12.0, select_every: int = 4) -> dict:
    """Train variant ``name``, evaluate it, return its row.

    ``material_epochs`` passes over the materials: that many epochs with one target per
    material, a quarter as many with all four views, so every variant takes the same number of
    optimiser steps (12: 132 steps of 64 on the shipped table).
    """
    import torch

    from battgen.eval.screening_conditional import conditional_evaluation
    from battgen.models.screening import BattGenScreeningPipeline
    from battgen.train.configs import ScreeningTrainingConfig
    from battgen.train.screening import train_screening

    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    description, options = VARIANTS[name]
    options = dict(options)
    epochs = max(1, math.ceil(material_epochs / TARGETS_PER_MATERIAL[options.get("targets", "all")]))
    out = Path(out_root) / name
    start = time.perf_counter()
    config = ScreeningTrainingConfig(
        latents=latents_path, table=table_dir, out=out, translator=translator, atom_regressor=atom_regressor,
        epochs=epochs, batch_size=batch_size, lr=5e-4, cond_dropout=0.1, ema_decay=0.999, patience=0,
        max_minutes=max_minutes, seed=seed, threads=1, progress=False, channels=ABLATION_CHANNELS,
        select_by="val_composition_r2", select_every=select_every if epochs > select_every else 1, **options)
    metrics = train_screening(config)
    minutes = (time.perf_counter() - start) / 60
    pipeline = BattGenScreeningPipeline.from_pretrained(out)
    pipeline.set_progress_bar_config(disable=True)
    with torch.no_grad():
        conditional = conditional_evaluation(pipeline, session_table, scaler, latent_index=latent_index,
                                             max_materials=max_materials, seed=seed, with_baselines=False)
    return ablation_row(name, description, {**options, "channels": ABLATION_CHANNELS}, metrics, conditional, minutes)
