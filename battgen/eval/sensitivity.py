"""Sensitivity of the screening model's outputs to each of its seven conditions.

As published (Rajagopal et al., Batteries & Supercaps 2025): for one request, perturb each of the
six continuous conditions by +-0.05 in the scaled [0, 1] units (5 % of its range) with the others
fixed, generate from the same initial noise with the same sampler, and measure the L2 distance of
the generated outputs to those of the unperturbed request, averaged over + and -. For the working
ion, substitute every other ion and average. Normalised so the seven sensitivities sum to 1, they
rank which property steers generation most (published: gravimetric and volumetric capacity, then
gravimetric energy and voltage; volumetric energy, volume change and ion weaker).

One seed fixes one set of initial noises; repeating over seeds gives error bars. Distances are
measured on the decoded descriptors (what a scientist looks at) and on the latents (what the
U-Net produces, free of the translator's own sensitivity).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from battgen.data.properties import PROPERTY_BY_NAME
from diffusers.utils.torch_utils import randn_tensor

from battgen.models.screening import BattGenScreeningPipeline
from battgen.screening.defaults import DEFAULT_GUIDANCE

ION_CONDITION = "working_ion"
# Samplers whose output is a function of the initial noise alone (DDIM with eta = 0, DPM-Solver++).
DETERMINISTIC_SCHEDULERS = ("ddim", "dpm++")
DEFAULT_DELTA = 0.05


def _mean_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over candidates of the L2 norm of the per-candidate difference."""
    return float((a.float() - b.float()).flatten(1).norm(dim=1).mean())


def _normalise(raw: np.ndarray) -> np.ndarray:
    """Rows of (seeds, 7) distances scaled to sum to 1; a row of zeros gives NaN (undefined)."""
    total = raw.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = raw / total
    if (total == 0).any():
        warnings.warn("no condition changed the generated outputs for some seed; its sensitivities "
                      "are undefined (NaN): the model ignores its conditions", RuntimeWarning, stacklevel=3)
    return out


def condition_sensitivity(
    pipeline: BattGenScreeningPipeline,
    properties,
    working_ion: str,
    *,
    scaled: bool = True,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    num_candidates: int = 4,
    num_inference_steps: int = 20,
    guidance_scale: float = DEFAULT_GUIDANCE,
    scheduler: str | SchedulerMixin = "ddim",
    delta: float = DEFAULT_DELTA,
    progress_callback: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Normalised sensitivity of generated descriptors and latents to each condition.

    properties: the request's six properties, scaled to [0, 1] (or physical with ``scaled=False``).
        Perturbed values are not clipped, so a property within ``delta`` of 0 or 1 is probed
        slightly outside the training range.
    seeds: one generation seed per repetition; each seed's initial noise (and, for "ddpm", its
        step noise) is shared by the unperturbed and all perturbed requests.
    num_candidates: candidates per request and seed (distances are averaged over them).
    scheduler: a sampler name or instance; "ddim" and "dpm++" run each seed as one batch.
    progress_callback: ``callback(done, total)`` after each generation (one per seed when batched).

    Returns one row per condition (the six property names, then ``working_ion``) with columns
    ``condition``, ``label``, ``mean``, ``std`` (descriptor sensitivities over seeds; the means
    sum to 1), ``latent_mean``, ``latent_std`` (the same on latents), ``per_seed`` and
    ``latent_per_seed`` (normalised values, one per seed) and ``raw_distance`` /
    ``latent_raw_distance`` (unnormalised mean L2 distances per seed). ``df.attrs`` records the
    request and sampler settings.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be an integer >= 1, got {num_candidates!r}")
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    base = pipeline.scale_properties(properties, scaled=scaled)
    names = list(pipeline.config.property_names)
    ions = list(pipeline.config.working_ions)
    if working_ion not in ions:
        raise ValueError(f"unknown working ion {working_ion!r}; choose one of {', '.join(ions)}")
    others = [ion for ion in ions if ion != working_ion]

    requests: list[tuple[np.ndarray, str]] = [(base, working_ion)]  # the reference comes first
    for i in range(len(names)):
        for sign in (1.0, -1.0):
            props = base.copy()
            props[i] += sign * delta
            requests.append((props, working_ion))
    requests += [(base, ion) for ion in others]
    conditions = torch.as_tensor(np.stack([
        pipeline.condition_vector(props, ion, scaled=True) for props, ion in requests]))

    # A deterministic sampler lets every request of a seed run in one batch from tiled noise;
    # DDPM draws fresh noise per row and step, so there each request gets its own call with
    # the generator reseeded (identical initial and step noise).
    batched = isinstance(scheduler, str) and scheduler in DETERMINISTIC_SCHEDULERS
    total = len(seeds) if batched else len(seeds) * len(requests)
    done = 0
    sample_kw = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, scheduler=scheduler)
    n_prop = 2 * len(names)
    n_cond = len(names) + 1
    raw = np.zeros((len(seeds), n_cond))
    raw_latent = np.zeros((len(seeds), n_cond))
    for s, seed in enumerate(seeds):
        if batched:
            noise = randn_tensor((num_candidates, *pipeline.latent_shape),
                                 generator=torch.Generator().manual_seed(seed),
                                 device=pipeline._execution_device, dtype=pipeline.unet.dtype)
            z = pipeline.denoise(conditions.repeat_interleave(num_candidates, dim=0),
                                 latents=noise.repeat(len(requests), 1, 1, 1), **sample_kw)
            done += 1
            if progress_callback is not None:
                progress_callback(done, total)
        else:
            parts = []
            for row in conditions:
                parts.append(pipeline.denoise(row[None].repeat(num_candidates, 1),
                                              generator=torch.Generator().manual_seed(seed), **sample_kw))
                done += 1
                if progress_callback is not None:
                    progress_callback(done, total)
            z = torch.cat(parts)
        descriptors, _ = pipeline.decode_latents(z)
        descriptors = descriptors.reshape(len(requests), num_candidates, -1)
        z = z.reshape(len(requests), num_candidates, -1)
        dist = np.array([[_mean_l2(descriptors[r], descriptors[0]), _mean_l2(z[r], z[0])]
                         for r in range(1, len(requests))])
        # (+, -) pairs per property, then one row per substituted ion
        raw[s, :-1] = dist[:n_prop, 0].reshape(len(names), 2).mean(axis=1)
        raw_latent[s, :-1] = dist[:n_prop, 1].reshape(len(names), 2).mean(axis=1)
        raw[s, -1] = dist[n_prop:, 0].mean()
        raw_latent[s, -1] = dist[n_prop:, 1].mean()

    norm, norm_latent = _normalise(raw), _normalise(raw_latent)
    ddof = 1 if len(seeds) > 1 else 0
    condition_names = names + [ION_CONDITION]
    labels = [PROPERTY_BY_NAME[n].label if n in PROPERTY_BY_NAME else n for n in names] + ["Working ion"]
    df = pd.DataFrame({
        "condition": condition_names,
        "label": labels,
        "mean": norm.mean(axis=0),
        "std": norm.std(axis=0, ddof=ddof),
        "latent_mean": norm_latent.mean(axis=0),
        "latent_std": norm_latent.std(axis=0, ddof=ddof),
        "per_seed": [norm[:, j].tolist() for j in range(n_cond)],
        "latent_per_seed": [norm_latent[:, j].tolist() for j in range(n_cond)],
        "raw_distance": [raw[:, j].tolist() for j in range(n_cond)],
        "latent_raw_distance": [raw_latent[:, j].tolist() for j in range(n_cond)],
    })
    df.attrs.update({
        "properties_scaled": base.tolist(), "working_ion": working_ion, "seeds": seeds, "delta": delta,
        "num_candidates": num_candidates, "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "scheduler": scheduler if isinstance(scheduler, str) else type(scheduler).__name__,
    })
    return df
