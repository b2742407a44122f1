"""Train the screening model: a property-conditioned DDPM in the AFM translator's latent space.

``train_screening(ScreeningTrainingConfig(latents=..., table=..., translator=..., atom_regressor=...))`` reads

* ``latents.npz`` written by the translator's training: ``mu`` (N, 4, h, w) unscaled latent
  means, ``scaling_factor``, ``material`` (row of the electrode table), ``working_ion`` and
  ``split`` (train / val / test) per latent;
* the electrode table (``battgen.data.table``): the six properties of each material, scaled to
  [0, 1] with the table's ``ranges.json`` (the scaling every BattGen model shares),

trains :func:`battgen.models.screening.build_screening_unet` to predict the noise of the
published DDPM schedule (T = 1000, beta linear 1e-4 -> 0.02) with an MSE in which every working
ion weighs the same (inverse-frequency sample weights: Li rows outnumber Cs rows by orders of
magnitude), drops the condition to the null vector with probability ``cond_dropout`` so the
model also learns the unconditional score classifier-free guidance needs, keeps an optional EMA
of the weights, and keeps the weights with the best validation loss. The validation loss uses
noise and timesteps fixed once per sample, so epochs are compared on the same draws.

``out_dir`` then holds the whole :class:`~battgen.models.screening.BattGenScreeningPipeline`
(``model_index.json``, ``unet/``, ``scheduler/``, ``translator/``, ``atom_regressor/``) plus
``metrics.json`` and ``metadata.json``. Device placement (CPU, one or several GPUs) goes through
``accelerate``; run under ``accelerate launch`` for several GPUs.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from sklearn.metrics import r2_score
from tqdm.auto import tqdm

from battgen import atomic
from battgen.artifacts import write_metadata, write_metrics
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.splits import inverse_frequency_weights
from battgen.data.table import composition_matrix, load_scaler, load_table, table_path
from battgen.device import get_device
from battgen.models.screening_options import CONDITION_NORMS, TARGETS
from battgen.screening.defaults import DEFAULT_GUIDANCE
from battgen.models.screening import (
    BattGenScreeningPipeline,
    _module_dtype,
    build_screening_unet,
    make_training_scheduler,
    null_condition,
    screening_condition,
    unet_condition_kwargs,
)
from battgen.paths import for_display
from battgen.train.common import (
    EarlyStopping,
    TimeBudget,
    cpu_state,
    make_accelerator,
    seed_everything,
    set_threads,
)
from battgen.train.configs import ScreeningTrainingConfig
from battgen.train.options import command_line

EVAL_BATCH = 256
LATENT_KEYS = ("mu", "scaling_factor", "material", "working_ion", "split")
# Relative tolerance between the scaling factor the latents were written with and the one the
# translator decodes with; a mismatch would make every generated latent decode at the wrong scale.
SCALING_RTOL = 1e-4


# Validation materials generated for checkpoint selection by composition R² (fixed noise, DDIM).
SELECT_MATERIALS, SELECT_STEPS = 64, 10


@dataclass
class ScreeningData:
    """Scaled latents and their condition vectors, as the U-Net sees them."""

    latents: np.ndarray  # (N, C, h, w) float32, mu * scaling_factor
    conditions: np.ndarray  # (N, 17) float32
    ions: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    scaling_factor: float
    scaler: PropertyScaler
    material: np.ndarray  # (N,) int, row of the electrode table
    compositions: np.ndarray  # (N, 112) float32 true atom counts of the row's material

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def concat(self, other: "ScreeningData") -> "ScreeningData":
        """These rows followed by ``other``'s (same scaling and scaler)."""
        if other.scaling_factor != self.scaling_factor:
            raise ValueError("cannot join latents of different scaling factors")
        rows = {f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        return replace(self, **rows)

    def subset(self, rows: np.ndarray, latents: np.ndarray | None = None) -> "ScreeningData":
        rows = np.asarray(rows)
        return ScreeningData(latents=self.latents[rows] if latents is None else latents,
                             conditions=self.conditions[rows], ions=self.ions[rows], split=self.split[rows],
                             scaling_factor=self.scaling_factor, scaler=self.scaler,
                             material=self.material[rows], compositions=self.compositions[rows])


def select_targets(data: ScreeningData, targets: str) -> ScreeningData:
    """One training target per view ("all"), or per material: "canonical" or "mean".

    72 % of the latent variance is the view's rotation, which no condition can predict: with all
    views the U-Net sees four different targets for one condition. "canonical" keeps the view
    closest to the material's mean latent (a real view, which the atom regressor reads as well
    as any: R² 0.81 train); "mean" takes the mean latent itself, which is smoother but off the
    regressor's distribution (its R² on mean latents is 0.31 train, 0.36 test).
    """
    if targets not in TARGETS:
        raise ValueError(f"unknown targets {targets!r}; choose one of {', '.join(TARGETS)}")
    if targets == "all":
        return data
    rows, latents = [], []
    for m in np.unique(data.material):
        views = np.flatnonzero(data.material == m)
        mean = data.latents[views].mean(axis=0)
        if targets == "mean":
            rows.append(views[0])
            latents.append(mean)
        else:
            best = views[np.argmin(((data.latents[views] - mean) ** 2).reshape(len(views), -1).sum(axis=1))]
            rows.append(best)
            latents.append(data.latents[best])
    return data.subset(np.asarray(rows), np.stack(latents).astype(np.float32))


def condition_normalisation(data: ScreeningData, norm: str) -> tuple[list[float], list[float]] | None:
    """(shift, scale) of the training materials' scaled properties for "zscore"; None for "minmax"."""
    if norm not in CONDITION_NORMS:
        raise ValueError(f"unknown condition normalisation {norm!r}; choose one of {', '.join(CONDITION_NORMS)}")
    if norm == "minmax":
        return None
    train = data.indices("train")
    _, first = np.unique(data.material[train], return_index=True)
    props = data.conditions[train[first], :len(data.scaler.names)].astype(np.float64)
    std = props.std(axis=0)
    return props.mean(axis=0).tolist(), np.where(std > 1e-6, std, 1.0).tolist()


def load_screening_data(latents_path: str | Path, table_dir: str | Path | None = None) -> ScreeningData:
    """Join ``latents.npz`` with the electrode table's properties; check that the two agree.

    ``table_dir`` defaults to the shipped table (``assets/electrodes``).
    """
    latents_path = Path(latents_path)
    if not latents_path.is_file():
        raise ValueError(f"no latents file at {latents_path}; train the AFM translator first")
    with np.load(latents_path, allow_pickle=False) as npz:
        missing = [k for k in LATENT_KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{latents_path} lacks {', '.join(missing)} (has {', '.join(npz.files)})")
        mu = npz["mu"].astype(np.float32)
        scaling_factor = float(npz["scaling_factor"])
        material = npz["material"].astype(np.int64)
        ions = npz["working_ion"].astype(str)
        split = npz["split"].astype(str)
    n = len(mu)
    if mu.ndim != 4 or n == 0:
        raise ValueError(f"mu must be a non-empty (N, C, h, w) array, got {mu.shape}")
    if not (material.shape == ions.shape == split.shape == (n,)):
        raise ValueError("material, working_ion and split must hold one entry per latent")
    if not np.isfinite(mu).all() or not math.isfinite(scaling_factor) or scaling_factor <= 0:
        raise ValueError(f"{latents_path} holds non-finite latents or a non-positive scaling_factor")
    unknown = sorted(set(ions) - set(WORKING_IONS))
    if unknown:
        raise ValueError(f"{latents_path} names unknown working ions {unknown}")

    table = load_table(table_dir)
    scaler = load_scaler(table_dir)
    if material.min() < 0 or material.max() >= len(table):
        raise ValueError(f"material indices run to {material.max()}, the table has {len(table)} rows")
    rows = table.iloc[material]
    table_ions = rows["working_ion"].astype(str).to_numpy()
    clash = np.flatnonzero(table_ions != ions)
    if len(clash):
        i = clash[0]
        raise ValueError(f"{len(clash)} latents disagree with the table on the working ion "
                         f"(first: latent {i} says {ions[i]}, table row {material[i]} says {table_ions[i]}); "
                         "were the latents written from another table?")
    props = rows[list(PROPERTY_NAMES)].to_numpy(np.float64)
    if not np.isfinite(props).all():
        raise ValueError("the table has non-finite properties for some of the latents' materials")
    conditions = screening_condition(scaler.transform(props), list(ions))
    return ScreeningData(latents=mu * scaling_factor, conditions=conditions, ions=ions, split=split,
                         scaling_factor=scaling_factor, scaler=scaler, material=material,
                         compositions=composition_matrix(rows).astype(np.float32))


def min_snr_weights(noise_scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) for the scheduler's prediction type.

    Every timestep's loss is reweighted to that of x0-prediction capped at SNR = gamma, so the
    nearly clean timesteps (huge SNR, easy) stop dominating. In clean-latent terms the weight is
    min(SNR, gamma), which vanishes at high noise: with zero-terminal SNR the timesteps where a
    sample's identity is decided get no weight at all. Measured on the grown table (``eval
    screening-denoising``): with gamma 5 the U-Net's clean-latent estimate at t = 999 was 2.3x
    worse than the constant mean latent and its condition changed it by 1 %; trained without it
    (plain v-loss, the shipped recipe), 0.32x on the train split, the condition cutting the error
    by 79 %.
    """
    a = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = a / (1 - a)
    capped = snr.clamp(max=gamma)
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return capped / snr
    if kind == "v_prediction":
        return capped / (snr + 1)
    return capped


def prediction_target(noise_scheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net is trained to output under the scheduler's ``prediction_type``."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(x0, noise, timesteps)
    if kind == "sample":
        return x0
    raise ValueError(f"unknown prediction type {kind!r}")


def screening_loss(unet, noise_scheduler, x0: torch.Tensor, conditions: torch.Tensor,
                   weights: torch.Tensor | None, noise: torch.Tensor, timesteps: torch.Tensor,
                   reduce: bool = True, min_snr_gamma: float | None = None) -> torch.Tensor:
    """Weighted MSE on the scheduler's prediction target; per-sample losses (B,) with ``reduce=False``.

    The weighted sum is divided by the weight sum, so a batch's loss is an ion-balanced mean
    whatever mix of ions the batch happens to hold (``weights=None``: plain mean).
    ``min_snr_gamma`` multiplies each sample's loss by its min-SNR weight.
    """
    noisy = noise_scheduler.add_noise(x0, noise, timesteps)
    pred = unet(noisy, timesteps, **unet_condition_kwargs(unet, conditions)).sample
    target = prediction_target(noise_scheduler, x0, noise, timesteps)
    per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    if min_snr_gamma:
        per_sample = per_sample * min_snr_weights(noise_scheduler, timesteps, min_snr_gamma)
    if not reduce:
        return per_sample
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)


def _fixed_draws(n: int, shape: tuple[int, ...], num_timesteps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps drawn once per evaluation sample, so losses compare across epochs."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *shape), generator=gen)
    timesteps = torch.randint(0, num_timesteps, (n,), generator=gen)
    return noise, timesteps


@torch.no_grad()
def _per_sample_losses(unet, noise_scheduler, loader, accelerator, *, null: bool = False) -> torch.Tensor:
    """Per-sample losses over an evaluation loader (gathered over processes, padding dropped)."""
    unet.eval()
    out = []
    for x0, cond, _weights, noise, t in loader:
        if null:
            cond = torch.zeros_like(cond)
        losses = screening_loss(unet, noise_scheduler, x0, cond, None, noise, t, reduce=False)
        out.append(accelerator.gather_for_metrics(losses))
    return torch.cat(out).cpu()


def _weighted_mean(losses: torch.Tensor, weights: np.ndarray) -> float:
    w = torch.as_tensor(weights, dtype=losses.dtype)
    return float((losses * w).sum() / w.sum())


def _load_component(path: Path, module_name: str, class_name: str) -> torch.nn.Module:
    """The ``class_name`` checkpoint at ``path``."""
    if not path.is_dir():
        raise ValueError(f"{class_name} checkpoint {path} is not a directory")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load {path}: {module_name}.{class_name} is not available ({exc})") from exc
    return cls.from_pretrained(path)


def unet_overrides(channels: tuple[int, ...] | None) -> dict[str, Any]:
    """:func:`build_screening_unet` arguments for U-Net block widths ``channels`` (None: its defaults).

    Attention on every level but the full-resolution one, as in the default; group norm needs a
    group count that divides every width.
    """
    if channels is None:
        return {}
    return {"block_out_channels": channels,
            "attention_levels": (False,) + (True,) * (len(channels) - 1),
            "norm_num_groups": math.gcd(32, *channels),
            "attention_head_dim": min(32, min(channels))}


def train_screening(config: ScreeningTrainingConfig) -> dict:
    """Train the screening U-Net, save the pipeline with its artifacts in ``config.out``; return metrics.

    translator, atom_regressor: checkpoint directories (``AFMTranslator`` / ``AtomRegressor``);
        they are saved with the pipeline, not trained here.
    cond_dropout: probability of replacing a sample's condition by the null vector.
    ema_decay: decay of the weight EMA (with warm-up); 0 trains without EMA. With EMA the EMA
        weights are validated, checkpointed and shipped.
    max_minutes: an epoch that would overrun is not started, and one that overruns stops early.
    prediction_type, zero_terminal_snr: the U-Net's output and the schedule
        (:func:`~battgen.models.screening.make_training_scheduler`).
    min_snr_gamma: min-SNR loss weighting with this cap (0: unweighted).
    condition_norm: "minmax" (scaled properties as they are) or "zscore" (standardised with the
        training materials' mean and spread, stored in the pipeline).
    targets: "all" views, one "canonical" view per material or the per-material "mean" latent
        (:func:`select_targets`).
    select_by: "val_loss" or "val_composition_r2" (composition R² of samples generated for a
        fixed set of validation materials: a conditional metric, where the noise loss hardly
        moves with the condition); with the latter, samples are generated every
        ``select_every`` epochs (and at the last), and only those epochs are candidates.
    x0_quantile: the sampler's clean-latent bound is this percentile of |training target|.
    """
    t_start = time.perf_counter()
    latents_path, table_dir, out_dir, translator, atom_regressor = (
        config.latents, config.table, config.out, config.translator, config.atom_regressor)
    epochs, batch_size, lr, cond_dropout, seed, ema_decay = (
        config.epochs, config.batch_size, config.lr, config.cond_dropout, config.seed, config.ema_decay)
    weight_decay, lr_warmup_steps, grad_clip = config.weight_decay, config.lr_warmup_steps, config.grad_clip
    prediction_type, zero_terminal_snr = config.prediction_type, config.zero_terminal_snr
    min_snr_gamma = config.min_snr_gamma or None
    condition_norm, targets, x0_quantile = config.condition_norm, config.targets, config.x0_quantile
    select_by, select_every = config.select_by, config.select_every
    set_threads(config.threads)
    accelerator = make_accelerator(get_device(config.device))
    gen = seed_everything(seed)

    data = load_screening_data(latents_path, table_dir)
    normalisation = condition_normalisation(data, condition_norm)
    if normalisation is not None:
        shift, scale = (np.asarray(v, np.float32) for v in normalisation)
        n_props = len(data.scaler.names)
        data.conditions[:, :n_props] = (data.conditions[:, :n_props] - shift) / scale
    data = select_targets(data, targets)
    train_idx, val_idx, test_idx = (data.indices(s) for s in ("train", "val", "test"))
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"need train and val latents, found {len(train_idx)} train and {len(val_idx)} val")
    translator_model = _load_component(translator, "battgen.models.translator", "AFMTranslator")
    regressor_model = _load_component(atom_regressor, "battgen.models.atom_regressor", "AtomRegressor")
    translator_scaling = getattr(getattr(translator_model, "config", None), "scaling_factor", None)
    if translator_scaling is None:
        raise ValueError("the translator has no config.scaling_factor")
    if not math.isclose(float(translator_scaling), data.scaling_factor, rel_tol=SCALING_RTOL):
        raise ValueError(f"the latents were scaled with {data.scaling_factor}, the translator decodes "
                         f"with {translator_scaling}: latents and translator come from different runs")

    latent_shape = tuple(data.latents.shape[1:])
    h, w = latent_shape[1:]
    unet_config = {"sample_size": h if h == w else (h, w), "in_channels": latent_shape[0],
                   **unet_overrides(config.channels),
                   **({"embedding": config.embedding} if config.embedding != "projection" else {})}
    unet = build_screening_unet(**unet_config)
    n_params = sum(p.numel() for p in unet.parameters())
    noise_scheduler = make_training_scheduler(prediction_type, zero_terminal_snr)
    x0_bound = float(np.percentile(np.abs(data.latents[train_idx]), x0_quantile))

    def make_pipeline(model) -> BattGenScreeningPipeline:
        return BattGenScreeningPipeline(
            unet=model, scheduler=make_training_scheduler(prediction_type, zero_terminal_snr),
            translator=translator_model.eval(), atom_regressor=regressor_model.eval(),
            property_names=list(data.scaler.names), property_low=list(data.scaler.low),
            property_high=list(data.scaler.high), working_ions=list(WORKING_IONS),
            condition_shift=None if normalisation is None else normalisation[0],
            condition_scale=None if normalisation is None else normalisation[1],
            x0_bound=x0_bound,
        )

    # A fixed set of validation materials and initial noise for selection by composition R².
    _, first_view = np.unique(data.material[val_idx], return_index=True)
    select_rows = val_idx[first_view]
    select_rows = np.random.default_rng(seed).permutation(select_rows)[:SELECT_MATERIALS]
    select_noise = torch.randn((len(select_rows), *latent_shape), generator=torch.Generator().manual_seed(seed + 3))
    num_timesteps = noise_scheduler.config.num_train_timesteps

    train_weights = inverse_frequency_weights(data.ions[train_idx])
    val_weights = inverse_frequency_weights(data.ions[val_idx])
    test_weights = inverse_frequency_weights(data.ions[test_idx]) if len(test_idx) else np.zeros(0, np.float32)

    def tensors(idx: np.ndarray, weights: np.ndarray, draw_seed: int | None):
        parts = [torch.as_tensor(data.latents[idx]), torch.as_tensor(data.conditions[idx]),
                 torch.as_tensor(weights)]
        if draw_seed is not None:
            parts += list(_fixed_draws(len(idx), latent_shape, num_timesteps, draw_seed))
        return torch.utils.data.TensorDataset(*parts)

    train_loader = torch.utils.data.DataLoader(tensors(train_idx, train_weights, None), batch_size=batch_size,
                                               shuffle=True, drop_last=len(train_idx) > batch_size,
                                               generator=gen)
    val_loader = torch.utils.data.DataLoader(tensors(val_idx, val_weights, seed + 1), batch_size=EVAL_BATCH)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=weight_decay)
    # Linear warm-up: Adam's first steps with a fresh second-moment estimate are the noisiest.
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, lr_warmup_steps)))
    unet, optimizer, train_loader, val_loader, lr_sched = accelerator.prepare(
        unet, optimizer, train_loader, val_loader, lr_sched)
    raw_unet = accelerator.unwrap_model(unet)
    ema = None
    if ema_decay:
        ema = EMAModel(raw_unet.parameters(), decay=ema_decay, use_ema_warmup=True)
        ema.to(accelerator.device)

    def evaluate(loader, weights, null: bool = False) -> tuple[float, torch.Tensor]:
        if ema is not None:  # validate what would be shipped
            ema.store(raw_unet.parameters())
            ema.copy_to(raw_unet.parameters())
        losses = _per_sample_losses(unet, noise_scheduler, loader, accelerator, null=null)
        if ema is not None:
            ema.restore(raw_unet.parameters())
        return _weighted_mean(losses, weights), losses

    @torch.no_grad()
    def selection_r2() -> float:
        """Composition R² of one sample per selection material (what is shipped: EMA weights)."""
        if ema is not None:
            ema.store(raw_unet.parameters())
            ema.copy_to(raw_unet.parameters())
        pipeline = make_pipeline(raw_unet)
        pipeline.set_progress_bar_config(disable=True)
        z = pipeline.denoise(torch.as_tensor(data.conditions[select_rows]), num_inference_steps=SELECT_STEPS,
                             guidance_scale=DEFAULT_GUIDANCE, scheduler="ddim",
                             latents=select_noise.to(accelerator.device))
        counts = regressor_model.predict_from_mu(z.to(_module_dtype(regressor_model))).float().cpu().numpy()
        if ema is not None:
            ema.restore(raw_unet.parameters())
        raw_unet.train()
        return float(r2_score(data.compositions[select_rows].ravel(), counts.ravel()))

    history: dict[str, list] = {k: [] for k in ("train_loss", "val_loss", "val_composition_r2", "lr",
                                                 "epoch_seconds")}
    def shipped_state() -> dict[str, torch.Tensor]:
        if ema is None:
            return cpu_state(raw_unet)
        ema.store(raw_unet.parameters())
        ema.copy_to(raw_unet.parameters())
        state = cpu_state(raw_unet)
        ema.restore(raw_unet.parameters())
        return state

    stopper = EarlyStopping(config.patience)
    best_val: dict[str, float | None] = {"val_loss": math.inf, "val_composition_r2": None}
    stopped, step = "max_epochs", 0
    budget = TimeBudget(config.max_minutes)
    quiet = not config.progress or not accelerator.is_local_main_process
    epoch_bar = tqdm(range(epochs), desc="screening", unit="epoch", disable=quiet)
    for epoch in epoch_bar:
        if not budget.allows_epoch(history["epoch_seconds"]):
            stopped = "max_minutes"
            break
        t_epoch = time.perf_counter()
        unet.train()
        loss_sum, weight_sum = 0.0, 0.0
        batch_bar = tqdm(train_loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=quiet)
        for x0, cond, weights in batch_bar:
            # Condition dropout: the null vector (flag off) teaches the unconditional score.
            drop = torch.rand(len(cond), device=cond.device) < cond_dropout
            cond = torch.where(drop[:, None], null_condition(len(cond), cond.shape[1], cond.device, cond.dtype), cond)
            noise = torch.randn_like(x0)
            t = torch.randint(0, num_timesteps, (len(x0),), device=x0.device)
            loss = screening_loss(unet, noise_scheduler, x0, cond, weights, noise, t, min_snr_gamma=min_snr_gamma)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if grad_clip:
                accelerator.clip_grad_norm_(unet.parameters(), grad_clip)
            optimizer.step()
            lr_sched.step()
            if ema is not None:
                ema.step(raw_unet.parameters())
            step += 1
            loss_sum += loss.item() * float(weights.sum())
            weight_sum += float(weights.sum())
            batch_bar.set_postfix(loss=f"{loss.item():.4f}")
            if budget.exhausted():
                stopped = "max_minutes"
                break
        batch_bar.close()
        val_loss, _ = evaluate(val_loader, val_weights)
        by_r2 = select_by == "val_composition_r2"
        # The same test that decides, at the next epoch's start, not to run it.
        last = epoch + 1 == epochs or not budget.allows_epoch(history["epoch_seconds"]
                                                             + [time.perf_counter() - t_epoch])
        val_r2 = selection_r2() if by_r2 and ((epoch + 1) % select_every == 0 or last or stopped == "max_minutes") \
            else None
        history["train_loss"].append(loss_sum / max(weight_sum, 1e-12))
        history["val_loss"].append(val_loss)
        history["val_composition_r2"].append(val_r2)
        history["lr"].append(float(lr_sched.get_last_lr()[0]))
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        epoch_bar.set_postfix(train=f"{history['train_loss'][-1]:.4f}", val=f"{val_loss:.4f}",
                              **({} if val_r2 is None else {"r2": f"{val_r2:.3f}"}))
        if by_r2 and val_r2 is None:
            continue  # not a selection epoch: neither a candidate nor a patience step
        reason = stopper.update(epoch, -val_r2 if by_r2 else val_loss, shipped_state)
        if stopper.best_epoch == epoch:
            best_val = {"val_loss": val_loss, "val_composition_r2": val_r2}
        if reason:
            stopped = reason
            break
        if stopped == "max_minutes":
            break
    epoch_bar.close()
    train_seconds = budget.elapsed()
    best = {**best_val, "epoch": stopper.best_epoch, "state": stopper.best()}

    # ------------------------------------------------------------ best weights: test + save
    ema = None  # the checkpointed state already holds the EMA weights when EMA was on
    raw_unet.load_state_dict(best["state"])
    test_metrics: dict[str, Any] = {}
    if len(test_idx):
        test_loader = accelerator.prepare(torch.utils.data.DataLoader(
            tensors(test_idx, test_weights, seed + 2), batch_size=EVAL_BATCH))
        cond_loss, cond_losses = evaluate(test_loader, test_weights)
        null_loss, _ = evaluate(test_loader, test_weights, null=True)
        test_ions = data.ions[test_idx]
        test_metrics = {
            "loss": cond_loss,
            # Same noise and timesteps with the null condition: how much the properties and the
            # ion help predict the noise. Near zero means the model ignores its conditions.
            "loss_unconditional": null_loss,
            "condition_gain": null_loss - cond_loss,
            "loss_by_ion": {ion: float(cond_losses[torch.as_tensor(test_ions == ion)].mean())
                            for ion in WORKING_IONS if (test_ions == ion).any()},
        }

    metrics = {
        "best_epoch": best["epoch"] + 1,
        "best_val_loss": best["val_loss"],
        "selected_by": select_by,
        "best_val_composition_r2": best.get("val_composition_r2"),
        "final_train_loss": history["train_loss"][-1] if history["train_loss"] else None,
        "epochs_run": len(history["val_loss"]),
        "steps": step,
        "stopped": stopped,
        "seconds_per_epoch": float(np.mean(history["epoch_seconds"])),
        "train_seconds": train_seconds,
        "parameters": n_params,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_test": int(len(test_idx)),
        "test": test_metrics,
        "history": history,
    }
    if accelerator.is_main_process:
        unet_cpu = build_screening_unet(**unet_config)
        unet_cpu.load_state_dict(best["state"])
        pipeline = make_pipeline(unet_cpu.eval())
        # Staged beside the checkpoint and swapped in whole: a killed run never leaves half of one.
        with atomic.atomic_directory(out_dir) as staging:
            pipeline.save_pretrained(staging)
            write_metrics(staging, metrics)
            hyper = {
                "epochs": epochs, "batch_size": batch_size, "lr": lr, "cond_dropout": cond_dropout,
                "ema_decay": ema_decay, "patience": config.patience, "weight_decay": weight_decay,
                "lr_warmup_steps": lr_warmup_steps, "grad_clip": grad_clip, "optimizer": "AdamW",
                "max_minutes": config.max_minutes, "device": str(accelerator.device),
                "num_processes": accelerator.num_processes, "torch_threads": torch.get_num_threads(),
                "noise_scheduler": {k: v for k, v in noise_scheduler.config.items() if not k.startswith("_")},
                "unet": {k: v for k, v in unet_cpu.config.items() if not k.startswith("_")},
                "loss": f"{prediction_type} MSE, inverse-frequency per-ion sample weights"
                        + (f", min-SNR weights (gamma {min_snr_gamma})" if min_snr_gamma else ""),
                "prediction_type": prediction_type, "zero_terminal_snr": bool(zero_terminal_snr),
                "min_snr_gamma": min_snr_gamma, "condition_norm": condition_norm, "targets": targets,
                "select_by": select_by, "x0_quantile": x0_quantile, "x0_bound": x0_bound,
            }
            write_metadata(
                staging,
                command=command_line(config),
                config=hyper,
                seed=seed,
                inputs=[latents_path, table_path(table_dir)],
                wall_time_s=time.perf_counter() - t_start,
                extra={
                    "artifact": "screening",
                    "translator": for_display(translator),
                    "atom_regressor": for_display(atom_regressor),
                    "scaling_factor": data.scaling_factor,
                    "property_ranges": data.scaler.as_dict(),
                    "train_ion_counts": {ion: int((data.ions[train_idx] == ion).sum()) for ion in WORKING_IONS},
                },
            )
    accelerator.wait_for_everyone()
    return metrics
