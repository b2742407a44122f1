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

Equal-sized steps. In min-max units a ±0.05 step is tiny next to an ion swap (two same-ion
materials differ by 0.36 in condition space, an ion swap by 1.41), and the properties' spreads
differ too, so the published protocol ranks the step sizes as much as the model. Given ``steps``
(physical units, by default one within-ion standard deviation of each property:
:func:`within_ion_steps`), every property moves by what separates typical materials of the ion.
The six property sensitivities are normalised to sum to 1 among themselves; the ion swap is a
different kind of change and is reported on the same scale but outside that sum. Every distance
is also shown relative to the *noise effect*: the distance between two seeds' outputs for the
same request, which says whether a knob moves the output at all compared with re-rolling it.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from diffusers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from battgen.data.properties import PROPERTY_BY_NAME

from battgen.models.screening import BattGenScreeningPipeline
from battgen.screening.defaults import DEFAULT_GUIDANCE

ION_CONDITION = "working_ion"
# The published ranking (1 = strongest), for the table beside ours.
PUBLISHED_RANK = {"capacity_grav": 1, "capacity_vol": 2, "energy_grav": 3, "average_voltage": 4,
                  "energy_vol": 5, "max_delta_volume": 6, ION_CONDITION: 7}
# Samplers whose output is a function of the initial noise alone (DDIM with eta = 0, DPM-Solver++).
DETERMINISTIC_SCHEDULERS = ("ddim", "dpm++")
DEFAULT_DELTA = 0.05


def _mean_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over candidates of the L2 norm of the per-candidate difference."""
    return float((a.float() - b.float()).flatten(1).norm(dim=1).mean())


def within_ion_steps(table: pd.DataFrame, working_ion: str) -> dict[str, float]:
    """One standard deviation of each property over the table's electrodes of ``working_ion`` (physical units)."""
    from battgen.data.properties import PROPERTY_NAMES

    rows = table[table["working_ion"] == working_ion]
    if len(rows) < 2:
        raise ValueError(f"the table has {len(rows)} {working_ion} electrodes; a spread needs at least two")
    steps = {name: float(np.nanstd(rows[name].to_numpy(np.float64), ddof=1)) for name in PROPERTY_NAMES}
    flat = [name for name, value in steps.items() if not value > 0]
    if flat:
        raise ValueError(f"every {working_ion} electrode has the same {', '.join(flat)}; no step to take")
    return steps


def _normalise(raw: np.ndarray) -> np.ndarray:
    """Rows of (seeds, 7) distances divided by the sum of the six property distances; zero sums give NaN."""
    total = raw[:, :-1].sum(axis=1, keepdims=True)
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
    steps: dict[str, float] | None = None,
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
    delta: the published step, in scaled [0, 1] units, used when ``steps`` is None.
    steps: ± step per property in physical units (e.g. :func:`within_ion_steps`); needs
        physical ``properties`` (``scaled=False``).
    progress_callback: ``callback(done, total)`` after each generation (one per seed when batched).

    Returns one row per condition (the six property names, then ``working_ion``) with columns
    ``condition``, ``label``, ``mean``, ``std`` (descriptor sensitivities over seeds; the six
    property means sum to 1, the ion row is on the same scale), ``relative_to_noise`` (raw
    distance over the seed-to-seed distance of the same request; NaN with one seed),
    ``published_rank``, ``latent_mean``, ``latent_std`` (the same on latents), ``per_seed`` and
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
    names = list(pipeline.config.property_names)
    if steps is not None:
        if scaled:
            raise ValueError("property steps are physical: give the request in physical units too")
        missing = [n for n in names if not (n in steps and np.isfinite(steps[n]) and steps[n] > 0)]
        if missing:
            raise ValueError(f"need a positive step for {', '.join(missing)}")
        physical = pipeline.scale_properties(properties, scaled=True)  # validated, still physical
    base = pipeline.scale_properties(properties, scaled=scaled)
    ions = list(pipeline.config.working_ions)
    if working_ion not in ions:
        raise ValueError(f"unknown working ion {working_ion!r}; choose one of {', '.join(ions)}")
    others = [ion for ion in ions if ion != working_ion]

    requests: list[tuple[np.ndarray, str]] = [(base, working_ion)]  # the reference comes first
    for i, name in enumerate(names):
        for sign in (1.0, -1.0):
            if steps is None:
                props = base.copy()
                props[i] += sign * delta
            else:
                moved = physical.astype(np.float64).copy()
                moved[i] += sign * steps[name]
                props = pipeline.scale_properties(moved, scaled=False)
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
    references = []  # each seed's output for the unperturbed request, for the noise effect
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
        references.append(descriptors[0])
        dist = np.array([[_mean_l2(descriptors[r], descriptors[0]), _mean_l2(z[r], z[0])]
                         for r in range(1, len(requests))])
        # (+, -) pairs per property, then one row per substituted ion
        raw[s, :-1] = dist[:n_prop, 0].reshape(len(names), 2).mean(axis=1)
        raw_latent[s, :-1] = dist[:n_prop, 1].reshape(len(names), 2).mean(axis=1)
        raw[s, -1] = dist[n_prop:, 0].mean()
        raw_latent[s, -1] = dist[n_prop:, 1].mean()

    noise = (np.mean([_mean_l2(references[s], references[s + 1]) for s in range(len(seeds) - 1)])
             if len(seeds) > 1 else np.nan)
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
        "relative_to_noise": raw.mean(axis=0) / noise if noise and np.isfinite(noise) else np.nan,
        "published_rank": [PUBLISHED_RANK.get(n) for n in condition_names],
        "per_seed": [norm[:, j].tolist() for j in range(n_cond)],
        "latent_per_seed": [norm_latent[:, j].tolist() for j in range(n_cond)],
        "raw_distance": [raw[:, j].tolist() for j in range(n_cond)],
        "latent_raw_distance": [raw_latent[:, j].tolist() for j in range(n_cond)],
    })
    df.attrs.update({
        "properties_scaled": base.tolist(), "working_ion": working_ion, "seeds": seeds,
        "delta": None if steps is not None else delta,
        "steps": None if steps is None else {n: float(steps[n]) for n in names},
        "noise_distance": None if not np.isfinite(noise) else float(noise),
        "num_candidates": num_candidates, "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "scheduler": scheduler if isinstance(scheduler, str) else type(scheduler).__name__,
    })
    return df
