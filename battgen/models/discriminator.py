"""Image-conditioned two-branch PatchGAN that judges the translator's descriptors (pix2pix style).

The published translator was trained adversarially with a patch discriminator of two
branches, one for the grey descriptors (height map, vdW spheres, atomic disks) and one for the
RGB type map, because the two look nothing alike: smooth grey-level relief versus flat
colour-coded discs whose colour is a chemical statement. Each branch sees the AFM stack
concatenated with the descriptors (pix2pix's conditional discriminator), so it can only call
an output real if it matches *this* stack, not merely looks like a plausible descriptor.

A branch is pix2pix's ``NLayerDiscriminator``: 4 x 4 convolutions, stride 2 for
``n_layers`` steps, then two stride-1 layers, LeakyReLU(0.2), one logit per patch. Each logit
sees a ``receptive_field`` -pixel patch (34 px for the default ``n_layers=2``: about half the
64-pixel grid, a cluster of a few atoms). Normalisation is spectral norm (default: bounded
Lipschitz constant, no batch statistics, so small CPU batches train stably) or instance norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from battgen.afm.loader import GREY_CHANNELS, STACK_HEIGHTS, TYPE_MAP_CHANNELS

NORMS = ("spectral", "instance")
GAN_LOSSES = ("hinge", "bce")


@dataclass
class PatchDiscriminatorOutput(BaseOutput):
    """Patch logits (B, 1, h, w) of the grey-descriptor and type-map branches."""

    grey: torch.Tensor
    type_map: torch.Tensor


def _branch(in_channels: int, base_channels: int, n_layers: int, norm: str) -> nn.Sequential:
    def conv(c_in: int, c_out: int, stride: int, normalise: bool) -> list[nn.Module]:
        layer = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)
        if norm == "spectral":
            return [spectral_norm(layer)]
        return [layer] + ([nn.InstanceNorm2d(c_out)] if normalise else [])

    layers: list[nn.Module] = conv(in_channels, base_channels, 2, False) + [nn.LeakyReLU(0.2, inplace=True)]
    c = base_channels
    for i in range(1, n_layers + 1):
        c_out = base_channels * min(2 ** i, 8)
        layers += conv(c, c_out, 2 if i < n_layers else 1, True) + [nn.LeakyReLU(0.2, inplace=True)]
        c = c_out
    layers += conv(c, 1, 1, False)
    return nn.Sequential(*layers)


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """Two conditional PatchGAN branches: (stack, grey descriptors) and (stack, type map)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        condition_channels: int = STACK_HEIGHTS,
        grey_channels: int = 3,
        type_map_channels: int = 3,
        base_channels: int = 32,
        n_layers: int = 2,
        norm: str = "spectral",
        loss: str = "hinge",
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if loss not in GAN_LOSSES:
            raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}")
        if n_layers < 1 or base_channels < 1:
            raise ValueError("n_layers and base_channels must be at least 1")
        self.grey_branch = _branch(condition_channels + grey_channels, base_channels, n_layers, norm)
        self.type_map_branch = _branch(condition_channels + type_map_channels, base_channels, n_layers, norm)

    @property
    def receptive_field(self) -> int:
        """Side in pixels of the input patch one logit sees."""
        # Backwards through the layers: kernel 4; n_layers - 1 stride-2 convs after the first.
        rf = 1
        strides = [2] + [2] * (self.config.n_layers - 1) + [1, 1]
        for s in reversed(strides):
            rf = (rf - 1) * s + 4
        return rf

    def min_grid(self) -> int:
        """Smallest square grid that still gives at least one patch logit."""
        size = 1
        while True:
            s = size
            for _ in range(self.config.n_layers):
                s = (s + 2 - 4) // 2 + 1
            s = (s + 2 - 4) + 1  # stride-1 conv
            s = (s + 2 - 4) + 1  # output conv
            if s >= 1:
                return size
            size += 1

    def forward(self, stack: torch.Tensor, descriptors: torch.Tensor,
                return_dict: bool = True) -> PatchDiscriminatorOutput | tuple:
        """stack (B, 10, H, W), descriptors (B, 6, H, W) -> patch logits of both branches."""
        if stack.shape[0] != descriptors.shape[0] or stack.shape[2:] != descriptors.shape[2:]:
            raise ValueError(f"stack {tuple(stack.shape)} and descriptors {tuple(descriptors.shape)} "
                             "must share batch size and grid")
        if min(stack.shape[2:]) < self.min_grid():
            raise ValueError(f"a {self.config.n_layers}-layer discriminator needs a grid of at least "
                             f"{self.min_grid()} pixels, got {tuple(stack.shape[2:])}")
        grey = self.grey_branch(torch.cat([stack, descriptors[:, GREY_CHANNELS]], dim=1))
        type_map = self.type_map_branch(torch.cat([stack, descriptors[:, TYPE_MAP_CHANNELS]], dim=1))
        out = PatchDiscriminatorOutput(grey=grey, type_map=type_map)
        return out if return_dict else out.to_tuple()


def _weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights.to(per_sample.dtype)).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, loss: str = "hinge",
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Discriminator objective on one branch's patch logits (B, 1, h, w); ``weights`` (B,) per sample.

    hinge: E[relu(1 − D(real))] + E[relu(1 + D(fake))]; bce: the vanilla GAN's cross-entropy.
    """
    if loss == "hinge":
        real = F.relu(1.0 - real_logits)
        fake = F.relu(1.0 + fake_logits)
    elif loss == "bce":
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits), reduction="none")
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits), reduction="none")
    else:
        raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}")
    return _weighted_mean(real.flatten(1).mean(1), weights) + _weighted_mean(fake.flatten(1).mean(1), weights)


def generator_adversarial_loss(fake_logits: torch.Tensor, loss: str = "hinge",
                               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Generator's adversarial term on one branch: hinge −E[D(fake)]; bce non-saturating −log σ(D(fake))."""
    if loss == "hinge":
        per = -fake_logits
    elif loss == "bce":
        per = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits), reduction="none")
    else:
        raise ValueError(f"loss must be one of {GAN_LOSSES}, got {loss!r}")
    return _weighted_mean(per.flatten(1).mean(1), weights)
