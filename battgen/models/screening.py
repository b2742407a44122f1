"""Screening model: a latent diffusion U-Net conditioned on battery properties, and its pipeline.

As published (Rajagopal et al., Batteries & Supercaps 2025), the screening model denoises in the
latent space of the AFM translation VAE and is conditioned on seven battery properties: the six
continuous ones of :data:`battgen.data.properties.PROPERTY_NAMES`, min-max scaled to [0, 1], and
the working ion. Here the condition vector is

    [6 scaled properties, 10-ion one-hot (order of WORKING_IONS), 1 "condition present" flag]

(17 numbers); with ``condition_shift``/``condition_scale`` stored in the pipeline the six
properties are further standardised with the training materials' mean and spread. The flag makes the all-zero vector a distinct *null* condition, which the model
learns through condition dropout and which classifier-free guidance contrasts against; without it
"no condition" would be indistinguishable from a request for all properties at their minimum.

The vector enters diffusers' :class:`~diffusers.UNet2DConditionModel` through
``class_embed_type="projection"``: an MLP maps it to the time-embedding width and it is added to
the time embedding, which every resnet of every down, mid and up block receives (with
``resnet_time_scale_shift="scale_shift"`` as a per-channel scale and shift of the normalised
features, the FiLM/AdaGN conditioning of improved DDPM). That is the paper's "condition at the
start of every block", without cross-attention: the condition is one vector, not a sequence, so
cross-attention over one token would only re-learn a projection. ``UNet2DModel`` cannot be used
because it offers no projection class embedding for continuous conditions.

:class:`BattGenScreeningPipeline` bundles the U-Net, its noise scheduler, the translator (latent ->
descriptor images) and the atom regressor (latent -> composition vector) so one
``save_pretrained`` directory turns a property request into candidate materials. The property
ranges, the ion list, the condition standardisation and the sampler's clean-latent bound are
stored in the pipeline's ``model_index.json``, and the prediction type (epsilon, v, x0) and the
noise schedule in ``scheduler/``, so a saved pipeline scales physical requests and samples
itself; a checkpoint written before these options existed loads with the published behaviour.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    UNet2DConditionModel,
)
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.models.screening_options import EMBEDDINGS, PREDICTION_TYPES
from battgen.screening.defaults import DEFAULT_GUIDANCE, SAMPLERS

# Length of the condition vector: properties, ion one-hot, "condition present" flag.
CONDITION_DIM = len(PROPERTY_NAMES) + len(WORKING_IONS) + 1

# The published DDPM setup (diffusers defaults): T = 1000, beta linear 1e-4 -> 0.02.
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02

OUTPUT_TYPES = ("np", "pt")


def make_training_scheduler(prediction_type: str = "epsilon", zero_terminal_snr: bool = False) -> DDPMScheduler:
    """The DDPM noise schedule the screening U-Net is trained with (and the pipeline stores).

    ``prediction_type`` is what the U-Net outputs: the noise ("epsilon", as published), the
    velocity ("v_prediction") or the clean latent ("sample"). ``zero_terminal_snr`` rescales the
    betas so that t = T is pure noise (Lin et al. 2024); the published schedule leaves
    sqrt(alpha_bar_T) = 0.006 of signal, which the U-Net is trained to use and the sampler never
    provides. With zero terminal SNR the noise says nothing about the clean latent at t = T, so
    epsilon-prediction is undefined there and is refused.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")
    if zero_terminal_snr and prediction_type == "epsilon":
        raise ValueError("zero terminal SNR needs v_prediction or sample prediction: "
                         "the noise alone does not determine the clean latent at t = T")
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        prediction_type=prediction_type,
        rescale_betas_zero_snr=bool(zero_terminal_snr),
        # Scaled VAE latents have unit-ish variance, so |x0| > 1 is normal: the image-space
        # default of clipping the predicted x0 to [-1, 1] would distort every sample.
        clip_sample=False,
        # Few-step samplers start from pure noise; "trailing" spacing labels that start t = T-1,
        # whereas "leading" would call it t = T - T/steps (950 of 1000 for 20 steps), a level at
        # which the U-Net expects some signal left in its input.
        timestep_spacing="trailing",
    )


# Bound on the predicted clean latent during sampling, in scaled-latent units, for checkpoints
# that store none (the first shipped model: 4, the 99th percentile of |latent|). Under-trained at
# high noise, an epsilon U-Net's noise estimate at t ~ T is off by a few percent, which the x0
# estimate multiplies by 1/sqrt(alpha_bar_T) ~ 150: unbounded, the samplers locked onto latents
# of std ~9 instead of 1. New checkpoints store the 99.9th percentile of their training targets
# (``x0_bound`` in model_index.json): 4 clipped real latents too (8.8 is their 99.9th percentile).
# Done in the pipeline, not by a scheduler option, so every sampler bounds it the same way
# (DPM-Solver++ only offers dynamic thresholding, which rescales in-range latents too).
SAMPLE_X0_BOUND = 4.0


def predicted_clean_latent(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                           prediction_type: str) -> torch.Tensor:
    """The clean latent a U-Net ``output`` of ``prediction_type`` implies at noisy input ``x_t``."""
    a = torch.as_tensor(alpha_bar).to(x_t)
    if prediction_type == "epsilon":
        return (x_t - (1 - a).sqrt() * output) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * output
    if prediction_type == "sample":
        return output
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def bound_prediction(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str,
                     bound: float = SAMPLE_X0_BOUND) -> torch.Tensor:
    """The U-Net ``output`` (of ``prediction_type``) whose implied clean latent is clipped to [-bound, bound]."""
    a = alpha_bar.to(x_t)
    x0 = predicted_clean_latent(output, x_t, a, prediction_type).clamp(-bound, bound)
    if prediction_type == "sample":
        return x0
    # 1 - alpha_bar >= beta_start > 0 at every timestep, so the noise is always recoverable.
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    return eps if prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0


def bound_noise_prediction(eps: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                           bound: float = SAMPLE_X0_BOUND) -> torch.Tensor:
    """The noise estimate whose implied clean latent is clipped to [-bound, bound]."""
    return bound_prediction(eps, x_t, alpha_bar, "epsilon", bound)


def make_scheduler(name: str, config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh sampler ``name`` ("ddpm", "ddim", "dpm++") with the noise schedule of ``config``."""
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "dpm++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SAMPLERS)} "
                     "or pass a diffusers scheduler instance")


def build_screening_unet(
    sample_size: int | tuple[int, int] = 16,
    in_channels: int = 4,
    block_out_channels: Sequence[int] = (64, 128, 128),
    attention_levels: Sequence[bool] = (False, True, True),
    layers_per_block: int = 1,
    attention_head_dim: int = 32,
    norm_num_groups: int = 32,
    condition_dim: int = CONDITION_DIM,
    embedding: str = "projection",
) -> UNet2DConditionModel:
    """A small property-conditioned U-Net on ``in_channels`` x ``sample_size`` latents.

    ``attention_levels[i]`` puts self-attention into level ``i`` (AttnDown/AttnUpBlock2D); the
    16x16 level goes without, where attention costs most and helps least. The mid block is a
    single resnet (``UNetMidBlock2D`` as UNet2DConditionModel builds it, without attention).
    Defaults: 4.6 M parameters, sized to train on two CPU cores.

    ``embedding``: "projection" adds an MLP of the condition vector to the time embedding (every
    resnet's scale and shift); "tokens" turns the condition into one token per property plus one
    for the ion (:func:`condition_tokens`) that the attention levels and the mid block read
    through cross-attention, so each block can weigh each property separately.
    """
    if embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {embedding!r}; choose one of {', '.join(EMBEDDINGS)}")
    if len(attention_levels) != len(block_out_channels):
        raise ValueError("attention_levels needs one flag per entry of block_out_channels")
    if any(c % norm_num_groups for c in block_out_channels):
        raise ValueError(f"every block_out_channels entry must be divisible by norm_num_groups={norm_num_groups}")
    sizes = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
    factor = 2 ** (len(block_out_channels) - 1)
    if any(s % factor for s in sizes):
        raise ValueError(f"latent size {sizes} must be divisible by {factor} for {len(block_out_channels)} levels")
    tokens = embedding == "tokens"
    attn = "CrossAttn" if tokens else "Attn"
    down = tuple(f"{attn}DownBlock2D" if a else "DownBlock2D" for a in attention_levels)
    up = tuple(f"{attn}UpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
    if tokens:
        n_ions = condition_dim - len(PROPERTY_NAMES) - 1
        return UNet2DConditionModel(
            sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
            down_block_types=down, mid_block_type="UNetMidBlock2DCrossAttn", up_block_types=up,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            attention_head_dim=attention_head_dim, norm_num_groups=norm_num_groups,
            cross_attention_dim=block_out_channels[-1],
            # A linear map of each token's features to the cross-attention width (diffusers' text_proj).
            encoder_hid_dim=token_dim(len(PROPERTY_NAMES), n_ions), encoder_hid_dim_type="text_proj",
            resnet_time_scale_shift="scale_shift",
        )
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=down,
        mid_block_type="UNetMidBlock2D",
        up_block_types=up,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
        # Required by the constructor, used by no block here (there is no cross-attention).
        cross_attention_dim=block_out_channels[-1],
        class_embed_type="projection",
        projection_class_embeddings_input_dim=condition_dim,
        resnet_time_scale_shift="scale_shift",
    )


def screening_condition(properties_scaled, ions: str | Sequence[str],
                        working_ions: Sequence[str] = WORKING_IONS,
                        n_properties: int = len(PROPERTY_NAMES)) -> np.ndarray:
    """(N, 17) float32 condition rows from (N, 6) scaled properties and N ion names.

    One ion name with one (6,) property row gives shape (17,). Scaled values are not clipped: a
    request outside the training ranges stays visible as such (see :class:`PropertyScaler`).
    """
    props = np.asarray(properties_scaled, np.float32)
    single = props.ndim == 1
    props = np.atleast_2d(props)
    names = [ions] * len(props) if isinstance(ions, str) else list(ions)
    if props.ndim != 2 or props.shape[1] != n_properties or len(names) != len(props):
        raise ValueError(f"expected (N, {n_properties}) scaled properties and N ions, "
                         f"got {props.shape} and {len(names)} ions")
    ion_list = list(working_ions)
    out = np.zeros((len(props), n_properties + len(ion_list) + 1), np.float32)
    out[:, :n_properties] = props
    for row, ion in enumerate(names):
        if ion not in ion_list:
            raise ValueError(f"unknown working ion {ion!r}; choose one of {', '.join(ion_list)}")
        out[row, n_properties + ion_list.index(ion)] = 1.0
    out[:, -1] = 1.0
    return out[0] if single else out


def token_dim(n_properties: int, n_ions: int) -> int:
    """Features of one condition token: property one-hot, value at that slot, ion one-hot, flag."""
    return 2 * n_properties + n_ions + 1


def condition_tokens(conditions: torch.Tensor, n_properties: int = len(PROPERTY_NAMES)) -> torch.Tensor:
    """(B, 17) condition vectors -> (B, P + 1, 2P + I + 1) tokens for cross-attention.

    Token j < P carries "property j" (one-hot) and its value (at slot j, so a linear projection
    gives each property its own embedding plus its own value direction); the last token carries
    the ion one-hot. Every token carries the "condition present" flag, and the property one-hots
    are gated by it, so the null condition is all-zero tokens.
    """
    b, dim = conditions.shape
    n_ions = dim - n_properties - 1
    tokens = conditions.new_zeros((b, n_properties + 1, token_dim(n_properties, n_ions)))
    eye = torch.eye(n_properties, dtype=conditions.dtype, device=conditions.device)
    present = conditions[:, -1:, None]
    tokens[:, :n_properties, :n_properties] = eye * present
    tokens[:, :n_properties, n_properties:2 * n_properties] = eye * conditions[:, :n_properties, None]
    tokens[:, n_properties, 2 * n_properties:2 * n_properties + n_ions] = conditions[:, n_properties:-1]
    tokens[:, :, -1] = conditions[:, -1:]
    return tokens


def unet_condition_kwargs(unet, conditions: torch.Tensor) -> dict:
    """The U-Net's condition arguments for (B, 17) ``conditions``, for either embedding."""
    # A U-Net wrapped for distributed training keeps its config on the wrapped module.
    if getattr(unet, "module", unet).config.class_embed_type == "projection":
        # encoder_hidden_states is a required argument of UNet2DConditionModel.forward, but no
        # block of the projection U-Net has cross-attention, so nothing reads it.
        return {"encoder_hidden_states": None, "class_labels": conditions}
    return {"encoder_hidden_states": condition_tokens(conditions)}


def unet_condition_dim(unet) -> int | None:
    """Length of the condition vector a screening U-Net takes (None: not a screening U-Net)."""
    config = unet.config
    if config.class_embed_type == "projection":
        return config.projection_class_embeddings_input_dim
    if config.encoder_hid_dim_type == "text_proj" and config.encoder_hid_dim:
        n_ions = config.encoder_hid_dim - 2 * len(PROPERTY_NAMES) - 1
        return len(PROPERTY_NAMES) + n_ions + 1
    return None


def null_condition(batch: int, dim: int = CONDITION_DIM, device=None, dtype=torch.float32) -> torch.Tensor:
    """The unconditional input of classifier-free guidance: all zeros, flag off."""
    return torch.zeros((batch, dim), device=device, dtype=dtype)


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    """dtype of a module's first parameter (float32 for parameter-free stand-ins)."""
    return next((p.dtype for p in module.parameters()), torch.float32)


def _as_tensor_output(result) -> torch.Tensor:
    """Duck-typed model output -> tensor: a tensor, a BaseOutput with ``sample``, or a tuple."""
    if isinstance(result, torch.Tensor):
        return result
    if getattr(result, "sample", None) is not None:
        return result.sample
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    raise TypeError(f"expected a tensor from the model, got {type(result).__name__}")


@dataclass
class BattGenScreeningOutput(BaseOutput):
    """What :meth:`BattGenScreeningPipeline.__call__` returns (numpy arrays or tensors).

    descriptors: (B, H, W, 6) decoded descriptor images in [-1, 1].
    compositions: (B, 112) non-negative predicted atom counts by atomic number.
    latents: (B, 4, h, w) generated latents, unscaled (comparable to ``latents.npz`` ``mu``).
    condition: (17,) the condition vector the U-Net was given.
    """

    descriptors: np.ndarray | torch.Tensor
    compositions: np.ndarray | torch.Tensor
    latents: np.ndarray | torch.Tensor
    condition: np.ndarray | torch.Tensor


class BattGenScreeningPipeline(DiffusionPipeline):
    """Property request -> candidate descriptor images, compositions and latents.

    Components: ``unet`` (:func:`build_screening_unet`), ``scheduler`` (the DDPM training
    schedule; other samplers are derived from its config), ``translator`` (anything with
    ``decode(z) -> (B, 6, H, W)`` and ``config.scaling_factor``, i.e. ``AFMTranslator``) and
    ``atom_regressor`` (``predict_from_mu``: unscaled latents to (B, 112) counts, i.e.
    ``AtomRegressor``). The U-Net works on latents multiplied by the translator's
    ``scaling_factor``; everything the pipeline returns or accepts as ``latents`` output is
    unscaled.
    """

    model_cpu_offload_seq = "unet->translator->atom_regressor"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        translator: torch.nn.Module,
        atom_regressor: torch.nn.Module,
        property_names: list[str] | tuple[str, ...] = PROPERTY_NAMES,
        property_low: list[float] | tuple[float, ...] | None = None,
        property_high: list[float] | tuple[float, ...] | None = None,
        working_ions: list[str] | tuple[str, ...] = WORKING_IONS,
        condition_shift: list[float] | tuple[float, ...] | None = None,
        condition_scale: list[float] | tuple[float, ...] | None = None,
        x0_bound: float | None = None,
    ):
        super().__init__()
        expected = len(property_names) + len(working_ions) + 1
        if unet_condition_dim(unet) != expected:
            raise ValueError(f"the U-Net must take a {expected}-long condition, as a projection class "
                             "embedding or as tokens (build it with build_screening_unet)")
        for name, values in (("property_low", property_low), ("property_high", property_high),
                             ("condition_shift", condition_shift), ("condition_scale", condition_scale)):
            if values is not None and len(values) != len(property_names):
                raise ValueError(f"{name} needs one value per property ({len(property_names)})")
        if (property_low is None) != (property_high is None):
            raise ValueError("give both property_low and property_high, or neither")
        if (condition_shift is None) != (condition_scale is None):
            raise ValueError("give both condition_shift and condition_scale, or neither")
        if condition_scale is not None and not all(float(v) > 0 for v in condition_scale):
            raise ValueError("condition_scale must be positive")
        if x0_bound is not None and not float(x0_bound) > 0:
            raise ValueError(f"x0_bound must be positive, got {x0_bound}")
        if getattr(getattr(translator, "config", None), "scaling_factor", None) is None:
            raise ValueError("the translator needs a config.scaling_factor (its latent scaling)")
        # Inference only: eval mode also fixes the numerics (CPU attention kernels differ between
        # train and eval mode), so a pipeline built here and one loaded with from_pretrained
        # give bit-identical candidates for the same generator.
        for module in (unet, translator, atom_regressor):
            module.eval()
        self.register_modules(unet=unet, scheduler=scheduler, translator=translator,
                              atom_regressor=atom_regressor)
        # Stored in model_index.json and handed back to __init__ by from_pretrained, which is
        # what makes a saved pipeline self-describing.
        self.register_to_config(
            property_names=list(property_names),
            property_low=None if property_low is None else [float(v) for v in property_low],
            property_high=None if property_high is None else [float(v) for v in property_high],
            working_ions=list(working_ions),
            # Checkpoints without these keys (the first shipped model) get the old behaviour:
            # min-max scaled properties as the condition, and the clean latent bounded at 4.
            condition_shift=None if condition_shift is None else [float(v) for v in condition_shift],
            condition_scale=None if condition_scale is None else [float(v) for v in condition_scale],
            x0_bound=None if x0_bound is None else float(x0_bound),
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "BattGenScreeningPipeline":
        """Load a saved pipeline; BattGen's own component modules are imported first.

        diffusers records a component from outside its known libraries under its full module
        path (``["battgen.models.translator", "AFMTranslator"]``) and, at load time, only looks
        that module up in ``sys.modules`` instead of importing it. Importing it here, and only
        for modules inside the ``battgen`` package, makes loading work in a fresh process
        without executing any module a foreign model_index.json might name.
        """
        index = Path(pretrained_model_name_or_path) / cls.config_name
        if index.is_file():
            for value in json.loads(index.read_text()).values():
                if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                        and value[0].startswith("battgen.")):
                    importlib.import_module(value[0])
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------ description
    @property
    def property_scaler(self) -> PropertyScaler | None:
        """The scaling of physical property values stored with the pipeline (None if absent)."""
        if self.config.property_low is None:
            return None
        return PropertyScaler(tuple(self.config.property_low), tuple(self.config.property_high),
                              tuple(self.config.property_names))

    @property
    def scaling_factor(self) -> float:
        return float(self.translator.config.scaling_factor)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return int(self.unet.config.in_channels), int(h), int(w)

    # ------------------------------------------------------------------ inputs
    def scale_properties(self, properties, *, scaled: bool = False,
                         property_scaler: PropertyScaler | None = None) -> np.ndarray:
        """Validated (P,) float32 scaled property vector from a dict or a sequence of P values.

        A dict must name exactly the pipeline's properties. ``scaled=False`` means physical
        units (V, mAh/g, ...), scaled with ``property_scaler`` or the stored ranges.
        """
        names = list(self.config.property_names)
        if isinstance(properties, Mapping):
            missing = [n for n in names if n not in properties]
            unknown = [k for k in properties if k not in names]
            if missing or unknown:
                raise ValueError(f"properties must name exactly {', '.join(names)}"
                                 + (f"; missing {', '.join(missing)}" if missing else "")
                                 + (f"; unknown {', '.join(map(str, unknown))}" if unknown else ""))
            values = [properties[n] for n in names]
        else:
            values = properties
        try:
            values = np.asarray(values, np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"properties must be numbers: {exc}") from exc
        if values.shape != (len(names),):
            raise ValueError(f"expected {len(names)} property values ({', '.join(names)}), "
                             f"got shape {values.shape}")
        if not np.isfinite(values).all():
            bad = [n for n, v in zip(names, values) if not np.isfinite(v)]
            raise ValueError(f"property values must be finite; got NaN or inf for {', '.join(bad)}")
        if scaled:
            return values.astype(np.float32)
        scaler = property_scaler or self.property_scaler
        if scaler is None:
            raise ValueError("this pipeline stores no property ranges: pass property_scaler, "
                             "or scaled values with scaled=True")
        if list(scaler.names) != names:
            raise ValueError(f"property_scaler covers {list(scaler.names)}, the model expects {names}")
        return scaler.transform(values)

    def condition_vector(self, properties, working_ion: str, *, scaled: bool = False,
                         property_scaler: PropertyScaler | None = None) -> np.ndarray:
        """The (17,) condition vector of one request."""
        if not isinstance(working_ion, str) or working_ion not in self.config.working_ions:
            raise ValueError(f"unknown working ion {working_ion!r}; choose one of "
                             f"{', '.join(self.config.working_ions)}")
        props = self.scale_properties(properties, scaled=scaled, property_scaler=property_scaler)
        return screening_condition(self.standardise(props), working_ion, tuple(self.config.working_ions), len(props))

    def standardise(self, scaled_properties) -> np.ndarray:
        """Min-max scaled properties -> the property part of the U-Net's condition.

        With ``condition_shift``/``condition_scale`` stored (training-set mean and standard
        deviation of each scaled property), every property enters the U-Net with unit spread;
        min-max scaling alone squeezes a property whose range is set by outliers (within-ion
        standard deviations down to 0.03), so two materials' conditions barely differ.
        """
        props = np.asarray(scaled_properties, np.float32)
        if self.config.condition_shift is None:
            return props
        shift = np.asarray(self.config.condition_shift, np.float32)
        scale = np.asarray(self.config.condition_scale, np.float32)
        return ((props - shift) / scale).astype(np.float32)

    def get_scheduler(self, scheduler: str | SchedulerMixin | None = None) -> SchedulerMixin:
        """A sampler for one call: a name, an instance (used as given), or None (a fresh copy of
        the stored scheduler, so concurrent calls never share step state)."""
        if scheduler is None:
            return type(self.scheduler).from_config(self.scheduler.config)
        if isinstance(scheduler, str):
            return make_scheduler(scheduler, self.scheduler.config)
        if isinstance(scheduler, SchedulerMixin):
            return scheduler
        raise ValueError(f"scheduler must be a name ({', '.join(SAMPLERS)}), a diffusers "
                         f"scheduler or None, got {type(scheduler).__name__}")

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def denoise(
        self,
        conditions: torch.Tensor,
        *,
        num_inference_steps: int = 20,
        guidance_scale: float = DEFAULT_GUIDANCE,
        generator: torch.Generator | None = None,
        scheduler: str | SchedulerMixin | None = None,
        latents: torch.Tensor | None = None,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Run the reverse diffusion for (B, 17) ``conditions``; return unscaled (B, 4, h, w) latents.

        ``latents`` is the initial noise (B, 4, h, w); by default drawn from ``generator``.
        Guidance mixes conditional and null-condition outputs (noise, velocity or clean latent, as
        the scheduler's ``prediction_type`` says) of one batched U-Net call:
        out = out_null + g (out_cond - out_null); with g = 1 only the conditional half runs.
        """
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) \
                or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        sampler = self.get_scheduler(scheduler)
        if num_inference_steps > sampler.config.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be at most {sampler.config.num_train_timesteps} "
                             f"(the training timesteps), got {num_inference_steps}")
        guidance_scale = float(guidance_scale)
        if not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
        device, dtype = self._execution_device, self.unet.dtype
        conditions = torch.as_tensor(conditions, dtype=dtype, device=device)
        dim = unet_condition_dim(self.unet)
        if conditions.ndim != 2 or conditions.shape[1] != dim or len(conditions) < 1:
            raise ValueError(f"conditions must have shape (B >= 1, {dim}), got {tuple(conditions.shape)}")
        shape = (len(conditions), *self.latent_shape)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(f"initial latents must have shape {shape}, got {tuple(latents.shape)}")
            latents = latents.to(device=device, dtype=dtype)
        sampler.set_timesteps(int(num_inference_steps), device=device)
        latents = latents * sampler.init_noise_sigma

        guided = guidance_scale != 1.0
        model_conditions = torch.cat([conditions, null_condition(len(conditions), dim, device, dtype)]) \
            if guided else conditions
        timesteps = sampler.timesteps
        prediction_type = sampler.config.prediction_type
        x0_bound = self.config.x0_bound or SAMPLE_X0_BOUND
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                model_input = torch.cat([latents, latents]) if guided else latents
                model_input = sampler.scale_model_input(model_input, t)
                eps = self.unet(model_input, t, **unet_condition_kwargs(self.unet, model_conditions)).sample
                if guided:
                    eps_cond, eps_null = eps.chunk(2)
                    eps = eps_null + guidance_scale * (eps_cond - eps_null)
                eps = bound_prediction(eps, latents, sampler.alphas_cumprod[int(t)], prediction_type, x0_bound)
                latents = sampler.step(eps, t, latents, generator=generator).prev_sample
                bar.update()
                if progress_callback is not None:
                    progress_callback(i + 1, len(timesteps))
        return latents / self.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled latents -> ((B, 6, H, W) descriptors in [-1, 1], (B, 112) counts >= 0)."""
        latents = latents.to(device=self._execution_device)
        descriptors = _as_tensor_output(self.translator.decode(latents.to(_module_dtype(self.translator))))
        compositions = _as_tensor_output(self.atom_regressor.predict_from_mu(
            latents.to(_module_dtype(self.atom_regressor))))
        # The decoder ends in tanh and the regressor in softplus; clamping only guards stand-ins
        # and rounding, so the documented ranges hold whatever component is plugged in.
        return descriptors.clamp(-1.0, 1.0), compositions.clamp_min(0.0)

    @torch.no_grad()
    def __call__(
        self,
        properties: Mapping[str, float] | Sequence[float] | np.ndarray,
        working_ion: str,
        num_candidates: int = 4,
        num_inference_steps: int = 20,
        guidance_scale: float = DEFAULT_GUIDANCE,
        generator: torch.Generator | None = None,
        scheduler: str | SchedulerMixin | None = None,
        property_scaler: PropertyScaler | None = None,
        scaled: bool = False,
        latents: torch.Tensor | None = None,
        progress_callback: Callable[[int, int], None] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> BattGenScreeningOutput | tuple:
        """Generate ``num_candidates`` materials for one property request.

        properties: the six properties as a dict by name or a sequence in PROPERTY_NAMES order,
            physical units unless ``scaled=True`` (then already min-max scaled to [0, 1]).
        working_ion: one of the pipeline's ``working_ions``.
        generator: seeds the initial noise (which decides the candidate) and stochastic steps.
        scheduler: "ddpm", "ddim", "dpm++", a scheduler instance, or None for the stored DDPM
            schedule; fast samplers ("dpm++", "ddim") need 20-50 steps, DDPM many more.
        property_scaler: physical -> scaled mapping; default the ranges stored with the pipeline.
        latents: optional initial noise (num_candidates, 4, h, w), e.g. to compare requests.
        progress_callback: called as ``callback(step, total)`` after every denoising step.
        output_type: "np" (numpy arrays) or "pt" (tensors on the pipeline's device).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, (int, np.integer)) or num_candidates < 1:
            raise ValueError(f"num_candidates must be an integer >= 1, got {num_candidates!r}")
        condition = self.condition_vector(properties, working_ion, scaled=scaled, property_scaler=property_scaler)
        conditions = torch.as_tensor(condition).unsqueeze(0).repeat(int(num_candidates), 1)
        z = self.denoise(conditions, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                         generator=generator, scheduler=scheduler, latents=latents,
                         progress_callback=progress_callback)
        descriptors, compositions = self.decode_latents(z)
        descriptors = descriptors.permute(0, 2, 3, 1)
        outputs = [descriptors, compositions, z, torch.as_tensor(condition)]
        if output_type == "np":
            outputs = [t.detach().float().cpu().numpy() for t in outputs]
        self.maybe_free_model_hooks()
        if not return_dict:
            return tuple(outputs)
        return BattGenScreeningOutput(*outputs)
