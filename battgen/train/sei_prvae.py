"""Train the SEI VAE / prVAE / conditional prVAE on a kinetic Monte Carlo dataset.

``train_sei_model("prvae", "data/sei", "checkpoints/sei_prvae", ...)`` reads
``data_dir/dataset.npz``, trains on the train split with early stopping on the validation
split, and leaves in ``out_dir``:

* ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``SEIPRVAE.from_pretrained``),
  the best-validation weights;
* ``metrics.json``: test-split metrics (see :mod:`battgen.eval.sei_metrics`) and the
  training history;
* ``metadata.json``: command, hyperparameters, seed, input hash, wall time;
* ``latents.npz``: test-split latent means, a PCA of the latent space and its coordinates,
  true/predicted properties, barriers and dataset indices, for the app's latent-space page.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from battgen.artifacts import write_metadata, write_metrics
from battgen.device import get_device
from battgen.eval.sei_latent import LATENTS_FILENAME
from battgen.eval.sei_metrics import sei_test_metrics
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

# Enough components for the app's 3-D view plus a look at how fast variance decays.
N_PCA_COMPONENTS = 5
# Inverse-frequency class weights are capped so a species with a handful of trapped sites
# cannot dominate the reconstruction loss (and its gradient noise) over the whole lattice.
MAX_CLASS_WEIGHT_RATIO = 20.0
EVAL_BATCH = 512


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for batch order and sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    # cuDNN autotuning picks algorithms by timing, which can change results run to run.
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


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


def train_sei_model(
    kind: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    epochs: int = 25,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float = 1.0,
    lam: float = 1000.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    max_minutes: float | None = None,
    progress: bool = True,
    kl_warmup_epochs: int | None = None,
    patience: int = 6,
    weight_decay: float = 1e-4,
    class_weighting: bool = True,
    num_threads: int | None = None,
    command: str | None = None,
) -> dict:
    """Train one SEI model kind ("vae", "prvae", "cprvae") and write its artifacts; return metrics.

    beta: weight of the KL term at the end of warm-up. lam: weight of the property MSE on
    min-max scaled properties (ignored for "vae"); the reconstruction term is summed over the
    2500 sites, hence the large default. kl_warmup_epochs: epochs over which beta ramps
    linearly from 0 (default: a fifth of ``epochs``). patience: epochs after warm-up without
    a better validation loss before stopping. max_minutes: wall-clock budget for the
    training loop; it stops before an epoch that would overrun, keeping the best weights.
    num_threads: torch CPU threads (default: leave torch's choice).
    """
    t_start = time.perf_counter()
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown SEI model kind {kind!r}; choose from {sorted(MODEL_KINDS)}")
    if epochs < 1 or batch_size < 1 or lr <= 0 or beta < 0 or lam < 0:
        raise ValueError("epochs and batch_size must be >= 1, lr > 0, beta and lam >= 0")
    if max_minutes is not None and max_minutes <= 0:
        raise ValueError("max_minutes must be positive")
    out_dir = Path(out_dir)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    dev = device if isinstance(device, torch.device) else get_device(device)
    gen = seed_everything(seed)

    data = load_dataset(data_dir)
    train_idx, val_idx, test_idx = (data.indices(s) for s in ("train", "val", "test"))
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
    class_weights = torch.as_tensor(weights_np, device=dev) if class_weighting else None
    lam_eff = lam if model.regressor_head is not None else 0.0

    # The whole dataset is small (10k x 50 x 50 bytes), so it lives on the device as uint8 and
    # batches are one-hot encoded on the fly: no DataLoader workers competing for 2 cores.
    lattices = torch.as_tensor(data.lattices, device=dev)
    barriers = torch.as_tensor(data.barriers, device=dev)
    props = torch.as_tensor(props_np, device=dev)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    warmup = max(1, epochs // 5) if kl_warmup_epochs is None else int(kl_warmup_epochs)
    warmup_steps = warmup * steps_per_epoch

    history: dict[str, list] = {k: [] for k in (
        "beta", "train_loss", "train_recon", "train_kl", "train_prop",
        "val_loss", "val_recon", "val_kl", "val_prop", "epoch_seconds")}
    best = {"val_loss": math.inf, "epoch": -1, "state": None}
    stopped, bad_epochs, step = "max_epochs", 0, 0
    budget_s = None if max_minutes is None else 60.0 * max_minutes
    t_loop = time.perf_counter()

    epoch_bar = tqdm(range(epochs), desc=f"sei-{kind}", unit="epoch", disable=not progress)
    for epoch in epoch_bar:
        if budget_s is not None and history["epoch_seconds"]:
            elapsed = time.perf_counter() - t_loop
            if elapsed + max(history["epoch_seconds"]) > budget_s:
                stopped = "max_minutes"
                break
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_idx), generator=gen).numpy()
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "prop": 0.0}
        batch_bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", unit="batch",
                         leave=False, disable=not progress)
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

        if not math.isfinite(val["loss"]):
            stopped = "non_finite_loss"
            break
        if val["loss"] < best["val_loss"]:
            best = {"val_loss": val["loss"], "epoch": epoch,
                    "state": copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})}
            bad_epochs = 0
        elif epoch + 1 > warmup:  # during warm-up the objective itself is still moving
            bad_epochs += 1
            if bad_epochs >= patience:
                stopped = "early_stopping"
                break
    epoch_bar.close()
    train_seconds = time.perf_counter() - t_loop
    if best["state"] is None:
        raise RuntimeError("training produced no finite validation loss; nothing to save")
    model.load_state_dict(best["state"])
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

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
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
    np.savez_compressed(out_dir / LATENTS_FILENAME, **latents)

    metrics = {
        "kind": kind,
        "test": test_metrics,
        "best_epoch": best["epoch"] + 1,
        "best_val_loss": best["val_loss"],
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
    write_metrics(out_dir, metrics)
    hyper = {
        "kind": kind, "epochs": epochs, "batch_size": batch_size, "lr": lr, "beta": beta,
        "lam": lam_eff, "kl_warmup_epochs": warmup, "patience": patience,
        "weight_decay": weight_decay, "class_weighting": class_weighting,
        "optimizer": "AdamW", "max_minutes": max_minutes, "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "model": {k: v for k, v in model.config.items() if not k.startswith("_")},
    }
    write_metadata(
        out_dir,
        command=command or f"train_sei_model({kind!r}, {str(data_dir)!r}, {str(out_dir)!r})",
        config=hyper,
        seed=seed,
        inputs=[data.path],
        wall_time_s=time.perf_counter() - t_start,
        extra={
            "artifact": f"sei_{kind}",
            "class_weights": dict(zip(SPECIES_NAMES, weights_np.tolist())) if class_weighting else None,
            "train_site_fraction": dict(zip(SPECIES_NAMES, site_freq.tolist())),
        },
    )
    return metrics
