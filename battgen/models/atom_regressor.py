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

Two switches came out of issue 16's ablation (``metrics.json`` of the checkpoint holds the table):
``pooling="global"`` averages the conv trunk over the whole latent map before the dense layers,
so a scan offset by whole latent pixels (4 stack pixels) reads the same; ``output="fractions"``
predicts the composition as element fractions (softmax) times a total atom count (softplus)
instead of 112 independent counts.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from battgen.data.composition import N_ELEMENTS
from battgen.models.atom_regressor_options import OUTPUTS, POOLINGS

# Spatial size the conv trunk pools to: the dense head then has a fixed width whatever the
# latent grid (16 x 16 for 64-pixel stacks, 32 x 32 for 128).
POOLED_SIZE = 4


class AtomRegressor(ModelMixin, ConfigMixin):
    """Conv trunk (3x3 convs, SiLU, stride 2 after the first) -> pool -> dense -> counts.

    pooling "flatten": adaptive average pool to 4x4, flattened (where things are is kept);
    "global": mean over the whole map. output "counts": softplus per element; "fractions":
    softmax over elements times a softplus total.
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
        pooling: str = "flatten",
        output: str = "counts",
    ):
        super().__init__()
        if not conv_channels or min(conv_channels) < 1 or hidden_units < 1:
            raise ValueError("conv_channels and hidden_units must be positive")
        if not count_scale > 0 or not latent_scaling_factor > 0:
            raise ValueError("count_scale and latent_scaling_factor must be positive")
        if pooling not in POOLINGS or output not in OUTPUTS:
            raise ValueError(f"pooling must be one of {POOLINGS} and output one of {OUTPUTS}, "
                             f"got {pooling!r}, {output!r}")
        if output_names is not None and len(output_names) != n_outputs:
            raise ValueError(f"output_names has {len(output_names)} entries for {n_outputs} outputs")
        layers: list[nn.Module] = []
        c = latent_channels
        for i, c_out in enumerate(conv_channels):
            layers += [nn.Conv2d(c, c_out, 3, stride=1 if i == 0 else 2, padding=1), nn.SiLU()]
            c = c_out
        pooled = POOLED_SIZE if pooling == "flatten" else 1
        layers.append(nn.AdaptiveAvgPool2d(pooled))
        self.trunk = nn.Sequential(*layers)
        # "fractions": one extra output, the total atom count, after the element logits.
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * pooled * pooled, hidden_units), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden_units, hidden_units), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden_units, n_outputs + (output == "fractions")),
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
        if mean.shape != (self.config.n_outputs,):
            raise ValueError(f"need {self.config.n_outputs} means, got {tuple(mean.shape)}")
        if self.config.output == "fractions":
            # Softmax of log-fractions is the mean fraction; the total starts at the mean total.
            total = mean.sum().reshape(1)
            bias = torch.cat([(mean / total).log(), torch.expm1(total).log()])
        else:
            bias = torch.expm1(mean).log()  # inverse softplus
        last.bias.copy_(bias.to(last.bias))
        last.weight.mul_(0.1)

    def forward_scaled(self, latents: torch.Tensor) -> torch.Tensor:
        """Counts divided by ``count_scale`` (what the loss is computed on)."""
        fractions, total = self.composition_parts(latents)
        return fractions * total[:, None] if total is not None else fractions

    def composition_parts(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """output "fractions": (element fractions summing to 1, total count / count_scale);
        output "counts": (counts / count_scale, None)."""
        if latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must be (B, {self.config.latent_channels}, h, w), got {tuple(latents.shape)}")
        out = self.head(self.trunk(latents))
        if self.config.output == "fractions":
            return out[:, :-1].softmax(1), F.softplus(out[:, -1])
        return F.softplus(out), None

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> non-negative atom counts (B, n_outputs)."""
        return self.forward_scaled(latents) * self.config.count_scale

    @torch.no_grad()
    def predict_from_mu(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw (unscaled) posterior means of the translator -> atom counts."""
        return self(mu * self.config.latent_scaling_factor)
