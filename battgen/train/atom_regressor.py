"""Train the atom regressor on the frozen translator's latents.

``train_atom_regressor(AtomRegressorTrainingConfig(data=..., translator=..., out=...))``
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

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from battgen import atomic
from battgen.afm.loader import load_afm_dataset
from battgen.artifacts import write_metadata, write_metrics
from battgen.device import get_device
from battgen.eval.afm_report import PREDICTIONS_FILENAME
from battgen.eval.afm_metrics import atom_regressor_metrics
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.translator import AFMTranslator
from battgen.paths import for_display
from battgen.train.afm_latents import encode_means
from battgen.train.common import EarlyStopping, TimeBudget, cpu_state, seed_everything, set_threads
from battgen.train.configs import AtomRegressorTrainingConfig
from battgen.train.options import command_line

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


def train_atom_regressor(config: AtomRegressorTrainingConfig) -> dict:
    """Fit the atom regressor on the translator's latents of ``config.data``; return the metrics.

    patience: the published model ran 400 epochs; early stopping only ends runs that stopped
    improving. max_minutes: the loop stops before an epoch that would overrun.
    """
    t_start = time.perf_counter()
    translator_dir, out_dir, batch_size = config.translator, config.out, config.batch_size
    if not (translator_dir / "config.json").is_file():
        raise ValueError(f"no translator checkpoint at {translator_dir} (train one with "
                         "`python -m battgen train translator`)")
    set_threads(config.threads)
    dev = get_device(config.device)
    gen = seed_everything(config.seed)

    data = load_afm_dataset(config.data, dtype=np.float16)
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    train_t = torch.as_tensor(train_idx, device=dev)
    val_t = torch.as_tensor(val_idx, device=dev)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    history: dict[str, list] = {"train_loss": [], "val_loss": [], "epoch_seconds": []}
    stopper = EarlyStopping(config.patience)
    stopped = "max_epochs"
    budget = TimeBudget(config.max_minutes)

    bar = tqdm(range(config.epochs), desc="atom-regressor", unit="epoch", disable=not config.progress)
    for epoch in bar:
        if not budget.allows_epoch(history["epoch_seconds"]):
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
        reason = stopper.update(epoch, val_loss, lambda: cpu_state(model))
        if reason:
            stopped = reason
            break
    bar.close()
    train_seconds = budget.elapsed()
    model.load_state_dict(stopper.best())
    model.eval()

    with torch.no_grad():
        test_t = torch.as_tensor(test_idx, device=dev)
        pred = torch.cat([model(latents[test_t[i:i + EVAL_BATCH]]) for i in range(0, len(test_idx), EVAL_BATCH)])
    pred_np = pred.cpu().numpy().astype(np.float32)
    true_np = counts_np[test_idx].astype(np.float32)
    test_metrics = atom_regressor_metrics(true_np, pred_np, data.working_ion[test_idx])

    # Staged beside the checkpoint and swapped in whole: a killed run never leaves half of one.
    with atomic.atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        np.savez_compressed(
            staging / PREDICTIONS_FILENAME,
            true=true_np, pred=pred_np, working_ion=data.working_ion[test_idx],
            material=data.material[test_idx], rotation=data.rotation[test_idx], index=test_idx.astype(np.int64),
        )
        epochs_run = len(history["val_loss"])
        metrics = {
            "test": test_metrics,
            "best_epoch": stopper.best_epoch + 1,
            "best_val_loss": stopper.best_score,
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
        write_metrics(staging, metrics)
        write_metadata(
            staging,
            command=command_line(config),
            config={
                "epochs": config.epochs, "batch_size": batch_size, "lr": config.lr, "weight_decay": config.weight_decay,
                "patience": config.patience, "optimizer": "AdamW", "max_minutes": config.max_minutes, "device": str(dev),
                "torch_threads": torch.get_num_threads(), "translator": for_display(translator_dir),
                "sample_weights": "inverse working-ion frequency", "loss": "MSE on counts / count_scale",
                "model": {k: v for k, v in model.config.items() if not k.startswith("_")},
            },
            seed=config.seed,
            inputs=[data.path, *_translator_files(translator_dir)],
            wall_time_s=time.perf_counter() - t_start,
            extra={"artifact": "afm_atom_regressor"},
        )
    return metrics
