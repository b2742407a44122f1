"""Generated samples -> ranked, deduplicated real materials of the electrode table.

Every generated sample carries two handles on real materials: its predicted composition (atom
regressor) and its latent (which the translator also produced for every dataset view). For each
sample the ``k`` nearest materials of the requested working ion by composition and by latent
form the candidate pool; a material found by several samples appears once, with how many
samples found it.

Each candidate is scored on two independent questions:

* ``composition_similarity`` = 1 − composition distance (the fraction of atoms that would have to
  change element to turn the closest generated composition into the candidate's), i.e. *does the
  model think a material like this fits the request?*
* ``property_match`` = 1 − RMS difference between the candidate's real properties and the request,
  in the [0, 1] units the model is conditioned in (0.1 = on average 10 % of the data range off),
  i.e. *does this real material actually have what was asked for?*

``score`` is their mean, and the default ranking. Ranking by ``property_match`` alone is the
classical screen (nearest materials by property) restricted to what the model generated; the
evaluation (``battgen.eval.screening_metrics``) measures all of them against that baseline.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from battgen.data.composition import element_symbols, formula_guess, top_elements
from battgen.data.properties import PROPERTY_NAMES, PropertyScaler
from battgen.data.table import composition_matrix
from battgen.screening.defaults import (DEFAULT_CANDIDATES, DEFAULT_GUIDANCE, DEFAULT_RANKING, DEFAULT_SAMPLER,
                                       DEFAULT_STEPS, RANKINGS)
from battgen.screening.request import ScreeningRequest

NEIGHBOURS_PER_SAMPLE = 5
# Smallest predicted count listed in a JSON composition: the regressor's softplus never reaches 0.
COMPOSITION_THRESHOLD = 0.01
# Signed differences candidate - request shown beside the real properties (the first thing a
# scientist checks is how far the voltage and capacity are from what was asked).
DELTA_COLUMNS = {"average_voltage": "delta_voltage", "capacity_grav": "delta_capacity_grav"}
CANDIDATE_COLUMNS = ("rank", "id", "formula_discharge", "working_ion", "structure_type", "property_match",
                     *(c for name in PROPERTY_NAMES for c in (name, DELTA_COLUMNS.get(name)) if c),
                     "composition_similarity", "score", "latent_distance",
                     "found_by_samples", "closest_sample", "split")


def composition_fractions(matrix: np.ndarray) -> np.ndarray:
    matrix = np.atleast_2d(np.asarray(matrix, np.float64))
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1e-12)


def composition_dict(vector: np.ndarray, threshold: float = COMPOSITION_THRESHOLD) -> dict[str, float]:
    """A predicted composition vector as {element: atoms}, every element above ``threshold``, largest first."""
    symbols = element_symbols()
    vector = np.asarray(vector, np.float64).reshape(-1)
    order = np.argsort(-vector, kind="stable")
    return {symbols[i]: round(float(vector[i]), 4) for i in order if vector[i] >= threshold}


def composition_distances(generated: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """(B, N) half-L1 distance of atomic fractions: 0 = same composition, 1 = nothing shared."""
    return 0.5 * np.abs(composition_fractions(generated)[:, None, :]
                        - composition_fractions(composition_matrix(table))[None, :, :]).sum(axis=2)


def property_match(table: pd.DataFrame, request: dict[str, float], scaler: PropertyScaler) -> np.ndarray:
    """(N,) 1 − RMS scaled property difference to the request, floored at 0."""
    target = scaler.transform([request[n] for n in scaler.names])
    values = scaler.transform(table[list(scaler.names)].to_numpy(np.float64))
    rms = np.sqrt(((values - target) ** 2).mean(axis=1))
    return np.clip(1.0 - rms, 0.0, 1.0)


def rank_candidates(table: pd.DataFrame, scaler: PropertyScaler, request: ScreeningRequest,
                    compositions: np.ndarray, latents: np.ndarray | None = None, latent_index=None, *,
                    k: int = NEIGHBOURS_PER_SAMPLE, rank_by: str = DEFAULT_RANKING) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples, candidates) frames for generated ``compositions`` (B, 112) and ``latents``.

    Every material of the requested working ion is a candidate, scored three ways: how well its
    real properties match the request (``property_match``), how close its composition is to a
    generated sample (``composition_similarity``), and their mean (``score``); ``rank_by`` picks
    the order. The default is the property match: on the held-out leave-one-out test the
    generated composition has not yet added retrieval quality over looking the properties up
    (checkpoints/screening/metrics.json, ``leave_one_out_top1``), so it is shown, not ranked by.
    ``latent_index`` (a :class:`battgen.afm.translate.LatentIndex`) adds each sample's nearest
    materials by latent.
    """
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by must be one of {', '.join(RANKINGS)}, got {rank_by!r}")
    compositions = np.atleast_2d(np.asarray(compositions, np.float64))
    pool_table = table[table["working_ion"] == request.working_ion].reset_index(drop=True)
    if pool_table.empty:
        raise ValueError(f"the table has no {request.working_ion} electrodes to rank")
    comp_dist = composition_distances(compositions, pool_table)  # (B, N)
    lat_dist = None
    if latent_index is not None and latents is not None:
        per_material = latent_index.distances(latents, ion=request.working_ion)
        lat_dist = per_material.reindex(pool_table["id"]).to_numpy(np.float64).T  # (B, N), NaN if unseen

    found = np.zeros(len(pool_table), int)
    sample_rows = []
    for b in range(len(compositions)):
        by_comp = np.argsort(comp_dist[b], kind="stable")[:k]
        hits = set(by_comp.tolist())
        row = {"sample": b, "formula_guess": formula_guess(compositions[b]),
               "top_elements": ", ".join(f"{s} {n:.1f}" for s, n in top_elements(compositions[b], k=6)),
               "predicted_atoms": float(compositions[b].sum()),
               "nearest_by_composition": pool_table["id"].iat[by_comp[0]],
               "composition_distance": float(comp_dist[b, by_comp[0]])}
        if lat_dist is not None:
            by_lat = np.argsort(np.nan_to_num(lat_dist[b], nan=np.inf), kind="stable")[:k]
            hits |= set(by_lat.tolist())
            row.update(nearest_by_latent=pool_table["id"].iat[by_lat[0]], latent_distance=float(lat_dist[b, by_lat[0]]))
        found[list(hits)] += 1
        sample_rows.append(row)
    samples = pd.DataFrame(sample_rows)

    candidates = pool_table.copy()
    candidates["composition_similarity"] = 1.0 - comp_dist.min(axis=0)
    candidates["closest_sample"] = comp_dist.argmin(axis=0)
    candidates["latent_distance"] = (np.nanmin(np.where(np.isnan(lat_dist), np.inf, lat_dist), axis=0)
                                     if lat_dist is not None else np.nan)
    candidates["property_match"] = property_match(candidates, request.properties, scaler)
    candidates["score"] = 0.5 * (candidates["composition_similarity"] + candidates["property_match"])
    for name, column in DELTA_COLUMNS.items():
        candidates[column] = candidates[name] - request.properties[name]
    candidates["found_by_samples"] = found
    candidates = candidates.sort_values([rank_by, "found_by_samples"], ascending=False, kind="stable")
    candidates.insert(0, "rank", np.arange(1, len(candidates) + 1))
    return samples, candidates.reset_index(drop=True)


@dataclass
class ScreeningResult:
    request: ScreeningRequest
    settings: dict
    descriptors: np.ndarray  # (B, H, W, 6) in [-1, 1]
    compositions: np.ndarray  # (B, 112)
    latents: np.ndarray  # (B, 4, h, w), unscaled
    samples: pd.DataFrame
    candidates: pd.DataFrame  # full rows of the table plus the scores
    wall_time_s: float  # generation alone (models loaded)
    ranking_time_s: float = 0.0

    def candidate_table(self) -> pd.DataFrame:
        """The columns a person compares: identity, real properties, scores."""
        return self.candidates[[c for c in CANDIDATE_COLUMNS if c in self.candidates.columns]]

    def candidates_csv(self) -> bytes:
        return self.candidate_table().to_csv(index=False).encode()

    def descriptors_npz(self) -> bytes:
        from battgen.afm.simulate import DESCRIPTOR_NAMES

        buffer = io.BytesIO()
        np.savez_compressed(buffer, descriptors=self.descriptors.astype(np.float32),
                            descriptor_names=np.array(DESCRIPTOR_NAMES), compositions=self.compositions.astype(np.float32),
                            latents=self.latents.astype(np.float32))
        return buffer.getvalue()

    def to_dict(self, top: int = 10) -> dict:
        from battgen.artifacts import to_json_safe

        return to_json_safe({
            "request": {"working_ion": self.request.working_ion, **self.request.properties},
            "outside_training_range": list(self.request.outside_range),
            "settings": self.settings,
            "wall_time_s": round(self.wall_time_s, 4),
            "ranking_time_s": round(self.ranking_time_s, 4),
            "samples": [{**row, "composition": composition_dict(self.compositions[i])}
                        for i, row in enumerate(self.samples.to_dict(orient="records"))],
            "candidates": self.candidate_table().head(top).to_dict(orient="records"),
        })

    def to_json(self, top: int = 10) -> str:
        return json.dumps(self.to_dict(top), indent=2)


def screen(pipeline, table: pd.DataFrame, scaler: PropertyScaler, request: ScreeningRequest, *,
           latent_index=None, num_candidates: int = DEFAULT_CANDIDATES, num_inference_steps: int = DEFAULT_STEPS,
           guidance_scale: float = DEFAULT_GUIDANCE, seed: int = 0, scheduler: str = DEFAULT_SAMPLER,
           k: int = NEIGHBOURS_PER_SAMPLE, rank_by: str = DEFAULT_RANKING,
           progress_callback: Callable[[int, int], None] | None = None) -> ScreeningResult:
    """Generate ``num_candidates`` samples for ``request`` and rank the table's materials against them."""
    import torch

    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    start = time.perf_counter()
    out = pipeline(request.properties, request.working_ion, num_candidates=num_candidates,
                   num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                   generator=generator, scheduler=scheduler, property_scaler=scaler,
                   progress_callback=progress_callback)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    samples, candidates = rank_candidates(table, scaler, request, out.compositions, out.latents, latent_index,
                                          k=k, rank_by=rank_by)
    settings = {"num_candidates": int(num_candidates), "num_inference_steps": int(num_inference_steps),
                "guidance_scale": float(guidance_scale), "seed": int(seed), "scheduler": scheduler,
                "neighbours_per_sample": int(k), "rank_by": rank_by}
    return ScreeningResult(request, settings, out.descriptors, out.compositions, out.latents, samples,
                           candidates, wall, time.perf_counter() - start)
