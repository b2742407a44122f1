"""How well the screening model answers property requests, measured on held-out materials.

For every test-split material of the electrode table the model is asked for exactly that
material's properties and working ion, and ``samples_per_material`` samples are generated:

* **descriptors** (needs the AFM dataset): SSIM of each generated descriptor set to the
  material's simulated views, best over views (the rotation is not part of the condition);
  reported as best-of-k and mean over the k samples.
* **composition**: the atom regressor's counts of every sample against the true counts, per ion,
  in the layout of the atom regressor's table (MAE, MSE, R² over all 112 entries).
* **retrieval**: the candidates :func:`battgen.screening.candidates.rank_candidates` ranks; top-1
  / top-5 = the true material, or one with its discharged formula, ranked first / in the first
  five. Against it the classical screen, :func:`battgen.data.neighbors.nearest_by_properties`,
  which finds a table material from its own exact properties at distance 0 by construction.
* **leave-one-out**: the same with the true material removed from the pool, the case of a request
  no stored material answers exactly. What the top candidate shares with the truth: element-set
  Jaccard index, composition distance, and its properties vs the request (MAE per property,
  physical units), for generation and for the baseline.
* **shuffled-condition control**: the composition error when every request gets another test
  material's condition; a model that uses its conditions must do worse there.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd
import torch

from battgen.data.neighbors import nearest_by_composition, nearest_by_properties
from battgen.data.properties import PROPERTY_NAMES, PropertyScaler
from battgen.data.table import composition_matrix
from battgen.eval.afm_metrics import atom_regressor_metrics, ssim
from battgen.screening.candidates import DEFAULT_GUIDANCE, RANKINGS, rank_candidates
from battgen.screening.request import ScreeningRequest

GENERATION_BATCH = 64  # requests x samples per denoising batch


def element_jaccard(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """|A ∩ B| / |A ∪ B| of the element sets of two composition vectors (counts above ``threshold``)."""
    sa, sb = set(np.flatnonzero(np.asarray(a) > threshold)), set(np.flatnonzero(np.asarray(b) > threshold))
    return len(sa & sb) / max(len(sa | sb), 1)


def generate_for_conditions(pipeline, conditions: np.ndarray, samples_per_condition: int, *, scheduler: str,
                            num_inference_steps: int, guidance_scale: float, seed: int,
                            batch: int = GENERATION_BATCH, progress: Callable[[int, int], None] | None = None):
    """(latents (M, k, ...), descriptors (M, k, H, W, 6), compositions (M, k, 112)) for M conditions."""
    rows = torch.as_tensor(np.repeat(np.asarray(conditions, np.float32), samples_per_condition, axis=0))
    generator = torch.Generator().manual_seed(int(seed))
    latents, descriptors, compositions = [], [], []
    for start in range(0, len(rows), batch):
        z = pipeline.denoise(rows[start:start + batch], num_inference_steps=num_inference_steps,
                             guidance_scale=guidance_scale, generator=generator, scheduler=scheduler)
        d, c = pipeline.decode_latents(z)
        latents.append(z.float().cpu().numpy())
        descriptors.append(d.permute(0, 2, 3, 1).float().cpu().numpy())
        compositions.append(c.float().cpu().numpy())
        if progress is not None:
            progress(min(start + batch, len(rows)), len(rows))
    m, k = len(conditions), samples_per_condition
    return tuple(np.concatenate(parts).reshape(m, k, *parts[0].shape[1:])
                 for parts in (latents, descriptors, compositions))


def _hit(candidates: pd.DataFrame, true_id: str, true_formula: str, top: int) -> bool:
    head = candidates.head(top)
    return bool((head["id"] == true_id).any() or (head["formula_discharge"] == true_formula).any())


def _top1_summary(row: pd.Series, truth: pd.Series, true_comp: np.ndarray) -> dict:
    comp = np.asarray(row["composition"], np.float64)
    frac_a, frac_b = comp / max(comp.sum(), 1e-12), true_comp / max(true_comp.sum(), 1e-12)
    return {"jaccard": element_jaccard(comp, true_comp),
            "composition_distance": float(0.5 * np.abs(frac_a - frac_b).sum()),
            **{f"abs_err_{n}": abs(float(row[n]) - float(truth[n])) for n in PROPERTY_NAMES}}


def _mean_rows(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def evaluate_screening(pipeline, table: pd.DataFrame, scaler: PropertyScaler, *, latent_index=None,
                       afm_descriptors: dict[str, np.ndarray] | None = None, split: str = "test",
                       samples_per_material: int = 4, scheduler: str = "dpm++", num_inference_steps: int = 20,
                       guidance_scale: float = DEFAULT_GUIDANCE, seed: int = 0, max_materials: int | None = None,
                       k: int = 5, control: bool = True,
                       progress: Callable[[int, int], None] | None = None) -> dict:
    """Metrics of the screening model on ``split`` materials (see the module docstring).

    afm_descriptors: material id -> (V, H, W, 6) simulated descriptors of its views; without it
        the descriptor SSIM is left out.
    max_materials: evaluate only the first materials of the split (in table order), for quick runs.
    control: also run the shuffled-condition control (a second generation pass).
    """
    truth = table[table["split"] == split].reset_index(drop=True)
    if max_materials is not None:
        truth = truth.head(int(max_materials))
    if truth.empty:
        raise ValueError(f"the table has no {split!r} materials to evaluate on")
    ions = truth["working_ion"].astype(str).to_numpy()
    scaled = scaler.transform(truth[list(scaler.names)].to_numpy(np.float64))
    conditions = np.stack([pipeline.condition_vector(s, ion, scaled=True) for s, ion in zip(scaled, ions)])
    kw = dict(scheduler=scheduler, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed)

    start = time.perf_counter()
    latents, descriptors, compositions = generate_for_conditions(pipeline, conditions, samples_per_material,
                                                                 progress=progress, **kw)
    generation_s = time.perf_counter() - start
    if control:
        # The same ions, another material's properties (a derangement within the split).
        shuffled = np.roll(np.arange(len(truth)), 1)
        _, _, comp_shuffled = generate_for_conditions(pipeline, conditions[shuffled], samples_per_material, **kw)

    true_comp = composition_matrix(truth).astype(np.float64)
    k_rep = samples_per_material
    flat_ions = np.repeat(ions, k_rep)
    comp_metrics = atom_regressor_metrics(np.repeat(true_comp, k_rep, axis=0),
                                          compositions.reshape(-1, compositions.shape[-1]), flat_ions)
    control_metrics = None
    if control:
        # The shuffled request's composition is scored against the material whose condition it got.
        control_metrics = {
            "vs_condition_material": atom_regressor_metrics(
                np.repeat(true_comp[shuffled], k_rep, axis=0), comp_shuffled.reshape(-1, comp_shuffled.shape[-1]),
                flat_ions)["overall"],
            "vs_true_material": atom_regressor_metrics(
                np.repeat(true_comp, k_rep, axis=0), comp_shuffled.reshape(-1, comp_shuffled.shape[-1]),
                flat_ions)["overall"],
            "definition": "every request gets another test material's properties and ion order kept; "
                          "a model that uses its condition scores worse here than in 'composition'"}

    hits = {r: {"top1": [], "top5": []} for r in RANKINGS}
    baseline = {"top1": [], "top5": []}
    loo = {r: [] for r in ("score", "composition_similarity", "property_match")}
    loo_baseline, loo_composition_only = [], []
    ssim_best, ssim_mean, ssim_ion = [], [], []
    for m, row in truth.iterrows():
        request = ScreeningRequest(row["working_ion"], {n: float(row[n]) for n in PROPERTY_NAMES})
        samples, candidates = rank_candidates(table, scaler, request, compositions[m], latents[m], latent_index, k=k)
        for rank_by in RANKINGS:
            ordered = candidates.sort_values([rank_by, "found_by_samples"], ascending=False, kind="stable")
            for top, name in ((1, "top1"), (5, "top5")):
                hits[rank_by][name].append(_hit(ordered, row["id"], row["formula_discharge"], top))
        base = nearest_by_properties(table, request.properties, scaler, ion=request.working_ion, k=5)
        for top, name in ((1, "top1"), (5, "top5")):
            baseline[name].append(_hit(base, row["id"], row["formula_discharge"], top))

        others = table[table["id"] != row["id"]]
        _, loo_candidates = rank_candidates(others, scaler, request, compositions[m], latents[m], latent_index, k=k)
        for rank_by in loo:
            best = loo_candidates.sort_values([rank_by, "found_by_samples"], ascending=False, kind="stable").iloc[0]
            loo[rank_by].append(_top1_summary(best, row, true_comp[m]))
        loo_baseline.append(_top1_summary(
            nearest_by_properties(others, request.properties, scaler, ion=request.working_ion, k=1).iloc[0],
            row, true_comp[m]))
        # The composition a perfect atom regressor would give: an upper bound on retrieval by composition.
        loo_composition_only.append(_top1_summary(
            nearest_by_composition(others, true_comp[m], k=1, ion=request.working_ion).iloc[0], row, true_comp[m]))

        if afm_descriptors is not None and row["id"] in afm_descriptors:
            views = afm_descriptors[row["id"]]
            gen = descriptors[m]
            pairs = ssim(np.repeat(gen, len(views), axis=0), np.tile(views, (len(gen), 1, 1, 1)))
            per_sample = pairs.mean(axis=1).reshape(len(gen), len(views)).max(axis=1)
            ssim_best.append(float(per_sample.max()))
            ssim_mean.append(float(per_sample.mean()))
            ssim_ion.append(row["working_ion"])

    out: dict = {
        "split": split,
        "materials": int(len(truth)),
        "samples_per_material": int(samples_per_material),
        "sampler": {**kw, "generation_s": round(generation_s, 2)},
        "composition": comp_metrics,
        "composition_shuffled_condition_control": control_metrics,
        "retrieval": {
            **{f"generation_rank_by_{r}": {n: float(np.mean(v)) for n, v in hits[r].items()} for r in RANKINGS},
            "baseline_nearest_by_properties": {n: float(np.mean(v)) for n, v in baseline.items()},
            "definition": "hit = the true material or one with its discharged formula among the top-n "
                          "candidates of the requested ion; the baseline looks up the exact properties",
        },
        "leave_one_out_top1": {
            **{f"generation_rank_by_{r}": _mean_rows(v) for r, v in loo.items()},
            "baseline_nearest_by_properties": _mean_rows(loo_baseline),
            "oracle_true_composition": _mean_rows(loo_composition_only),
            "definition": "true material removed from the pool; what the top candidate shares with it: element-set "
                          "Jaccard (1 = same elements), composition distance (0 = same), absolute property errors "
                          "in physical units; the oracle retrieves by the true composition",
        },
    }
    if ssim_best:
        ions_arr = np.asarray(ssim_ion)
        out["descriptors"] = {
            "ssim_best_of_k": float(np.mean(ssim_best)), "ssim_mean": float(np.mean(ssim_mean)),
            "per_ion": {ion: {"ssim_best_of_k": float(np.mean(np.asarray(ssim_best)[ions_arr == ion])),
                              "ssim_mean": float(np.mean(np.asarray(ssim_mean)[ions_arr == ion])),
                              "materials": int((ions_arr == ion).sum())} for ion in sorted(set(ssim_ion))},
            "definition": "SSIM over the 6 descriptor channels of each sample to the material's simulated views, "
                          "best over views; best-of-k and mean over the samples",
        }
    return out


def afm_descriptors_by_material(dataset, split: str | None = "test") -> dict[str, np.ndarray]:
    """material id -> (V, H, W, 6) descriptors of its views, from a loaded AFM dataset."""
    if dataset.material_id is None:
        raise ValueError(f"{dataset.path} names no material ids; rebuild it with the current dataset builder")
    rows = np.arange(len(dataset)) if split is None else dataset.indices(split)
    out: dict[str, list] = {}
    for i in rows:
        out.setdefault(str(dataset.material_id[i]), []).append(i)
    return {mid: np.asarray(dataset.descriptors[idx], np.float32) for mid, idx in out.items()}


def sweep_row(guidance_scale: float, metrics: dict) -> dict:
    """One line of a guidance sweep: the evaluation's headline numbers at that scale."""
    composition = metrics["composition"]["overall"]
    control = (metrics.get("composition_shuffled_condition_control") or {}).get("vs_true_material") or {}
    retrieval = metrics["retrieval"]
    loo = metrics["leave_one_out_top1"]["generation_rank_by_score"]
    row = {
        "guidance_scale": float(guidance_scale),
        "composition_mae": composition["mae"],
        "composition_r2": composition["r2"],
        # How much the request's own properties beat another material's at predicting its composition.
        "condition_effect_mae": control["mae"] - composition["mae"] if control else None,
        "top1_score": retrieval["generation_rank_by_score"]["top1"],
        "top5_score": retrieval["generation_rank_by_score"]["top5"],
        "top1_property_match": retrieval["generation_rank_by_property_match"]["top1"],
        "loo_jaccard_score": loo["jaccard"],
        "generation_s": metrics["sampler"]["generation_s"],
    }
    if "descriptors" in metrics:
        row["ssim_best_of_k"] = metrics["descriptors"]["ssim_best_of_k"]
        row["ssim_mean"] = metrics["descriptors"]["ssim_mean"]
    return row


def guidance_sweep(pipeline, table: pd.DataFrame, scaler: PropertyScaler, guidance_scales, *,
                   progress: Callable[[int, int], None] | None = None, **evaluate_kw) -> dict:
    """:func:`evaluate_screening` at each classifier-free guidance scale, same materials and noise.

    0 samples the unconditional model and 1 the plain conditional one; above 1 guidance
    extrapolates away from the unconditional prediction, trading diversity for adherence.
    """
    scales = [float(g) for g in guidance_scales]
    if not scales or any(not np.isfinite(g) or g < 0 for g in scales):
        raise ValueError(f"guidance scales must be finite and >= 0, got {guidance_scales}")
    rows, settings = [], {}
    for i, scale in enumerate(scales):
        metrics = evaluate_screening(pipeline, table, scaler, guidance_scale=scale, **evaluate_kw)
        rows.append(sweep_row(scale, metrics))
        settings = {k: v for k, v in metrics["sampler"].items() if k not in ("guidance_scale", "generation_s")}
        settings.update(split=metrics["split"], materials=metrics["materials"],
                        samples_per_material=metrics["samples_per_material"])
        if progress is not None:
            progress(i + 1, len(scales))
    return {
        "rows": rows,
        "settings": settings,
        "definition": f"the {settings.get('split', 'test')}-split evaluation repeated at each guidance scale with "
                      "the same materials and "
                      "initial noise; condition_effect_mae = composition MAE with another material's properties "
                      "minus with the material's own (> 0: the properties steer the composition)",
    }
