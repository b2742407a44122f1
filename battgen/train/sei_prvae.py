"""Train the SEI VAE / prVAE / conditional prVAE on a kinetic Monte Carlo dataset.

``train_sei_model(SEITrainingConfig(kind="prvae", data=...))`` reads ``data/dataset.npz``,
trains on the train split with early stopping on the validation split, and leaves in ``out``:

* ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``SEIPRVAE.from_pretrained``),
  the best-validation weights;
* ``metrics.json``: test-split metrics (see :mod:`battgen.eval.sei_metrics`) and the
  training history;
* ``metadata.json``: command, hyperparameters, seed, input hash, wall time;
* ``latents.npz``: test-split latent means, a PCA of the latent space and its coordinates,
  true/predicted properties, barriers and dataset indices, for the app's latent-space page.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from battgen import atomic
from battgen.artifacts import write_metadata, write_metrics
from battgen.device import get_device
from battgen.eval.sei_baselines import property_baselines
from battgen.eval.sei_latent import LATENTS_FILENAME
from battgen.eval.sei_metrics import passivated_property_metrics, passivated_runs, sei_test_metrics
from battgen.sei.dataset import load_dataset
from battgen.models.prvae import (
    MODEL_KINDS,
    PROPERTY_NAMES,
    SPECIES_NAMES,
    SEIPRVAE,
    build_sei_model,
    lattice_to_onehot,
    logits_to_lattice,
    sei_vae_loss,
)
from battgen.train.common import EarlyStopping, TimeBudget, cpu_state, seed_everything, set_threads
from battgen.train.configs import SEITrainingConfig
from battgen.train.options import command_line

# Enough components for the app's 3-D view plus a look at how fast variance decays.
N_PCA_COMPONENTS = 5
# Inverse-frequency class weights are capped so a species with a handful of trapped sites
# cannot dominate the reconstruction loss (and its gradient noise) over the whole lattice.
MAX_CLASS_WEIGHT_RATIO = 20.0
EVAL_BATCH = 512


def class_weights_from_frequencies(lattices: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights, site frequencies) for the reconstruction cross-entropy.

    Weights go as 1/sqrt(frequency): plain inverse frequency would make the few trapped
    P/O/OO sites outweigh whole Li2CO3 layers, while no weighting lets the decoder learn
    "everything is solvent or ATT". Capped at MAX_CLASS_WEIGHT_RATIO x the smallest weight,
    then normalised so the frequency-weighted mean is 1 and the loss keeps its scale.
    Species absent from the train split get the cap (they have no sites, so it is moot).
    """
    counts = np.bincount(lattices.ravel(), minlength=num_classes).astype(np.float64)
    freq = counts / counts.sum()
    w = np.full(num_classes, np.nan)
    present = freq > 0
    w[present] = freq[present] ** -0.5
    cap = np.nanmin(w) * MAX_CLASS_WEIGHT_RATIO
    w = np.minimum(np.nan_to_num(w, nan=cap), cap)
    w /= (w * freq).sum()
    return w.astype(np.float32), freq


@torch.no_grad()
def encode_split(model: SEIPRVAE, lattices: torch.Tensor, barriers: torch.Tensor | None,
                 idx: np.ndarray, decode: bool = False) -> dict[str, np.ndarray]:
    """Latent means (and optionally mu-decoded lattices, predicted properties) of rows ``idx``."""
    model.eval()
    mus, logvars, recons, props = [], [], [], []
    for start in range(0, len(idx), EVAL_BATCH):
        b = torch.as_tensor(idx[start:start + EVAL_BATCH], device=lattices.device)
        mu, logvar = model.encode(lattice_to_onehot(lattices[b], model.num_classes))
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
        if decode:
            logits = model.decode(mu, barriers[b] if model.config.condition_dim else None)
            recons.append(logits_to_lattice(logits).cpu())
        if model.regressor_head is not None:
            props.append(model.predict_properties(mu).cpu())
    out = {"mu": torch.cat(mus).numpy(), "logvar": torch.cat(logvars).numpy()}
    if decode:
        out["recon"] = torch.cat(recons).numpy()
    if props:
        out["properties_pred"] = torch.cat(props).numpy()
    return out


def _evaluate_loss(model, lattices, barriers, props, idx, *, beta, lam, class_weights) -> dict[str, float]:
    """Mean validation losses with the posterior mean (deterministic, comparable across epochs)."""
    model.eval()
    sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "prop": 0.0}
    with torch.no_grad():
        for start in range(0, len(idx), EVAL_BATCH):
            b = torch.as_tensor(idx[start:start + EVAL_BATCH], device=lattices.device)
            out = model(lattice_to_onehot(lattices[b], model.num_classes),
                        barriers[b] if model.config.condition_dim else None, sample_posterior=False)
            losses = sei_vae_loss(model, out, lattices[b], props[b], beta=beta, lam=lam,
                                  class_weights=class_weights)
            for k in sums:
                sums[k] += losses[k].item() * len(b)
    return {k: v / len(idx) for k, v in sums.items()}


def train_sei_model(config: SEITrainingConfig) -> dict:
    """Train one SEI model kind ("vae", "prvae", "cprvae") and write its artifacts; return metrics.

    beta: weight of the KL term at the end of warm-up. lam: weight of the property MSE on
    min-max scaled properties (ignored for "vae"); the reconstruction term is summed over the
    2500 sites, hence the large default. kl_warmup_epochs: epochs over which beta ramps
    linearly from 0. patience counts epochs after warm-up only. max_minutes: the loop stops
    before an epoch that would overrun, keeping the best weights.
    """
    t_start = time.perf_counter()
    kind, epochs, batch_size, beta, lam, seed = (
        config.kind, config.epochs, config.batch_size, config.beta, config.lam, config.seed)
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown SEI model kind {kind!r}; choose from {sorted(MODEL_KINDS)}")
    out_dir = config.out
    set_threads(config.threads)
    dev = get_device(config.device)
    gen = seed_everything(seed)

    data = load_dataset(config.data)
    passivated = passivated_runs(data)
    train_idx, val_idx, test_idx = (data.indices(s) for s in ("train", "val", "test"))
    if config.runs == "passivated":
        if data.status is None:
            raise ValueError(f"{data.path} records no run status, so passivated runs cannot be told apart")
        train_idx, val_idx, test_idx = (idx[passivated[idx]] for idx in (train_idx, val_idx, test_idx))
        if min(len(train_idx), len(val_idx), len(test_idx)) == 0:
            raise ValueError(f"{data.path} has a split without passivated runs")
    props_np = data.properties(PROPERTY_NAMES)
    if not np.isfinite(props_np[train_idx]).all():
        raise ValueError("non-finite property values in the train split")
    p_min = props_np[train_idx].min(0).astype(float)
    p_max = props_np[train_idx].max(0).astype(float)

    model = build_sei_model(
        kind,
        lattice_size=int(data.lattices.shape[1]),
        species_names=list(SPECIES_NAMES),
        property_names=list(PROPERTY_NAMES),
        property_min=p_min.tolist(),
        property_max=p_max.tolist(),
        barrier_names=list(data.barrier_names),
        barrier_ranges=data.barrier_ranges.tolist(),
    ).to(dev)
    use_barriers = bool(model.config.condition_dim)

    weights_np, site_freq = class_weights_from_frequencies(data.lattices[train_idx], model.num_classes)
    class_weights = torch.as_tensor(weights_np, device=dev) if config.class_weights else None
    lam_eff = lam if model.regressor_head is not None else 0.0

    # The whole dataset is small (10k x 50 x 50 bytes), so it lives on the device as uint8 and
    # batches are one-hot encoded on the fly: no DataLoader workers competing for 2 cores.
    lattices = torch.as_tensor(data.lattices, device=dev)
    barriers = torch.as_tensor(data.barriers, device=dev)
    props = torch.as_tensor(props_np, device=dev)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    warmup = max(1, epochs // 5) if config.kl_warmup_epochs is None else config.kl_warmup_epochs
    warmup_steps = max(1, warmup * steps_per_epoch)  # no warm-up: full beta from the first step

    history: dict[str, list] = {k: [] for k in (
        "beta", "train_loss", "train_recon", "train_kl", "train_prop",
        "val_loss", "val_recon", "val_kl", "val_prop", "epoch_seconds")}
    stopper = EarlyStopping(config.patience)
    stopped, step = "max_epochs", 0
    budget = TimeBudget(config.max_minutes)

    epoch_bar = tqdm(range(epochs), desc=f"sei-{kind}", unit="epoch", disable=not config.progress)
    for epoch in epoch_bar:
        if not budget.allows_epoch(history["epoch_seconds"]):
            stopped = "max_minutes"
            break
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_idx), generator=gen).numpy()
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "prop": 0.0}
        batch_bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", unit="batch",
                         leave=False, disable=not config.progress)
        for i in batch_bar:
            b = torch.as_tensor(train_idx[order[i * batch_size:(i + 1) * batch_size]], device=dev)
            # KL warm-up: with the full KL weight from step 0 the posterior collapses onto the
            # prior before the decoder has learned to use z (the decoder can already score well
            # by painting the average solvent / SEI profile); ramping beta from 0 lets the
            # latent code carry lattice information first.
            beta_t = beta * min(1.0, (step + 1) / warmup_steps)
            out = model(lattice_to_onehot(lattices[b], model.num_classes),
                        barriers[b] if use_barriers else None)
            losses = sei_vae_loss(model, out, lattices[b], props[b], beta=beta_t, lam=lam_eff,
                                  class_weights=class_weights)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            step += 1
            for k in sums:
                sums[k] += losses[k].item() * len(b)
            batch_bar.set_postfix(loss=f"{losses['loss'].item():.1f}", kl=f"{losses['kl'].item():.1f}")
        batch_bar.close()

        # Validation always uses the final beta, so losses of warm-up and later epochs compare.
        val = _evaluate_loss(model, lattices, barriers, props, val_idx, beta=beta, lam=lam_eff,
                             class_weights=class_weights)
        history["beta"].append(beta_t)
        for k in sums:
            history[f"train_{k}"].append(sums[k] / len(train_idx))
            history[f"val_{k}"].append(val[k])
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        epoch_bar.set_postfix(val=f"{val['loss']:.1f}", recon=f"{val['recon']:.1f}", kl=f"{val['kl']:.1f}")

        # During warm-up the objective itself is still moving: worse epochs do not count.
        reason = stopper.update(epoch, val["loss"], lambda: cpu_state(model), counts=epoch + 1 > warmup)
        if reason:
            stopped = reason
            break
    epoch_bar.close()
    train_seconds = budget.elapsed()
    model.load_state_dict(stopper.best())
    model.eval()

    # ---------------------------------------------------------------- test evaluation
    test = encode_split(model, lattices, barriers, test_idx, decode=True)
    train_mu = encode_split(model, lattices, barriers, train_idx)["mu"]
    # PCA fitted on the train latents, so the map the app draws is a fixed embedding that the
    # test points (and any new lattice) are projected into, not one tailored to the test set.
    pca = PCA(n_components=min(N_PCA_COMPONENTS, train_mu.shape[1]), random_state=seed).fit(train_mu)
    test_pcs = pca.transform(test["mu"])
    props_true = props_np[test_idx]
    test_metrics = sei_test_metrics(
        species_names=SPECIES_NAMES,
        property_names=PROPERTY_NAMES,
        true_lattices=data.lattices[test_idx],
        pred_lattices=test["recon"],
        properties_true=props_true,
        pcs=test_pcs,
        properties_pred=test.get("properties_pred"),
    )

    # Staged beside the checkpoint and swapped in whole: a killed run never leaves half of one.
    with atomic.atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        latents = {
            "indices": test_idx.astype(np.int64),
            "mu": test["mu"].astype(np.float32),
            "logvar": test["logvar"].astype(np.float32),
            "pca_components": pca.components_.astype(np.float32),
            "pca_mean": pca.mean_.astype(np.float32),
            "pca_explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float32),
            "pcs": test_pcs.astype(np.float32),
            "properties_true": props_true.astype(np.float32),
            "property_names": np.array(PROPERTY_NAMES),
            "barriers": data.barriers[test_idx].astype(np.float32),
            "barrier_names": np.array(data.barrier_names),
        }
        if "properties_pred" in test:
            latents["properties_pred"] = test["properties_pred"].astype(np.float32)
        np.savez_compressed(staging / LATENTS_FILENAME, **latents)

        metrics = {
            "kind": kind,
            "runs": config.runs,
            "test": test_metrics,
            # The simplest readers of the same lattices (and the barriers), on the same runs.
            "baselines": property_baselines(
                lattices=data.lattices, barriers=data.barriers, properties=props_np,
                train_idx=train_idx, test_idx=test_idx, names=PROPERTY_NAMES,
                num_species=model.num_classes, seed=seed),
            # Truncated runs are unfinished SEIs: the same model scored on the finished ones alone.
            "test_passivated": passivated_property_metrics(
                props_true, test.get("properties_pred"), passivated[test_idx], PROPERTY_NAMES),
            "best_epoch": stopper.best_epoch + 1,
            "best_val_loss": stopper.best_score,
            "epochs_run": len(history["val_loss"]),
            "stopped": stopped,
            "seconds_per_epoch": float(np.mean(history["epoch_seconds"])),
            "train_seconds": train_seconds,
            "pca_explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "n_test": int(len(test_idx)),
            "history": history,
        }
        write_metrics(staging, metrics)
        hyper = {
            "kind": kind, "epochs": epochs, "batch_size": batch_size, "lr": config.lr, "beta": beta,
            "lam": lam_eff, "kl_warmup_epochs": warmup, "patience": config.patience,
            "weight_decay": config.weight_decay, "class_weighting": config.class_weights,
            "optimizer": "AdamW", "max_minutes": config.max_minutes, "device": str(dev),
            "torch_threads": torch.get_num_threads(),
            "model": {k: v for k, v in model.config.items() if not k.startswith("_")},
        }
        write_metadata(
            staging,
            command=command_line(config),
            config=hyper,
            seed=seed,
            inputs=[data.path],
            wall_time_s=time.perf_counter() - t_start,
            extra={
                "artifact": f"sei_{kind}",
                "class_weights": dict(zip(SPECIES_NAMES, weights_np.tolist())) if config.class_weights else None,
                "train_site_fraction": dict(zip(SPECIES_NAMES, site_freq.tolist())),
            },
        )
    return metrics
