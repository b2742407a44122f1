"""Does the screening generator listen to its conditions? Measured per split, beside the baselines.

For the materials of a split (train and test side by side), the generator is asked for each
material's own properties and ion, with fixed initial noise (``samples`` draws per material):

* ``generator``: R² / MAE of the generated compositions (atom regressor on the generated
  latents) against the material's true counts;
* ``generator_consensus``: the same, scored on each material's mean composition over its
  ``samples`` draws (what the screening page's candidates say together; the noise of single
  draws averages out, the condition's signal does not);
* ``shuffled_condition``: the same noise, but every material gets another material's condition
  (a random derangement over the split); scored against the material in the slot. A generator
  that uses its condition must score clearly lower here;
* ``condition_vs_noise``: with the same noise, another *same-ion* material's properties move the
  sample by ``condition_effect`` (latent L2 of the unscaled latents, and composition distance);
  with the same condition, other noise moves it by ``noise_effect``; their ratio (target >= 0.25);
* ``rank_of_true_material``: where the true material ranks among the split-independent pool of
  its ion's materials, by the generated latent's distance to each material's nearest view and by
  composition distance; median rank and chance (pool size + 1) / 2.

Baselines (:mod:`battgen.eval.screening_baselines`) are scored on the same materials.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from battgen.data.properties import PropertyScaler
from battgen.data.table import composition_matrix
from battgen.eval.afm_metrics import atom_regressor_metrics
from battgen.eval.screening_baselines import baseline_scores
from battgen.screening.candidates import composition_distances
from battgen.screening.defaults import DEFAULT_GUIDANCE

SPLITS = ("train", "test")
BATCH = 128


def split_materials(table: pd.DataFrame, split: str, max_materials: int | None, seed: int = 0) -> pd.DataFrame:
    """The split's materials, or a seeded random subset of ``max_materials`` of them (all ions kept in proportion)."""
    rows = table[table["split"] == split]
    if rows.empty:
        raise ValueError(f"the table has no {split!r} materials")
    if max_materials is not None and len(rows) > max_materials:
        rows = rows.sample(n=int(max_materials), random_state=seed)
    return rows.reset_index(drop=True)


def _generate(pipeline, conditions: np.ndarray, noise: torch.Tensor, **sample_kw) -> tuple[np.ndarray, np.ndarray]:
    """(latents (M, ...), compositions (M, 112)) for M conditions and M initial noises."""
    latents, counts = [], []
    for start in range(0, len(conditions), BATCH):
        z = pipeline.denoise(torch.as_tensor(conditions[start:start + BATCH]),
                             latents=noise[start:start + BATCH], **sample_kw)
        counts.append(pipeline.atom_regressor.predict_from_mu(z).float().cpu().numpy())
        latents.append(z.float().cpu().numpy())
    return np.concatenate(latents), np.concatenate(counts)


def _cyclic(rng: np.random.Generator, members: np.ndarray) -> dict[int, int]:
    order = rng.permutation(members)
    return dict(zip(order.tolist(), np.roll(order, 1).tolist()))


def shuffled_partner(rng: np.random.Generator, n: int, groups: np.ndarray | None = None) -> np.ndarray:
    """partner[i] != i for every i whose group has another member: a random cyclic derangement."""
    partner = np.arange(n)
    for g in ([None] if groups is None else np.unique(groups)):
        members = np.arange(n) if g is None else np.flatnonzero(groups == g)
        if len(members) > 1:
            for a, b in _cyclic(rng, members).items():
                partner[a] = b
    return partner


def _ranks(distances: np.ndarray, true_col: int) -> np.ndarray:
    """1-based rank of column ``true_col`` in each row of ``distances`` (ties counted in its favour)."""
    return 1 + (distances < distances[:, [true_col]]).sum(axis=1)


def generator_scores(pipeline, table: pd.DataFrame, scaler: PropertyScaler, materials: pd.DataFrame, *,
                     latent_index=None, samples: int = 2, sampler: str = "dpm++", num_inference_steps: int = 10,
                     guidance_scale: float = DEFAULT_GUIDANCE, seed: int = 0) -> dict:
    """The generator's conditional metrics on ``materials`` (see the module docstring)."""
    if samples < 2:
        raise ValueError("need at least 2 samples per material to measure the noise effect")
    ions = materials["working_ion"].astype(str).to_numpy()
    scaled = scaler.transform(materials[list(scaler.names)].to_numpy(np.float64))
    conditions = np.stack([pipeline.condition_vector(s, ion, scaled=True) for s, ion in zip(scaled, ions)])
    truth = composition_matrix(materials).astype(np.float64)
    m, k = len(materials), int(samples)
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((m * k, *pipeline.latent_shape), generator=gen)
    kw = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, scheduler=sampler)
    rng = np.random.default_rng(seed)

    start = time.perf_counter()
    own = np.repeat(np.arange(m), k)
    z, counts = _generate(pipeline, conditions[own], noise, **kw)
    across = shuffled_partner(rng, m)
    z_shuffled, counts_shuffled = _generate(pipeline, conditions[across][own], noise, **kw)
    same_ion = shuffled_partner(rng, m, ions)
    z_ion, counts_ion = _generate(pipeline, conditions[same_ion][own], noise, **kw)
    generation_s = time.perf_counter() - start

    flat_ions, flat_truth = np.repeat(ions, k), np.repeat(truth, k, axis=0)
    fractions = lambda c: c / np.maximum(c.sum(axis=1, keepdims=True), 1e-12)  # noqa: E731
    comp_distance = lambda a, b: 0.5 * np.abs(fractions(a) - fractions(b)).sum(axis=1)  # noqa: E731
    z_by = z.reshape(m, k, -1)
    c_by = counts.reshape(m, k, -1)
    noise_l2 = np.linalg.norm(z_by[:, 0] - z_by[:, 1], axis=1)
    noise_comp = comp_distance(c_by[:, 0], c_by[:, 1])
    has_partner = same_ion != np.arange(m)
    cond_l2 = np.linalg.norm(z.reshape(m * k, -1) - z_ion.reshape(m * k, -1), axis=1).reshape(m, k)[has_partner]
    cond_comp = comp_distance(counts, counts_ion).reshape(m, k)[has_partner]

    out = {
        "materials": m, "samples_per_material": k,
        "sampler": {**kw, "seed": int(seed), "generation_s": round(generation_s, 2)},
        "generator": atom_regressor_metrics(flat_truth, counts, flat_ions)["overall"],
        "generator_consensus": atom_regressor_metrics(truth, c_by.mean(axis=1), ions)["overall"],
        "shuffled_condition": atom_regressor_metrics(flat_truth, counts_shuffled, flat_ions)["overall"],
        "condition_vs_noise": {
            "condition_effect_latent_l2": float(cond_l2.mean()),
            "noise_effect_latent_l2": float(noise_l2.mean()),
            "ratio_latent": float(cond_l2.mean() / max(noise_l2.mean(), 1e-12)),
            "condition_effect_composition": float(cond_comp.mean()),
            "noise_effect_composition": float(noise_comp.mean()),
            "ratio_composition": float(cond_comp.mean() / max(noise_comp.mean(), 1e-12)),
        },
    }
    ranks_comp, ranks_latent, pools = [], [], []
    for i, row in materials.iterrows():
        pool = table[table["working_ion"] == ions[i]].reset_index(drop=True)
        true_col = int(np.flatnonzero(pool["id"].to_numpy() == row["id"])[0])
        pools.append(len(pool))
        ranks_comp.append(_ranks(composition_distances(c_by[i], pool), true_col))
        if latent_index is not None:
            frame = latent_index.distances(z_by[i], ion=ions[i]).reindex(pool["id"])
            ranks_latent.append(_ranks(frame.to_numpy().T, true_col))
    out["rank_of_true_material"] = {
        "median_rank_by_composition": float(np.median(np.concatenate(ranks_comp))),
        "median_rank_by_latent": float(np.median(np.concatenate(ranks_latent))) if ranks_latent else None,
        "chance_median_rank": float(np.median((np.asarray(pools) + 1) / 2)),
        "median_pool_size": float(np.median(pools)),
    }
    return out


def conditional_evaluation(pipeline, table: pd.DataFrame, scaler: PropertyScaler, *, latent_index=None,
                           splits=SPLITS, max_materials: int | None = None, seed: int = 0,
                           with_baselines: bool = True, **generator_kw) -> dict:
    """Per split: the generator's conditional metrics and the baselines on the same materials."""
    out: dict = {}
    for split in splits:
        materials = split_materials(table, split, max_materials, seed)
        result = generator_scores(pipeline, table, scaler, materials, latent_index=latent_index, seed=seed,
                                  **generator_kw)
        if with_baselines:
            result["baselines"] = baseline_scores(table, scaler, materials, seed=seed)
        out[split] = result
    out["definition"] = (
        "R2/MAE of atom counts of generated samples (atom regressor on the generated latent) vs the true "
        "material; shuffled_condition: same noise, another material's condition; condition_vs_noise: "
        "same noise + another same-ion material's properties vs same condition + other noise; baselines "
        "fitted on the train split, scored on the same materials (lookups leave the material itself out)")
    return out
