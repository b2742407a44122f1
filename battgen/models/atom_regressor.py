"""Atom regressor: translator latent -> 112-long atom-count vector (which elements, how many).

BattGen's third network (Rajagopal et al., Batteries & Supercaps 2025): conv + dense layers on
the translator's latent, softplus output, MSE loss. It turns a latent — of a measured AFM stack
or one the screening diffusion model generated — into a composition a chemist can read.

Input is the *scaled* latent, ``mu * translator.config.scaling_factor`` (unit variance), i.e.
exactly the space the diffusion model samples in, so its samples go straight in; the factor
is kept in ``latent_scaling_factor`` for callers holding raw posterior means. Outputs are atom
counts indexed by atomic number (H = index 0), ``softplus(.) * count_scale``: softplus keeps
counts non-negative without the dead zero-gradient region of a ReLU, and ``count_scale`` (the
largest count in the training split) lets the network work on numbers of order one.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from battgen.data.composition import N_ELEMENTS

# Spatial size the conv trunk pools to: the dense head then has a fixed width whatever the
# latent grid (16 x 16 for 64-pixel stacks, 32 x 32 for 128).
POOLED_SIZE = 4


class AtomRegressor(ModelMixin, ConfigMixin):
    """Conv trunk (3x3 convs, SiLU, stride 2 after the first) -> adaptive pool 4x4 -> dense -> softplus.

    forward(latents (B, latent_channels, h, w), scaled) -> atom counts (B, n_outputs).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        latent_size: int = 16,
        conv_channels: Sequence[int] = (64, 128, 128),
        hidden_units: int = 256,
        dropout: float = 0.1,
        n_outputs: int = N_ELEMENTS,
        count_scale: float = 1.0,
        latent_scaling_factor: float = 1.0,
        output_names: Sequence[str] | None = None,
    ):
        super().__init__()
        if not conv_channels or min(conv_channels) < 1 or hidden_units < 1:
            raise ValueError("conv_channels and hidden_units must be positive")
        if not count_scale > 0 or not latent_scaling_factor > 0:
            raise ValueError("count_scale and latent_scaling_factor must be positive")
        if output_names is not None and len(output_names) != n_outputs:
            raise ValueError(f"output_names has {len(output_names)} entries for {n_outputs} outputs")
        layers: list[nn.Module] = []
        c = latent_channels
        for i, c_out in enumerate(conv_channels):
            layers += [nn.Conv2d(c, c_out, 3, stride=1 if i == 0 else 2, padding=1), nn.SiLU()]
            c = c_out
        layers.append(nn.AdaptiveAvgPool2d(POOLED_SIZE))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * POOLED_SIZE * POOLED_SIZE, hidden_units), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden_units, hidden_units), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden_units, n_outputs),
        )

    @torch.no_grad()
    def init_output_bias(self, mean_scaled_counts: torch.Tensor, floor: float = 1e-3) -> None:
        """Start every output at its training-mean count (scaled), before any step is taken.

        Most of the 112 entries are zero in every sample, so from a zero bias the first Adam
        steps drive all pre-activations far negative, where softplus is flat: the network
        then predicts 0 for everything and its gradients vanish (measured: the loss froze at
        the all-zeros value from the second epoch). Starting at the mean keeps each output
        where its gradient is alive; ``floor`` bounds the bias for never-seen elements.
        """
        mean = torch.as_tensor(mean_scaled_counts, dtype=torch.float32).clamp_min(floor)
        last = self.head[-1]
        if mean.shape != (last.out_features,):
            raise ValueError(f"need {last.out_features} means, got {tuple(mean.shape)}")
        last.bias.copy_((torch.expm1(mean)).log().to(last.bias))  # inverse softplus
        last.weight.mul_(0.1)

    def forward_scaled(self, latents: torch.Tensor) -> torch.Tensor:
        """Counts divided by ``count_scale`` (what the loss is computed on)."""
        if latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must be (B, {self.config.latent_channels}, h, w), got {tuple(latents.shape)}")
        return F.softplus(self.head(self.trunk(latents)))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> non-negative atom counts (B, n_outputs)."""
        return self.forward_scaled(latents) * self.config.count_scale

    @torch.no_grad()
    def predict_from_mu(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw (unscaled) posterior means of the translator -> atom counts."""
        return self(mu * self.config.latent_scaling_factor)
