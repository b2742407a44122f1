"""Screening defaults, torch-free: the pipeline, the CLI, the page and the evaluation all read them here.

Change a default in this file only; nothing else spells these values.
"""

from __future__ import annotations

# Diffusion samplers the pipeline can swap in (diffusers schedulers built from the trained one's config).
SAMPLERS = ("ddpm", "ddim", "dpm++")
# DPM-Solver++ at 10 steps: 60-80x faster than DDPM-1000 at equal composition error and
# descriptor SSIM within 0.02 (benchmarks/bench_screening.py).
DEFAULT_SAMPLER = "dpm++"
DEFAULT_STEPS = 10
# Classifier-free guidance scale, chosen on the validation split by the guidance sweep of the
# shipped model (`eval guidance-sweep --split val`, checkpoints/screening/metrics.json): composition
# R² 0.250 at 2 against 0.241 at 3, 0.231 at 1, 0.209 at 5 and 0.121 at 7.5 (200 materials).
DEFAULT_GUIDANCE = 2.0
DEFAULT_CANDIDATES = 4
DEFAULT_SEED = 0
# How candidates are ordered: by the match of their real properties to the request. The
# generated composition is shown beside it but does not rank until it beats the property lookup
# on the held-out leave-one-out test (checkpoints/screening/metrics.json, leave_one_out_top1:
# top candidate 0.14 V off for the lookup, 0.33 V for the property/composition mean score).
RANKINGS = ("property_match", "score", "composition_similarity")
DEFAULT_RANKING = RANKINGS[0]
