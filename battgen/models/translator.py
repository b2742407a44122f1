"""AFM translation model: a KL-regularised autoencoder from AFM stacks to structure descriptors.

BattGen's translation network (Rajagopal et al., Batteries & Supercaps 2025) reads a stack of
frequency-shift maps at 10 tip heights and paints the descriptors a chemist reads structure
from: height map, van der Waals spheres, atomic disks and the RGB element-class type map. Its
latent space is also where the screening diffusion model works, so the encoder's posterior
mean of every training view is saved (``latents.npz``) and the config carries the
``scaling_factor`` that makes those latents unit-variance (as Stable Diffusion does).

The network is built from diffusers' ``AutoencoderKL`` pieces (:class:`Encoder`,
:class:`Decoder`, :class:`DiagonalGaussianDistribution`): residual down/up blocks and a
mid-block with self-attention, so that the model is the published kind (conv + residual +
attention) and stays loadable with ``AFMTranslator.from_pretrained(dir)`` like every other
BattGen checkpoint. Unlike an image autoencoder, input and output differ: 10 stack channels in,
6 descriptor channels out (tanh, since descriptors live in [−1, 1]).

Shapes (channels first, as torch expects; :func:`channels_first` converts dataset arrays):

* stack: (B, 10, H, W) in [−1, 1], channel 0 = farthest tip height;
* latent: (B, 4, H/4, W/4) with the default three blocks (two 2x downsamplings) — e.g.
  (B, 4, 16, 16) for the shipped 64 × 64 grid, (B, 4, 32, 32) for 128 × 128;
* descriptors: (B, 6, H, W) in [−1, 1], channels ``descriptor_names``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder, DiagonalGaussianDistribution, Encoder
from diffusers.utils import BaseOutput
from torch import nn

from battgen.afm.loader import STACK_HEIGHTS
from battgen.afm.simulate import DESCRIPTOR_NAMES

DEFAULT_BLOCK_OUT_CHANNELS = (32, 64, 128)


@dataclass
class AFMTranslatorOutput(BaseOutput):
    """What :meth:`AFMTranslator.forward` returns.

    descriptors: (B, 6, H, W) in [−1, 1]. posterior: the encoder's diagonal Gaussian over the
    latent (``.mean``, ``.logvar``, ``.kl()``). z: the latent that was decoded (a posterior
    sample when sampling, else its mean), unscaled.
    """

    descriptors: torch.Tensor
    posterior: DiagonalGaussianDistribution
    z: torch.Tensor


def channels_first(array, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, C) or (N, H, W, C) array/tensor -> float32 (N, C, H, W) tensor on ``device``."""
    t = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"expected (H, W, C) or (N, H, W, C) maps, got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).to(device=device, dtype=torch.float32).contiguous()


def channels_last(tensor: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor -> (N, H, W, C) float32 numpy array (the dataset's layout)."""
    return tensor.detach().permute(0, 2, 3, 1).float().cpu().numpy()


OUTPUT_ACTIVATIONS: tuple[str, ...] = ("tanh", "clamp", "clamp-type-map")


def clamped_channels(output_activation: str, descriptor_names: Sequence[str]) -> list[bool]:
    """Which output channels ``output_activation`` clamps (True) rather than passes through tanh."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    if output_activation == "clamp-type-map":
        return [str(name).startswith("type_") for name in descriptor_names]
    return [output_activation == "clamp"] * len(descriptor_names)


class AFMTranslator(ModelMixin, ConfigMixin):
    """VAE: AFM stack (10 heights) -> latent 4 x H/4 x W/4 -> 6 descriptor maps.

    Encoder: conv_in -> ``len(block_out_channels)`` residual down blocks (``layers_per_block``
    ResNet blocks each, 2x downsampling between blocks) -> mid-block (ResNet, self-attention,
    ResNet) -> GroupNorm/SiLU/conv to mean and log-variance -> 1x1 ``quant_conv``. Decoder: the
    mirror image (``post_quant_conv``, mid-block, up blocks of ``layers_per_block + 1`` ResNet
    blocks) -> conv to 6 channels -> tanh, or (``output_activation="clamp"``) a clamp to [−1, 1]
    whose gradient passes straight through.

    Why the clamp: a tanh channel whose target is −1 on almost every pixel (the type map's green,
    gas-phase atoms on 1 % of pixels) is driven deep into saturation early, its gradient vanishes,
    and it never lights up again — the shipped tanh models predict exactly −1 there everywhere.
    The straight-through clamp gives the same [−1, 1] output with a gradient that never fades.
    ``"clamp-type-map"`` clamps the three type-map channels only and keeps tanh on the grey maps,
    so a tanh-trained decoder can be fine-tuned for the type map without relearning the others.

    ``scaling_factor`` is 1/std of the train-split latent means, set by the trainer after
    training (1.0 in a fresh model). The diffusion model works on ``scale_latents(mu)``;
    decode its samples with ``decode(unscale_latents(x))``.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        stack_channels: int = STACK_HEIGHTS,
        descriptor_channels: int = len(DESCRIPTOR_NAMES),
        latent_channels: int = 4,
        block_out_channels: Sequence[int] = DEFAULT_BLOCK_OUT_CHANNELS,
        layers_per_block: int = 1,
        norm_num_groups: int = 32,
        mid_block_add_attention: bool = True,
        sample_size: int = 64,
        scaling_factor: float = 1.0,
        descriptor_names: Sequence[str] = DESCRIPTOR_NAMES,
        stack_order: str = "index 0 = farthest tip height",
        output_activation: str = "tanh",
    ):
        super().__init__()
        block_out_channels = tuple(int(c) for c in block_out_channels)
        if len(descriptor_names) != descriptor_channels:
            raise ValueError(f"descriptor_names has {len(descriptor_names)} entries for {descriptor_channels} channels")
        if not block_out_channels or any(c % norm_num_groups for c in block_out_channels):
            raise ValueError(f"every block_out_channels entry must be a multiple of norm_num_groups "
                             f"({norm_num_groups}), got {block_out_channels}")
        if layers_per_block < 1 or latent_channels < 1:
            raise ValueError("layers_per_block and latent_channels must be at least 1")
        if not scaling_factor > 0:
            raise ValueError(f"scaling_factor must be positive, got {scaling_factor}")
        clamped = clamped_channels(output_activation, descriptor_names)
        n = len(block_out_channels)
        self.encoder = Encoder(
            in_channels=stack_channels,
            out_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            double_z=True,
            mid_block_add_attention=mid_block_add_attention,
        )
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=descriptor_channels,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            mid_block_add_attention=mid_block_add_attention,
        )
        # 1x1 convs as in AutoencoderKL: they let the latent basis rotate independently of the
        # last encoder conv, which keeps the checkpoint layout of the diffusers VAE family.
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        # Not persistent: it follows from the config, and checkpoints saved before it existed still load.
        self.register_buffer("_clamp_mask", torch.tensor(clamped).view(1, -1, 1, 1), persistent=False)

    # ------------------------------------------------------------------ shapes
    @property
    def downsample_factor(self) -> int:
        """Grid pixels per latent pixel along each side (4 with three blocks)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, h, w) of the latent of an ``height`` x ``width`` stack."""
        f = self.downsample_factor
        return self.config.latent_channels, height // f, width // f

    def _check_stack(self, stack: torch.Tensor) -> None:
        if stack.ndim != 4 or stack.shape[1] != self.config.stack_channels:
            raise ValueError(f"stack must be (B, {self.config.stack_channels}, H, W) channels-first, "
                             f"got {tuple(stack.shape)} (use channels_first() on dataset arrays)")
        f = self.downsample_factor
        if stack.shape[2] % f or stack.shape[3] % f:
            raise ValueError(f"stack height and width must be multiples of {f}, got {tuple(stack.shape[2:])}")

    # ------------------------------------------------------------------ network
    def encode(self, stack: torch.Tensor) -> DiagonalGaussianDistribution:
        """(B, 10, H, W) stacks -> posterior over (B, 4, H/4, W/4) latents."""
        self._check_stack(stack)
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(stack)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents (B, 4, h, w) -> descriptors (B, 6, 4h, 4w) in [−1, 1]."""
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must be (B, {self.config.latent_channels}, h, w), got {tuple(z.shape)}")
        raw = self.decoder(self.post_quant_conv(z))
        if self.config.output_activation == "tanh":
            return torch.tanh(raw)
        clamped = raw + (raw.clamp(-1.0, 1.0) - raw).detach()
        if self.config.output_activation == "clamp":
            return clamped
        return torch.where(self._clamp_mask.to(raw.device), clamped, torch.tanh(raw))

    def forward(
        self,
        stack: torch.Tensor,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> AFMTranslatorOutput | tuple:
        """Encode and decode. ``sample_posterior`` defaults to ``self.training`` (mean in eval)."""
        posterior = self.encode(stack)
        if sample_posterior is None:
            sample_posterior = self.training
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        out = AFMTranslatorOutput(descriptors=self.decode(z), posterior=posterior, z=z)
        return out if return_dict else out.to_tuple()

    # ------------------------------------------------------------------ latent scaling
    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents -> the unit-variance space the diffusion model works in."""
        return z * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.config.scaling_factor

    # ------------------------------------------------------------------ convenience
    @torch.no_grad()
    def latent_means(self, stacks, batch_size: int = 64) -> np.ndarray:
        """Dataset-layout stacks (N, H, W, 10) -> posterior means (N, 4, h, w), unscaled, without decoding."""
        was_training = self.training
        self.eval()
        try:
            return np.concatenate([self.encode(channels_first(stacks[start:start + batch_size], self.device))
                                   .mode().float().cpu().numpy() for start in range(0, len(stacks), batch_size)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def translate(self, stacks, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Dataset-layout stacks (H, W, 10) or (N, H, W, 10) -> (descriptors (N, H, W, 6), mu (N, 4, h, w)).

        Uses the posterior mean, so the same stack always gives the same descriptors. The
        returned ``mu`` is unscaled (multiply by ``config.scaling_factor`` for the diffusion space).
        """
        was_training = self.training
        self.eval()
        x = np.asarray(stacks) if not isinstance(stacks, torch.Tensor) else stacks
        if x.ndim == 3:
            x = x[None]
        outs, mus = [], []
        try:
            for start in range(0, len(x), batch_size):
                posterior = self.encode(channels_first(x[start:start + batch_size], self.device))
                mu = posterior.mode()
                outs.append(channels_last(self.decode(mu)))
                mus.append(mu.float().cpu().numpy())
        finally:
            self.train(was_training)
        return np.concatenate(outs), np.concatenate(mus)


def kl_per_element(posterior: DiagonalGaussianDistribution) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample, averaged over latent elements: (B,).

    Averaged rather than summed so the weight beta means the same at 64 and 128 pixel grids.
    """
    return posterior.kl() / posterior.mean[0].numel()
