"""Train the AFM translator (stack -> descriptors VAE), adversarially or as the no-GAN ablation.

``train_translator(TranslatorTrainingConfig(data=...))`` reads ``dataset.npz``
(:func:`battgen.afm.loader.load_afm_dataset`) and optimises, per view,

    L1(descriptors) + beta * KL + lambda_adv * adversarial(generator),

each term weighted by the inverse frequency of the view's working ion (every ion counts the
same, however few materials it has). The adversarial term comes from the two-branch
conditional PatchGAN of :mod:`battgen.models.discriminator`, trained alternately (one
discriminator step per generator step) and switched on after a warm-up: a discriminator
facing a decoder that still paints noise wins at once and its gradients are useless, while
L1 alone first gets the descriptors into the right place. ``adversarial=False`` is the ablation:
the same network and schedule, no discriminator at all.

Validation (posterior mean, every epoch) scores ion-weighted L1 + beta * KL, the objective both
runs share; the best epoch is kept, and for the adversarial run only epochs with the
adversarial term on are eligible (otherwise the warm-up epoch with the lowest L1 could be
kept and the "adversarial" checkpoint would be the ablation in disguise).

``accelerate`` places the models (CPU, one GPU, or several with ``accelerate launch``); the
device is chosen by :func:`battgen.device.get_device`. Left in ``out_dir``:

* ``config.json`` + safetensors (``AFMTranslator.from_pretrained``), with ``scaling_factor`` =
  1 / std of the train-split latent means;
* ``discriminator/`` (adversarial run only), the discriminator of the same epoch;
* ``metrics.json``: test-split metrics (:func:`battgen.eval.afm_metrics.translator_metrics`)
  and the training history; ``metadata.json``: command, hyperparameters, seed, input hash;
* ``latents.npz``: posterior mean ``mu`` (N, 4, H/4, W/4, float16, unscaled) of every view
  with ``material``, ``rotation``, ``split``, ``working_ion`` and ``scaling_factor``, for the
  screening diffusion model and the app's nearest-by-latent search.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from battgen import atomic
from battgen.afm.augment import augment_views
from battgen.afm.loader import GREY_CHANNELS, TYPE_MAP_CHANNELS, AFMDataset, load_afm_dataset
from battgen.artifacts import write_metadata, write_metrics
from battgen.device import get_device
from battgen.eval.afm_metrics import TYPE_CLASSES, translator_metrics, type_map_class_tensor, type_map_classes
from battgen.eval.sei_latent import LATENTS_FILENAME
from battgen.models.discriminator import (
    PatchDiscriminator,
    discriminator_loss,
    generator_adversarial_loss,
)
from battgen.models.translator import (
    AFMTranslator,
    AFMTranslatorOutput,
    channels_last,
    clamped_channels,
    kl_per_element,
)
from battgen.train.afm_latents import EVAL_BATCH, encode_means, latents_arrays, view_batch
from battgen.train.common import EarlyStopping, TimeBudget, cpu_state, make_accelerator, seed_everything, set_threads
from battgen.train.configs import TranslatorTrainingConfig
from battgen.train.options import command_line

DISCRIMINATOR_SUBFOLDER = "discriminator"


def type_map_class_weights(descriptors: np.ndarray, idx: np.ndarray, power: float,
                           batch: int = 512) -> np.ndarray:
    """Per-class weights (of TYPE_CLASSES) for the type-map L1: inverse class frequency over the
    views ``idx`` raised to ``power`` (0: all 1; 1: full inverse frequency), scaled so that the
    average pixel weight is 1. The gas-phase class covers about 1 % of the pixels, so unweighted it
    costs the decoder almost nothing to leave it out."""
    counts = np.zeros(len(TYPE_CLASSES), np.int64)
    for start in range(0, len(idx), batch):
        rgb = descriptors[idx[start:start + batch]][..., TYPE_MAP_CHANNELS]
        counts += np.bincount(type_map_classes(rgb).ravel(), minlength=len(TYPE_CLASSES))
    freq = counts / max(1, counts.sum())
    weights = np.where(freq > 0, np.maximum(freq, 1e-12) ** -float(power), 0.0)
    return (weights / max((freq * weights).sum(), 1e-12)).astype(np.float32)


def translator_loss(out: AFMTranslatorOutput, target: torch.Tensor, weights: torch.Tensor | None,
                    beta: float, class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Ion-weighted reconstruction and KL terms.

    Returns ``l1_per_channel`` (6,) (weighted mean absolute error of each descriptor), ``recon``
    (their mean), ``kl`` (per-element KL, weighted mean) and ``vae`` = recon + beta * kl.
    ``class_weights`` (one per type-map class) weight each pixel of the type-map channels by the
    class the target gives it.
    """
    w = torch.ones(target.shape[0], device=target.device) if weights is None else weights.to(target.dtype)
    error = (out.descriptors - target).abs()
    if class_weights is not None:
        pixel = class_weights.to(error.dtype)[type_map_class_tensor(target)]  # (B, H, W)
        error = torch.cat([error[:, GREY_CHANNELS], error[:, TYPE_MAP_CHANNELS] * pixel[:, None]], dim=1)
    per_channel = error.mean(dim=(2, 3))  # (B, 6)
    l1_per_channel = (per_channel * w[:, None]).mean(0)
    recon = l1_per_channel.mean()
    kl = (kl_per_element(out.posterior) * w).mean()
    return {"l1_per_channel": l1_per_channel, "recon": recon, "kl": kl, "vae": recon + beta * kl}


def _split_weights(data: AFMDataset) -> np.ndarray:
    """Per-row ion weights, normalised within each split (mean 1 over that split's rows)."""
    w = np.zeros(len(data), np.float32)
    for s in ("train", "val", "test"):
        idx = data.indices(s)
        if idx.size:
            w[idx] = data.ion_weights(idx)
    return w


def _augmented_batch(stacks: torch.Tensor, descriptors: torch.Tensor, idx: torch.Tensor, device,
                     probability: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``idx`` as :func:`view_batch` gives them, each view distorted with ``probability``."""
    rows = idx.cpu()
    x, y = augment_views(stacks[rows].float().numpy(), descriptors[rows].float().numpy(), probability, rng)
    return tuple(torch.from_numpy(a).to(device).permute(0, 3, 1, 2).contiguous() for a in (x, y))


@torch.no_grad()
def _evaluate(model: AFMTranslator, stacks, descriptors, weights, idx, device, beta, class_weights=None) -> dict:
    """Validation terms with the posterior mean (deterministic, comparable across epochs)."""
    model.eval()
    n = len(idx)
    sums = {"recon": 0.0, "kl": 0.0, "vae": 0.0}
    per_channel = torch.zeros(model.config.descriptor_channels)
    for start in range(0, n, EVAL_BATCH):
        b = torch.as_tensor(idx[start:start + EVAL_BATCH])
        out = model(view_batch(stacks, b, device), sample_posterior=False)
        losses = translator_loss(out, view_batch(descriptors, b, device), weights[b].to(device), beta,
                                 class_weights)
        for k in sums:
            sums[k] += losses[k].item() * len(b)
        per_channel += losses["l1_per_channel"].cpu() * len(b)
    return {**{k: v / n for k, v in sums.items()}, "l1_per_channel": (per_channel / n).tolist()}


# Config entries that may differ between a checkpoint and the model started from it.
_INIT_FREE_CONFIG = ("output_activation", "scaling_factor", "descriptor_names", "stack_order")


def _load_initial_weights(model: AFMTranslator, disc: PatchDiscriminator | None, source: Path) -> None:
    """Copy a checkpoint's weights into ``model`` (and ``disc``), refusing another architecture."""
    start = AFMTranslator.from_pretrained(source)
    differ = sorted(k for k in model.config if k not in _INIT_FREE_CONFIG and k in start.config
                    and not k.startswith("_") and list(np.atleast_1d(model.config[k])) !=
                    list(np.atleast_1d(start.config[k])))
    if differ:
        raise ValueError(f"{source} has another architecture ({', '.join(differ)}); "
                         f"--init-from needs the same block widths and sample size")
    model.load_state_dict(start.state_dict())
    if disc is not None and (source / DISCRIMINATOR_SUBFOLDER).is_dir():
        disc.load_state_dict(PatchDiscriminator.from_pretrained(source / DISCRIMINATOR_SUBFOLDER).state_dict())


def _reinit_output_rows(model: AFMTranslator, start_activation: str) -> None:
    """Start afresh the output rows whose activation differs from the starting checkpoint's (all rows
    when it is the same): a row trained through tanh is wrong behind a clamp, one trained for its own
    activation is kept."""
    names = model.config.descriptor_names
    now = clamped_channels(model.config.output_activation, names)
    before = clamped_channels(start_activation, names)
    rows = [i for i, (a, b) in enumerate(zip(now, before)) if a != b] or list(range(len(names)))
    conv = model.decoder.conv_out
    fresh = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    with torch.no_grad():
        conv.weight[rows] = fresh.weight[rows].to(conv.weight)
        conv.bias[rows] = fresh.bias[rows].to(conv.bias)


def train_translator(config: TranslatorTrainingConfig) -> dict:
    """Train the translator on ``config.data`` and write its artifacts to ``config.out``; return the metrics.

    adversarial False trains the ablation (no discriminator). beta: KL weight on the per-element
    KL (L1 is per pixel, so 1e-4 keeps the latent informative while bounding its scale).
    adv_weight: lambda_adv; 0.01 is pix2pix's ratio of GAN to L1 weight (1 : 100).
    adv_warmup_epochs: L1 + KL only before this epoch; with ``max_minutes`` the adversarial term
    also switches on once the same fraction of the time budget is spent, so a run cut short by
    its budget is still adversarial. patience counts eligible epochs only.
    """
    t_start = time.perf_counter()
    adversarial, epochs, beta, gan_loss = config.adversarial, config.epochs, config.beta, config.gan_loss
    out_dir = config.out
    block_out_channels = config.channels
    norm_num_groups = config.norm_num_groups
    if norm_num_groups is None:
        norm_num_groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(ch % g == 0 for ch in block_out_channels))
    warmup = max(1, epochs // 4) if config.adv_warmup_epochs is None else config.adv_warmup_epochs
    disc_lr = config.lr if config.disc_lr is None else config.disc_lr
    set_threads(config.threads)
    accelerator = make_accelerator(get_device(config.device))
    dev = accelerator.device
    gen = seed_everything(config.seed)

    # float16 on the host halves memory (5,000 views at 64 x 64 are 0.65 GB instead of 1.3 GB);
    # each batch is cast to float32 on the device.
    data = load_afm_dataset(config.data, dtype=np.float16)
    train_idx, val_idx, test_idx = (data.indices(s) for s in ("train", "val", "test"))
    if test_idx.size < 1:
        raise ValueError(f"{data.path} has an empty test split")
    stacks = torch.from_numpy(data.stacks)
    descriptors = torch.from_numpy(data.descriptors)
    weights = torch.from_numpy(_split_weights(data))
    height, width = data.grid
    augment_rng = np.random.default_rng([config.seed, 1])  # its own stream: same batches with or without it
    type_weights = (type_map_class_weights(data.descriptors, train_idx, config.type_map_weighting)
                    if config.type_map_weighting > 0 else None)
    class_weights = None if type_weights is None else torch.from_numpy(type_weights).to(dev)

    model = AFMTranslator(
        block_out_channels=block_out_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=norm_num_groups,
        sample_size=height,
        descriptor_names=list(data.descriptor_names),
        output_activation=config.output_activation,
    )
    disc = None
    if adversarial:
        disc = PatchDiscriminator(base_channels=config.disc_channels, n_layers=config.disc_layers,
                                  norm=config.disc_norm, loss=gan_loss)
        if min(height, width) < disc.min_grid():
            raise ValueError(f"the {height} x {width} grid is too small for a {config.disc_layers}-layer discriminator "
                             f"(needs {disc.min_grid()}); lower disc_layers")
    if config.init_from is not None:
        _load_initial_weights(model, disc, Path(config.init_from))
    if config.reinit_output:
        _reinit_output_rows(model, AFMTranslator.load_config(str(config.init_from)).get("output_activation", "tanh"))
    if config.freeze_encoder:
        model.encoder.requires_grad_(False)
        model.quant_conv.requires_grad_(False)
    # Adam with beta1 = 0.5 as in pix2pix / taming: less momentum keeps the two-player game from
    # overshooting. The ablation uses the same optimiser so only the adversarial term differs.
    opt_g = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr, betas=(0.5, 0.9))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(train_idx)), batch_size=config.batch_size, shuffle=True,
        generator=gen)
    if disc is not None:
        opt_d = torch.optim.Adam(disc.parameters(), lr=disc_lr, betas=(0.5, 0.9))
        model, disc, opt_g, opt_d, loader = accelerator.prepare(model, disc, opt_g, opt_d, loader)
    else:
        opt_d = None
        model, opt_g, loader = accelerator.prepare(model, opt_g, loader)
    raw_model: AFMTranslator = accelerator.unwrap_model(model)

    history: dict[str, list] = {k: [] for k in (
        "adversarial", "train_recon", "train_kl", "train_g_adv", "train_d_loss",
        "val_vae", "val_recon", "val_kl", "val_l1_per_channel", "epoch_seconds")}
    stopper = EarlyStopping(config.patience)
    adversarial_phase = False
    stopped = "max_epochs"
    budget = TimeBudget(config.max_minutes)
    quiet = not config.progress or not accelerator.is_local_main_process

    epoch_bar = tqdm(range(epochs), desc="translator" + ("" if adversarial else " (no adv)"),
                     unit="epoch", disable=quiet)
    for epoch in epoch_bar:
        if not budget.allows_epoch(history["epoch_seconds"]):
            stopped = "max_minutes"
            break
        adv_on = adversarial and (epoch >= warmup or budget.fraction_spent() >= warmup / epochs)
        t_epoch = time.perf_counter()
        model.train()
        if disc is not None:
            disc.train()
        sums = {"recon": 0.0, "kl": 0.0, "g_adv": 0.0, "d_loss": 0.0}
        seen = 0
        batch_bar = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=quiet)
        for (b,) in batch_bar:
            if config.augment > 0:
                x, y = _augmented_batch(stacks, descriptors, b, dev, config.augment, augment_rng)
            else:
                x = view_batch(stacks, b, dev)
                y = view_batch(descriptors, b, dev)
            w = weights[b.cpu()].to(dev)
            out = model(x, sample_posterior=True)
            losses = translator_loss(out, y, w, beta, class_weights)
            loss = losses["vae"]
            g_adv = torch.zeros((), device=dev)
            if adv_on:
                fake = disc(x, out.descriptors)
                g_adv = sum(generator_adversarial_loss(l, gan_loss, w) for l in (fake.grey, fake.type_map))
                loss = loss + config.adv_weight * g_adv
            opt_g.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt_g.step()

            d_loss = torch.zeros((), device=dev)
            if adv_on:
                # Real and fake in one forward pass: under DDP a module may run forward once per backward.
                logits = disc(torch.cat([x, x]), torch.cat([y, out.descriptors.detach()]))
                n = x.shape[0]
                d_loss = sum(discriminator_loss(l[:n], l[n:], gan_loss, w) for l in (logits.grey, logits.type_map))
                # The generator step left gradients in the discriminator; they must not leak in.
                opt_d.zero_grad(set_to_none=True)
                accelerator.backward(d_loss)
                opt_d.step()

            seen += len(b)
            for k, v in (("recon", losses["recon"]), ("kl", losses["kl"]), ("g_adv", g_adv), ("d_loss", d_loss)):
                sums[k] += v.item() * len(b)
            batch_bar.set_postfix(l1=f"{losses['recon'].item():.4f}",
                                  **({"d": f"{d_loss.item():.3f}"} if adv_on else {}))
        batch_bar.close()

        val = _evaluate(raw_model, stacks, descriptors, weights, val_idx, dev, beta, class_weights)
        history["adversarial"].append(adv_on)
        for k in sums:
            history[f"train_{k}"].append(sums[k] / max(1, seen))
        for k in ("vae", "recon", "kl", "l1_per_channel"):
            history[f"val_{k}"].append(val[k])
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        epoch_bar.set_postfix(val_l1=f"{val['recon']:.4f}", kl=f"{val['kl']:.3g}")

        # Once the adversarial term is on, earlier (warm-up) bests no longer count.
        if adv_on and not adversarial_phase:
            stopper.reset()
            adversarial_phase = True
        reason = stopper.update(
            epoch, val["vae"],
            lambda: (cpu_state(raw_model), cpu_state(accelerator.unwrap_model(disc)) if adv_on else None),
            counts=not adversarial or adv_on)  # warm-up epochs never count towards early stopping
        if reason:
            stopped = reason
            break
    epoch_bar.close()
    train_seconds = budget.elapsed()
    state, disc_state = stopper.best()
    best = {"score": stopper.best_score, "epoch": stopper.best_epoch, "state": state, "disc_state": disc_state,
            "adversarial": adversarial_phase}

    metrics: dict = {}
    if accelerator.is_main_process:
        metrics = _finish(
            raw_model, accelerator.unwrap_model(disc) if disc is not None else None, best, data, stacks,
            descriptors, dev, out_dir, history=history, stopped=stopped, train_seconds=train_seconds,
            seed=config.seed, t_start=t_start, command=command_line(config), adversarial=adversarial,
            hyper={
                "adversarial": adversarial, "epochs": epochs, "batch_size": config.batch_size, "lr": config.lr,
                "disc_lr": disc_lr if adversarial else None, "beta": beta,
                "type_map_weighting": config.type_map_weighting,
                "augment": config.augment,
                "output_activation": config.output_activation,
                "init_from": None if config.init_from is None else str(config.init_from),
                "freeze_encoder": config.freeze_encoder,
                "reinit_output": config.reinit_output,
                "type_map_class_weights": (None if type_weights is None
                                           else dict(zip(TYPE_CLASSES, type_weights.tolist()))),
                "adv_weight": config.adv_weight if adversarial else 0.0,
                "adv_warmup_epochs": warmup if adversarial else None, "gan_loss": gan_loss if adversarial else None,
                "patience": config.patience, "optimizer": "Adam(betas=(0.5, 0.9))", "max_minutes": config.max_minutes,
                "device": str(dev), "num_processes": accelerator.num_processes,
                "torch_threads": torch.get_num_threads(), "sample_weights": "inverse working-ion frequency",
            })
    accelerator.wait_for_everyone()
    return metrics


def _finish(model: AFMTranslator, disc: PatchDiscriminator | None, best: dict, data: AFMDataset,
            stacks: torch.Tensor, descriptors: torch.Tensor, dev: torch.device, out_dir: Path, *,
            history: dict, stopped: str, train_seconds: float, seed: int, t_start: float,
            command: str, adversarial: bool, hyper: dict) -> dict:
    """Restore the best epoch, set the latent scaling factor, score the test split, write everything."""
    model.load_state_dict(best["state"])
    model.eval()
    all_idx = np.arange(len(data))
    mu = encode_means(model, stacks, all_idx, dev)
    train_idx, val_idx, test_idx = (data.indices(s) for s in ("train", "val", "test"))
    std = float(mu[train_idx].std())
    if not (math.isfinite(std) and std > 0):
        raise RuntimeError(f"train latents have standard deviation {std}; cannot set a scaling factor")
    # Stable Diffusion's convention: the diffusion model sees mu * scaling_factor with unit variance.
    model.register_to_config(scaling_factor=1.0 / std)

    with torch.no_grad():
        pred = np.concatenate([channels_last(model.decode(torch.as_tensor(mu[test_idx[i:i + EVAL_BATCH]], device=dev)))
                               for i in range(0, len(test_idx), EVAL_BATCH)])
    true = data.descriptors[test_idx].astype(np.float32)
    test_metrics = translator_metrics(true, pred, data.descriptor_names, ions=data.working_ion[test_idx])

    # Staged beside the checkpoint and swapped in whole: a killed run never leaves half of one.
    with atomic.atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        if disc is not None and best["disc_state"] is not None:
            disc.load_state_dict(best["disc_state"])
            disc.save_pretrained(staging / DISCRIMINATOR_SUBFOLDER)
        np.savez_compressed(staging / LATENTS_FILENAME,
                            **latents_arrays(mu, data, float(model.config.scaling_factor)))
        epochs_run = len(history["epoch_seconds"])
        metrics = {
            "adversarial": adversarial,
            "adversarial_active_at_best": bool(best["adversarial"]),
            "test": test_metrics,
            "best_epoch": best["epoch"] + 1,
            "best_val_score": best["score"],
            "val_score": "ion-weighted L1 + beta * KL, posterior mean"
                         + ("" if hyper["type_map_class_weights"] is None else ", type-map L1 class-weighted"),
            "type_map_class_weights": hyper["type_map_class_weights"],
            "epochs_run": epochs_run,
            "stopped": stopped,
            "seconds_per_epoch": float(np.mean(history["epoch_seconds"])),
            # per epoch and training view, validation included: times N_train gives an epoch's cost
            "seconds_per_train_view": float(np.sum(history["epoch_seconds"]) / max(1, epochs_run * len(train_idx))),
            "train_seconds": train_seconds,
            "scaling_factor": model.config.scaling_factor,
            "latent_shape": list(mu.shape[1:]),
            "parameters": {"translator": model.num_parameters(),
                           **({"discriminator": disc.num_parameters()} if disc is not None else {})},
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
            "history": history,
        }
        if adversarial and not best["adversarial"]:
            metrics["warning"] = "training ended before the adversarial term switched on; this is an L1 + KL model"
        write_metrics(staging, metrics)
        write_metadata(
            staging,
            command=command,
            config={**hyper,
                    "model": {k: v for k, v in model.config.items() if not k.startswith("_")},
                    "discriminator": ({k: v for k, v in disc.config.items() if not k.startswith("_")}
                                      if disc is not None else None)},
            seed=seed,
            inputs=[data.path],
            wall_time_s=time.perf_counter() - t_start,
            extra={"artifact": "afm_translator" if adversarial else "afm_translator_noadv"},
        )
    return metrics
