"""Property-regularised VAE for SEI lattices (Rajagopal et al., Adv. Energy Mater. 2023).

Three model kinds share one network, :class:`SEIPRVAE`, switched by two config flags:

=========  ==============  ===============  ======================================
kind       ``regressor``   ``condition_dim``  what it is
=========  ==============  ===============  ======================================
``vae``    False           0                plain VAE on the final SEI lattice
``prvae``  True            0                VAE + property regressor on mu
``cprvae`` True            15               prVAE whose decoder also sees barriers
=========  ==============  ===============  ======================================

One class (rather than three) keeps ``SEIPRVAE.from_pretrained(dir)`` working for every
checkpoint: the flags travel in ``config.json`` and :attr:`SEIPRVAE.kind` reads them back.
Use :func:`build_sei_model` to create a model of a given kind.

Everything a caller needs to interpret outputs in physical units lives in the config
(species names, property names and their train-split min/max, barrier names and sampling
ranges), so a saved checkpoint is self-describing for the Streamlit app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from battgen.sei.observables import PROPERTY_NAMES
from battgen.sei.species import SYMBOLS

# Species symbols of the kinetic Monte Carlo lattice (index = code); one source of truth
# with the simulator and the figures ("C*" is the attached organic cluster, ATT).
SPECIES_NAMES: tuple[str, ...] = tuple(SYMBOLS)

MODEL_KINDS: dict[str, dict] = {
    "vae": {"regressor": False, "condition_dim": 0},
    "prvae": {"regressor": True, "condition_dim": 0},
    "cprvae": {"regressor": True, "condition_dim": 15},
}


@dataclass
class SEIPRVAEOutput(BaseOutput):
    """What :meth:`SEIPRVAE.forward` returns.

    logits: (B, num_classes, H, W) unnormalised species scores.
    mu, logvar: (B, latent_dim) posterior parameters.
    z: (B, latent_dim) the latent that was decoded (a sample in training, mu in eval).
    properties: (B, P) predicted properties in physical units, None without a regressor.
    properties_scaled: the same in the [0, 1] train-split min-max scale the loss uses.
    """

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    properties: torch.Tensor | None = None
    properties_scaled: torch.Tensor | None = None


def lattice_to_onehot(lattice, num_classes: int = len(SPECIES_NAMES)) -> torch.Tensor:
    """Species-code lattice(s) -> float one-hot tensor (B, num_classes, H, W).

    Accepts a numpy array or tensor of shape (H, W) or (B, H, W) with integer codes;
    a tensor stays on its device.
    """
    t = torch.as_tensor(np.asarray(lattice) if not isinstance(lattice, torch.Tensor) else lattice)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(f"expected a lattice of shape (H, W) or (B, H, W), got {tuple(t.shape)}")
    if t.is_floating_point():
        raise ValueError("lattice must hold integer species codes")
    t = t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"species codes must lie in [0, {num_classes - 1}]")
    return F.one_hot(t, num_classes).permute(0, 3, 1, 2).float()


def logits_to_lattice(logits: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) uint8 species codes (most probable class per site)."""
    return logits.argmax(dim=1).to(torch.uint8)


def _conv_out(size: int, stride: int) -> int:
    # kernel 3, padding 1: the spatial size a Conv2d produces
    return (size - 1) // stride + 1


class SEIPRVAE(ModelMixin, ConfigMixin):
    """Convolutional (property-regularised, optionally conditional) VAE on SEI lattices.

    Encoder: Conv2D 32/64/128 (kernel 3, strides 2/2/1, BatchNorm, ReLU) -> dense 100 ->
    mu, log sigma^2 (latent 50). Decoder: [z, scaled barriers] -> dense 100 -> dense ->
    reshape (128, 13, 13) -> ConvTranspose 128/64/32 (strides 1/2/2, BatchNorm, ReLU) ->
    Conv 3x3 to one logit channel per species. Regressor: dense 200 -> dense 200 -> P on mu.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        lattice_size: int = 50,
        species_names: Sequence[str] = SPECIES_NAMES,
        latent_dim: int = 50,
        hidden_dim: int = 100,
        encoder_channels: Sequence[int] = (32, 64, 128),
        encoder_strides: Sequence[int] = (2, 2, 1),
        regressor: bool = True,
        regressor_hidden: int = 200,
        property_names: Sequence[str] = PROPERTY_NAMES,
        property_min: Sequence[float] | None = None,
        property_max: Sequence[float] | None = None,
        condition_dim: int = 0,
        barrier_names: Sequence[str] | None = None,
        barrier_ranges: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        num_classes = len(species_names)
        if len(encoder_channels) != len(encoder_strides):
            raise ValueError("encoder_channels and encoder_strides must have the same length")
        n_props = len(property_names)
        # Without a fitted scaler the regressor would silently return scaled numbers as if
        # they were physical; identity scaling is only the default for a fresh, untrained model.
        if property_min is not None and len(property_min) != n_props:
            raise ValueError("property_min must have one entry per property")
        if property_max is not None and len(property_max) != n_props:
            raise ValueError("property_max must have one entry per property")
        if condition_dim:
            if barrier_ranges is None or len(barrier_ranges) != condition_dim:
                raise ValueError("a conditional model needs barrier_ranges with condition_dim rows")
            if barrier_names is not None and len(barrier_names) != condition_dim:
                raise ValueError("barrier_names must have condition_dim entries")

        # Spatial sizes through the encoder; the decoder retraces them in reverse so the
        # output is exactly lattice_size without cropping.
        sizes = [lattice_size]
        for s in encoder_strides:
            sizes.append(_conv_out(sizes[-1], s))
        self._bottleneck = (encoder_channels[-1], sizes[-1], sizes[-1])
        flat = encoder_channels[-1] * sizes[-1] * sizes[-1]

        layers: list[nn.Module] = []
        c_in = num_classes
        for c_out, s in zip(encoder_channels, encoder_strides):
            # bias is redundant before BatchNorm
            layers += [nn.Conv2d(c_in, c_out, 3, stride=s, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.encoder_conv = nn.Sequential(*layers)
        self.encoder_fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden_dim), nn.ReLU(inplace=True))
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)

        self.decoder_fc = nn.Sequential(
            nn.Linear(latent_dim + condition_dim, hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, flat), nn.ReLU(inplace=True),
        )
        layers = []
        c_in = encoder_channels[-1]
        rev_channels = list(encoder_channels)[::-1]
        rev_strides = list(encoder_strides)[::-1]
        rev_sizes = sizes[::-1]  # rev_sizes[i] -> rev_sizes[i + 1] at decoder layer i
        for i, (c_out, s) in enumerate(zip(rev_channels, rev_strides)):
            produced = (rev_sizes[i] - 1) * s + 1  # ConvTranspose k3 p1 without output_padding
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=s, padding=1,
                                          output_padding=rev_sizes[i + 1] - produced, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.decoder_conv = nn.Sequential(*layers)
        self.decoder_out = nn.Conv2d(c_in, num_classes, 3, padding=1)

        if regressor:
            self.regressor_head = nn.Sequential(
                nn.Linear(latent_dim, regressor_hidden), nn.ReLU(inplace=True),
                nn.Linear(regressor_hidden, regressor_hidden), nn.ReLU(inplace=True),
                nn.Linear(regressor_hidden, n_props),
            )
        else:
            self.regressor_head = None

    # ------------------------------------------------------------------ config helpers
    @property
    def kind(self) -> str:
        """"vae", "prvae" or "cprvae" from the config flags ("cvae" if built by hand without a regressor)."""
        if not self.config.regressor:
            return "vae" if not self.config.condition_dim else "cvae"
        return "cprvae" if self.config.condition_dim else "prvae"

    @property
    def num_classes(self) -> int:
        return len(self.config.species_names)

    def _property_bounds(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.config.property_names)
        lo = self.config.property_min if self.config.property_min is not None else [0.0] * n
        hi = self.config.property_max if self.config.property_max is not None else [1.0] * n
        lo_t = torch.as_tensor(lo, dtype=ref.dtype, device=ref.device)
        span = torch.as_tensor(hi, dtype=ref.dtype, device=ref.device) - lo_t
        # a property that is constant on the train split would divide by zero
        span = torch.where(span.abs() > 0, span, torch.ones_like(span))
        return lo_t, span

    def scale_properties(self, properties: torch.Tensor) -> torch.Tensor:
        """Physical units -> train-split min-max scale."""
        lo, span = self._property_bounds(properties)
        return (properties - lo) / span

    def unscale_properties(self, scaled: torch.Tensor) -> torch.Tensor:
        """Train-split min-max scale -> physical units."""
        lo, span = self._property_bounds(scaled)
        return scaled * span + lo

    def scale_barriers(self, barriers: torch.Tensor) -> torch.Tensor:
        """Barriers in eV -> [0, 1] using the simulator's sampling ranges."""
        r = torch.as_tensor(self.config.barrier_ranges, dtype=barriers.dtype, device=barriers.device)
        return (barriers - r[:, 0]) / (r[:, 1] - r[:, 0])

    # ------------------------------------------------------------------ network pieces
    def encode(self, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot lattices (B, C, H, W) -> (mu, logvar), each (B, latent_dim)."""
        h = self.encoder_fc(self.encoder_conv(onehot))
        return self.fc_mu(h), self.fc_logvar(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor, barriers: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, latent_dim) [+ barriers in eV, (B, 15) or one (15,) for all] -> logits (B, C, H, W)."""
        if self.config.condition_dim:
            if barriers is None:
                raise ValueError("this conditional model needs the barrier vector to decode")
            barriers = torch.as_tensor(barriers, dtype=z.dtype, device=z.device)
            if barriers.ndim == 1:
                barriers = barriers.unsqueeze(0)
            if barriers.shape[0] == 1:  # one barrier vector for the whole batch
                barriers = barriers.expand(z.shape[0], -1)
            z = torch.cat([z, self.scale_barriers(barriers)], dim=1)
        h = self.decoder_fc(z).view(z.shape[0], *self._bottleneck)
        return self.decoder_out(self.decoder_conv(h))

    def predict_properties_scaled(self, mu: torch.Tensor) -> torch.Tensor:
        if self.regressor_head is None:
            raise ValueError("this model has no property regressor (kind 'vae')")
        return self.regressor_head(mu)

    def predict_properties(self, mu: torch.Tensor) -> torch.Tensor:
        """Latent means (B, latent_dim) -> properties (B, P) in physical units."""
        return self.unscale_properties(self.predict_properties_scaled(mu))

    def forward(
        self,
        onehot: torch.Tensor,
        barriers: torch.Tensor | None = None,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SEIPRVAEOutput | tuple:
        """Encode, decode and (with a regressor) predict properties from mu.

        sample_posterior defaults to ``self.training``: a reparameterised sample while
        training, mu at evaluation so outputs are deterministic.
        """
        mu, logvar = self.encode(onehot)
        if sample_posterior is None:
            sample_posterior = self.training
        z = self.reparameterize(mu, logvar, generator) if sample_posterior else mu
        logits = self.decode(z, barriers)
        props_scaled = props = None
        if self.regressor_head is not None:
            props_scaled = self.predict_properties_scaled(mu)
            props = self.unscale_properties(props_scaled)
        out = SEIPRVAEOutput(logits=logits, mu=mu, logvar=logvar, z=z,
                             properties=props, properties_scaled=props_scaled)
        return out if return_dict else out.to_tuple()

    @torch.no_grad()
    def generate(self, num: int, barriers: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z ~ N(0, I) and decode to (num, H, W) uint8 lattices (most probable species)."""
        z = torch.randn((num, self.config.latent_dim), generator=generator,
                        device=self.device, dtype=self.dtype)
        return logits_to_lattice(self.decode(z, barriers))


def build_sei_model(kind: str, **config) -> SEIPRVAE:
    """A fresh :class:`SEIPRVAE` of ``kind`` ("vae", "prvae", "cprvae"); config overrides defaults."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown SEI model kind {kind!r}; choose from {sorted(MODEL_KINDS)}")
    flags = dict(MODEL_KINDS[kind])
    if kind == "cprvae" and config.get("barrier_ranges") is not None:
        flags["condition_dim"] = len(config["barrier_ranges"])
    clash = {k for k in flags if k in config and config[k] != flags[k]}
    if clash:
        raise ValueError(f"kind {kind!r} fixes {sorted(clash)}")
    return SEIPRVAE(**{**config, **flags})


def sei_vae_loss(
    model: SEIPRVAE,
    output: SEIPRVAEOutput,
    target: torch.Tensor,
    properties: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    lam: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample-averaged prVAE objective: CE reconstruction + beta * KL + lam * property MSE.

    target: (B, H, W) integer species codes. properties: (B, P) in physical units (needed
    when the model has a regressor and lam > 0); the MSE is taken on the min-max scale so
    the four properties weigh alike despite different units.

    Reconstruction is cross-entropy *summed* over lattice sites (mean over the batch), i.e.
    the negative log-likelihood of a categorical decoder, so beta = 1 is the true ELBO.
    class_weights (C,) reweight sites by their true species; pass weights normalised so
    that the frequency-weighted mean is 1 to keep the loss on the same scale as unweighted.
    """
    ce = F.cross_entropy(output.logits, target.long(), weight=class_weights, reduction="none")
    recon = ce.flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + output.logvar - output.mu.pow(2) - output.logvar.exp()).sum(1)).mean()
    total = recon + beta * kl
    prop = torch.zeros((), device=recon.device, dtype=recon.dtype)
    if output.properties_scaled is not None and properties is not None:
        prop = F.mse_loss(output.properties_scaled, model.scale_properties(properties.to(recon.dtype)))
        total = total + lam * prop
    return {"loss": total, "recon": recon, "kl": kl, "prop": prop}
