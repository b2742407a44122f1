"""The screening model's training choices, torch-free so the CLI can offer them without importing torch.

Each is recorded in the checkpoint: the prediction type and schedule in ``scheduler/``, the
condition normalisation and the sampler's clean-latent bound in ``model_index.json``, and all of
them in ``metadata.json``.
"""

from __future__ import annotations

# What the U-Net outputs (diffusers' ``prediction_type``).
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
# How the condition enters the U-Net: added to the time embedding, or as tokens via cross-attention.
EMBEDDINGS = ("projection", "tokens")
# Training targets: every view, one canonical view per material, or the per-material mean latent.
TARGETS = ("all", "canonical", "mean")
# How the six min-max scaled properties enter the condition vector.
CONDITION_NORMS = ("minmax", "zscore")
# Which metric picks the shipped epoch.
SELECT_BY = ("val_loss", "val_composition_r2")
