"""Train the atom regressor on the frozen translator's latents.

``train_atom_regressor("data/afm", "checkpoints/translator", "checkpoints/atom_regressor")``
encodes every view once with the frozen translator (posterior mean times its
``scaling_factor``: the diffusion model's space), then fits :class:`AtomRegressor` to the
112-long atom counts with an MSE weighted by inverse working-ion frequency, keeping the epoch
with the best validation loss. Encoding once makes each epoch cost only the small regressor,
so the published 400 epochs fit on a CPU.

Left in ``out_dir``: ``config.json`` + safetensors; ``metrics.json`` with the test split in the
layout of the published per-ion table (:func:`battgen.eval.afm_metrics.atom_regressor_metrics`)
and the training history; ``metadata.json``; ``predictions.npz`` with the test split's true and
predicted counts (``true``, ``pred``: (n_test, 112) float32), ``working_ion``, ``material``,
``rotation`` and dataset row ``index``, for the app's violin plots and error histograms.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from battgen.afm.loader import load_afm_dataset
from battgen.artifacts import write_metadata, write_metrics
from battgen.device import get_device
from battgen.eval.afm_metrics import atom_regressor_metrics
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.translator import AFMTranslator
from battgen.train.sei_prvae import seed_everything
from battgen.train.translator import encode_means

PREDICTIONS_FILENAME = "predictions.npz"
DEFAULT_OUT = "checkpoints/atom_regressor"
EVAL_BATCH = 1024


def _weighted_mse(model: AtomRegressor, latents: torch.Tensor, targets: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    per_sample = (model.forward_scaled(latents) - targets).pow(2).mean(1)
    return (per_sample * weights).mean()


@torch.no_grad()
def _evaluate(model: AtomRegressor, latents, targets, weights, idx: torch.Tensor) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(idx), EVAL_BATCH):
        b = idx[start:start + EVAL_BATCH]
        total += _weighted_mse(model, latents[b], targets[b], weights[b]).item() * len(b)
    return total / len(idx)


def _translator_files(translator_dir: Path) -> list[Path]:
    """The files that define the translator's weights, for the input hash."""
    return sorted(p for p in translator_dir.iterdir()
                  if p.is_file() and (p.name == "config.json" or p.suffix in (".safetensors", ".bin")))


def train_atom_regressor(
    data_dir: str | Path,
    translator_dir: str | Path,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    epochs: int = 400,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 40,
    seed: int = 0,
    device: str | torch.device | None = None,
    max_minutes: float | None = None,
    num_threads: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Fit the atom regressor on the translator's latents of ``data_dir/dataset.npz``; return the metrics.

    patience: epochs without a better validation loss before stopping (the published model ran
    400 epochs; early stopping only ends runs that stopped improving). max_minutes: wall-clock
    budget for the training loop, stopping before an epoch that would overrun.
    """
    t_start = time.perf_counter()
    if epochs < 1 or batch_size < 1 or lr <= 0 or weight_decay < 0 or patience < 1:
        raise ValueError("epochs, batch_size and patience must be >= 1, lr > 0, weight_decay >= 0")
    if max_minutes is not None and max_minutes <= 0:
        raise ValueError("max_minutes must be positive")
    translator_dir, out_dir = Path(translator_dir), Path(out_dir)
    if not (translator_dir / "config.json").is_file():
        raise ValueError(f"no translator checkpoint at {translator_dir} (train one with "
                         "`python -m battgen train translator`)")
    if num_threads:
        torch.set_num_threads(int(num_threads))
    dev = device if isinstance(device, torch.device) else get_device(device)
    gen = seed_everything(seed)

    data = load_afm_dataset(data_dir, dtype=np.float16)
    counts_np = data.require_composition()
    train_idx, val_idx, test_idx = (data.indices(s) for s in ("train", "val", "test"))
    if test_idx.size < 1:
        raise ValueError(f"{data.path} has an empty test split")

    translator = AFMTranslator.from_pretrained(translator_dir).to(dev).eval()
    translator.requires_grad_(False)
    scaling = float(translator.config.scaling_factor)
    t_encode = time.perf_counter()
    mu = encode_means(translator, torch.from_numpy(data.stacks), np.arange(len(data)), dev)
    encode_seconds = time.perf_counter() - t_encode
    del translator
    latents = torch.as_tensor(mu * scaling, device=dev)

    count_scale = float(max(1.0, counts_np[train_idx].max()))
    targets = torch.as_tensor(counts_np / count_scale, device=dev)
    weights_np = np.zeros(len(data), np.float32)
    for idx in (train_idx, val_idx, test_idx):
        if idx.size:
            weights_np[idx] = data.ion_weights(idx)
    weights = torch.as_tensor(weights_np, device=dev)

    from battgen.data.composition import element_symbols

    model = AtomRegressor(
        latent_channels=int(mu.shape[1]), latent_size=int(mu.shape[2]), count_scale=count_scale,
        latent_scaling_factor=scaling, n_outputs=counts_np.shape[1], output_names=element_symbols(),
    ).to(dev)
    model.init_output_bias(targets[torch.as_tensor(train_idx, device=dev)].mean(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    train_t = torch.as_tensor(train_idx, device=dev)
    val_t = torch.as_tensor(val_idx, device=dev)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    history: dict[str, list] = {"train_loss": [], "val_loss": [], "epoch_seconds": []}
    best = {"val_loss": math.inf, "epoch": -1, "state": None}
    stopped, bad_epochs = "max_epochs", 0
    budget_s = None if max_minutes is None else 60.0 * max_minutes
    t_loop = time.perf_counter()

    bar = tqdm(range(epochs), desc="atom-regressor", unit="epoch", disable=not progress)
    for epoch in bar:
        if budget_s is not None and history["epoch_seconds"]:
            if time.perf_counter() - t_loop + max(history["epoch_seconds"]) > budget_s:
                stopped = "max_minutes"
                break
        t_epoch = time.perf_counter()
        model.train()
        order = train_t[torch.randperm(len(train_idx), generator=gen).to(dev)]
        total = 0.0
        for i in range(steps_per_epoch):
            b = order[i * batch_size:(i + 1) * batch_size]
            loss = _weighted_mse(model, latents[b], targets[b], weights[b])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(b)
        val_loss = _evaluate(model, latents, targets, weights, val_t)
        history["train_loss"].append(total / len(train_idx))
        history["val_loss"].append(val_loss)
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        bar.set_postfix(train=f"{total / len(train_idx):.3g}", val=f"{val_loss:.3g}")
        if not math.isfinite(val_loss):
            stopped = "non_finite_loss"
            break
        if val_loss < best["val_loss"]:
            best = {"val_loss": val_loss, "epoch": epoch,
                    "state": copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})}
            bad_epochs = 0
        else:
            bad_epochs += 1
            if bad_epochs >= patience:
                stopped = "early_stopping"
                break
    bar.close()
    train_seconds = time.perf_counter() - t_loop
    if best["state"] is None:
        raise RuntimeError("training produced no finite validation loss; nothing to save")
    model.load_state_dict(best["state"])
    model.eval()

    with torch.no_grad():
        test_t = torch.as_tensor(test_idx, device=dev)
        pred = torch.cat([model(latents[test_t[i:i + EVAL_BATCH]]) for i in range(0, len(test_idx), EVAL_BATCH)])
    pred_np = pred.cpu().numpy().astype(np.float32)
    true_np = counts_np[test_idx].astype(np.float32)
    test_metrics = atom_regressor_metrics(true_np, pred_np, data.working_ion[test_idx])

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    np.savez_compressed(
        out_dir / PREDICTIONS_FILENAME,
        true=true_np, pred=pred_np, working_ion=data.working_ion[test_idx],
        material=data.material[test_idx], rotation=data.rotation[test_idx], index=test_idx.astype(np.int64),
    )
    epochs_run = len(history["val_loss"])
    metrics = {
        "test": test_metrics,
        "best_epoch": best["epoch"] + 1,
        "best_val_loss": best["val_loss"],
        "val_loss": "ion-weighted MSE of counts / count_scale",
        "epochs_run": epochs_run,
        "stopped": stopped,
        "seconds_per_epoch": float(np.mean(history["epoch_seconds"])),
        "train_seconds": train_seconds,
        "encode_seconds": encode_seconds,
        "parameters": model.num_parameters(),
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
        "history": history,
    }
    write_metrics(out_dir, metrics)
    write_metadata(
        out_dir,
        command=command or f"train_atom_regressor({str(data.path)!r}, {str(translator_dir)!r}, {str(out_dir)!r})",
        config={
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "patience": patience, "optimizer": "AdamW", "max_minutes": max_minutes, "device": str(dev),
            "torch_threads": torch.get_num_threads(), "translator": str(translator_dir),
            "sample_weights": "inverse working-ion frequency", "loss": "MSE on counts / count_scale",
            "model": {k: v for k, v in model.config.items() if not k.startswith("_")},
        },
        seed=seed,
        inputs=[data.path, *_translator_files(translator_dir)],
        wall_time_s=time.perf_counter() - t_start,
        extra={"artifact": "afm_atom_regressor"},
    )
    return metrics
