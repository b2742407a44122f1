"""Train the atom regressor on the frozen translator's latents.

``train_atom_regressor(AtomRegressorTrainingConfig(data=..., translator=..., out=...))``
encodes every view once with the frozen translator (posterior mean times its
``scaling_factor``: the diffusion model's space) — or, with ``latents=``, reads those means from
the ``latents.npz`` the translator's training stored, with the atom counts from the electrode
table, so the regressor can be retrained without the 280 MB dataset — then fits :class:`AtomRegressor` to the
112-long atom counts with an MSE weighted by inverse working-ion frequency, keeping the epoch
with the best validation loss. Encoding once makes each epoch cost only the small regressor,
so the published 400 epochs fit on a CPU.

Left in ``out_dir``: ``config.json`` + safetensors; ``metrics.json`` with the test split in the
layout of the published per-ion table (:func:`battgen.eval.afm_metrics.atom_regressor_metrics`)
and the training history (and the ablation table with ``ablation_epochs``); ``metadata.json``; ``predictions.npz`` with the test split's true and
predicted counts (``true``, ``pred``: (n_test, 112) float32), ``working_ion``, ``material``,
``rotation`` and dataset row ``index``, for the app's violin plots and error histograms.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from battgen import atomic
from battgen.afm.loader import load_afm_dataset
from battgen.artifacts import write_metadata, write_metrics
from battgen.data.splits import inverse_frequency_weights
from battgen.data.table import table_path
from battgen.device import get_device
from battgen.eval.afm_report import PREDICTIONS_FILENAME
from battgen.eval.afm_metrics import atom_regressor_metrics
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.translator import AFMTranslator
from battgen.paths import for_display
from battgen.train.afm_latents import encode_means
from battgen.train.common import EarlyStopping, TimeBudget, cpu_state, seed_everything, set_threads
from battgen.train.configs import AtomRegressorTrainingConfig
from battgen.train.latent_augment import add_latent_noise, augment_latents
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


@torch.no_grad()
def predict(model: AtomRegressor, latents: torch.Tensor) -> np.ndarray:
    """Counts (N, n_outputs) float32 of scaled latents (N, C, h, w), in evaluation batches."""
    model.eval()
    return torch.cat([model(latents[i:i + EVAL_BATCH]) for i in range(0, len(latents), EVAL_BATCH)]
                     ).cpu().numpy().astype(np.float32) if len(latents) else np.zeros((0, model.config.n_outputs),
                                                                                         np.float32)


def _translator_files(translator_dir: Path) -> list[Path]:
    """The files that define the translator's weights, for the input hash."""
    return sorted(p for p in translator_dir.iterdir()
                  if p.is_file() and (p.name == "config.json" or p.suffix in (".safetensors", ".bin")))


@dataclass
class RegressorInputs:
    """Scaled latents of every view with their truth: what every fit and the ablation read."""

    latents: np.ndarray  # (N, C, h, w) float32, mu * scaling_factor
    counts: np.ndarray  # (N, 112) float32 atom counts of the view's material
    working_ion: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    material: np.ndarray  # (N,) material key (table row or id)
    rotation: np.ndarray  # (N,) int
    scaling_factor: float
    inputs: list[Path]  # files hashed into metadata.json
    encode_seconds: float

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def concat(self, other: "RegressorInputs") -> "RegressorInputs":
        """These views followed by ``other``'s (same latent space: the same scaling factor)."""
        if not np.isclose(other.scaling_factor, self.scaling_factor):
            raise ValueError("the two sets of latents come from translators with different scaling factors")
        return RegressorInputs(
            latents=np.concatenate([self.latents, other.latents]), counts=np.concatenate([self.counts, other.counts]),
            working_ion=np.concatenate([self.working_ion, other.working_ion]),
            split=np.concatenate([self.split, other.split]),
            material=np.concatenate([self.material, other.material]),
            rotation=np.concatenate([self.rotation, other.rotation]), scaling_factor=self.scaling_factor,
            inputs=[*self.inputs, *other.inputs], encode_seconds=self.encode_seconds + other.encode_seconds)


def load_inputs(config: AtomRegressorTrainingConfig, device: torch.device) -> RegressorInputs:
    """The views of ``config.latents`` (the translator's stored latents, counts from the electrode
    table) or, without it, of ``config.data`` encoded once with the frozen translator."""
    if config.latents is not None:
        from battgen.train.screening import load_screening_data, select_targets

        data = load_screening_data(config.latents)
        with np.load(config.latents, allow_pickle=False) as npz:
            rotation = npz["rotation"].astype(np.int64) if "rotation" in npz.files else np.zeros(len(data.split), int)
        if config.views in ("mean", "all+mean"):
            means = select_targets(data, "mean")
            # A mean latent has no rotation of its own: -1 keeps it apart from every real view.
            mean_rotation = np.full(len(means.split), -1, np.int64)
            if config.views == "mean":
                data, rotation = means, mean_rotation
            else:
                data = data.concat(means)
                rotation = np.concatenate([rotation, mean_rotation])
        return RegressorInputs(latents=data.latents.astype(np.float32), counts=data.compositions,
                               working_ion=data.ions, split=data.split, material=data.material, rotation=rotation,
                               scaling_factor=data.scaling_factor, inputs=[config.latents, table_path()],
                               encode_seconds=0.0)
    if config.views != "all":
        raise ValueError("--views mean averages stored latents: give them with --latents")
    translator_dir = config.translator
    if not (translator_dir / "config.json").is_file():
        raise ValueError(f"no translator checkpoint at {translator_dir} (train one with "
                         "`python -m battgen train translator`)")
    data = load_afm_dataset(config.data, dtype=np.float16)
    counts = data.require_composition()
    translator = AFMTranslator.from_pretrained(translator_dir).to(device).eval()
    translator.requires_grad_(False)
    scaling = float(translator.config.scaling_factor)
    t_encode = time.perf_counter()
    mu = encode_means(translator, torch.from_numpy(data.stacks), np.arange(len(data)), device)
    return RegressorInputs(latents=mu * scaling, counts=np.asarray(counts, np.float32),
                           working_ion=np.asarray(data.working_ion).astype(str), split=np.asarray(data.split).astype(str),
                           material=data.material, rotation=data.rotation, scaling_factor=scaling,
                           inputs=[data.path, *_translator_files(translator_dir)],
                           encode_seconds=time.perf_counter() - t_encode)


def _encoded_copies(translator_dir: Path, data_path: Path, copies: int, device: torch.device, alter, what: str
                    ) -> RegressorInputs:
    """``copies`` versions ``alter(stacks)`` of every training view of ``data_path``, encoded with the
    translator of ``translator_dir``, with the truth of the view as it was simulated."""
    from battgen.models.translator import channels_first

    translator = AFMTranslator.from_pretrained(translator_dir).to(device).eval().requires_grad_(False)
    data = load_afm_dataset(data_path, dtype=np.float16, required_splits=("train",))
    counts = data.require_composition()
    rows = data.indices("train")
    if not len(rows):
        raise ValueError(f"{data.path} has no training views to {what}")
    scaling = float(translator.config.scaling_factor)
    started = time.perf_counter()
    latents = []
    for _ in range(copies):
        for i in range(0, len(rows), EVAL_BATCH // 8):
            altered = alter(np.asarray(data.stacks[rows[i:i + EVAL_BATCH // 8]], np.float32))
            with torch.no_grad():
                mu = translator.encode(channels_first(altered, device)).mode()
            latents.append(mu.float().cpu().numpy() * scaling)
    every = np.tile(rows, copies)
    return RegressorInputs(latents=np.concatenate(latents), counts=np.asarray(counts[every], np.float32),
                           working_ion=np.asarray(data.working_ion[every]).astype(str),
                           split=np.full(len(every), "train"), material=_table_rows(data, every),
                           rotation=np.asarray(data.rotation[every]), scaling_factor=scaling,
                           inputs=[data.path, *_translator_files(translator_dir)],
                           encode_seconds=time.perf_counter() - started)


def distorted_inputs(translator_dir: Path, data_path: Path, copies: int, seed: int,
                     device: torch.device, pink_weight: float = 1.0) -> RegressorInputs:
    """``copies`` randomly distorted versions of every training view of ``data_path``
    (:func:`battgen.afm.augment.distorted_pairs` with ``pink_weight``), encoded with the translator of ``translator_dir``.

    A regressor that reads clean latents only learns nothing of what noise, drift, an offset or a
    rotation do to them; these views show it, with the truth of the clean view.
    """
    from battgen.afm.augment import distorted_pairs

    rng = np.random.default_rng([seed, 4])
    return _encoded_copies(translator_dir, data_path, copies, device,
                           lambda stacks: distorted_pairs(stacks, rng, pink_weight)[0], "distort")


def turned_inputs(translator_dir: Path, data_path: Path, copies: int, seed: int, device: torch.device
                  ) -> RegressorInputs:
    """``copies`` versions of every training view of ``data_path``, each turned or mirrored into a random
    one of the seven orientations other than the simulated one (:mod:`battgen.afm.orientations`).

    The campaign images every cluster in one in-plane frame, so a regressor trained on its views
    reads a turned stack worse; the page averages the composition over all eight orientations, and
    these views teach the regressor the other seven.
    """
    from battgen.afm.orientations import ORIENTATIONS, turn

    rng = np.random.default_rng([seed, 5])

    def turned(stacks: np.ndarray) -> np.ndarray:
        picks = rng.integers(1, len(ORIENTATIONS), len(stacks))
        return np.stack([turn(stack, *ORIENTATIONS[p]) for stack, p in zip(stacks, picks)])

    return _encoded_copies(translator_dir, data_path, copies, device, turned, "turn")


def _table_rows(data, rows: np.ndarray) -> np.ndarray:
    """Material numbers of ``data``'s ``rows`` in the stored latents' terms (electrode-table rows).

    A campaign of one split (or its first N materials) numbers its materials from 0; the stored
    latents number them by electrode-table row. The table's ids put both in the same terms.
    """
    if data.material_id is None:
        return np.asarray(data.material[rows])
    from battgen.data.table import load_table

    row_of = {m: i for i, m in enumerate(load_table()["id"])}
    unknown = sorted(set(data.material_id[rows].tolist()) - set(row_of))
    if unknown:
        raise ValueError(f"{data.path} holds materials the electrode table lacks: {', '.join(unknown[:3])}")
    return np.array([row_of[m] for m in data.material_id[rows]])


def _join_training_views(inputs: RegressorInputs, extra: RegressorInputs, leak: str) -> RegressorInputs:
    """``inputs`` followed by ``extra``'s training views; ValueError(``leak``) when those show a
    material of the validation or test split, which would leak it into training."""
    held_out = set(inputs.material[np.isin(inputs.split, ("val", "test"))].tolist())
    if held_out & set(extra.material.tolist()):
        raise ValueError(leak)
    return inputs.concat(extra)


def instrument_inputs(translator_dir: Path, folder: Path, device: torch.device) -> RegressorInputs:
    """The training views of every campaign under ``folder`` (one subfolder each, simulated with
    another instrument: ``afm build-dataset --probe/--tip-closer/--df-steps``), encoded with the
    translator of ``translator_dir``, with their materials' true counts.

    Random distortions imitate noise and drift on clean stacks; a Xe probe or another tip height
    changes the contrast itself, and what the robust encoder still gets wrong there the regressor
    can only learn from such views.
    """
    from battgen.afm.dataset import instrument_campaigns

    campaigns = instrument_campaigns(folder, split=" --split train")
    translator = AFMTranslator.from_pretrained(translator_dir).to(device).eval().requires_grad_(False)
    scaling = float(translator.config.scaling_factor)
    started = time.perf_counter()
    parts = []
    for path in campaigns:
        data = load_afm_dataset(path, dtype=np.float16, required_splits=())
        rows = data.indices("train")
        if not len(rows):
            raise ValueError(f"{data.path} has no training views (build it with --split train)")
        counts = data.require_composition()
        latents = encode_means(translator, torch.from_numpy(data.stacks), rows, device) * scaling
        parts.append(RegressorInputs(latents=latents, counts=np.asarray(counts[rows], np.float32),
                                     working_ion=np.asarray(data.working_ion[rows]).astype(str),
                                     split=np.full(len(rows), "train"), material=_table_rows(data, rows),
                                     rotation=np.asarray(data.rotation[rows]), scaling_factor=scaling,
                                     inputs=[data.path], encode_seconds=0.0))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.concat(part)
    return dataclasses.replace(joined, inputs=[*joined.inputs, *_translator_files(translator_dir)],
                               encode_seconds=time.perf_counter() - started)


@dataclass
class Fit:
    model: AtomRegressor
    history: dict[str, list]
    best_epoch: int
    best_val_loss: float
    stopped: str
    train_seconds: float


def fit_regressor(inputs: RegressorInputs, train_idx: np.ndarray, val_idx: np.ndarray, *, epochs: int,
                  batch_size: int, lr: float, weight_decay: float, patience: int, augment: str, pooling: str,
                  output: str, seed: int, device: torch.device, max_minutes: float | None = None,
                  progress: bool = False, latent_noise: float = 0.0) -> Fit:
    """One regressor fitted on rows ``train_idx``, keeping the epoch of least ion-weighted
    validation MSE on ``val_idx``; the batch order and the augmentation draw from ``seed``."""
    from battgen.data.composition import element_symbols

    gen = seed_everything(seed)
    latents = torch.as_tensor(inputs.latents, device=device)
    count_scale = float(max(1.0, inputs.counts[train_idx].max()))
    targets = torch.as_tensor(inputs.counts / count_scale, device=device)
    weights_np = np.zeros(len(inputs.split), np.float32)
    for idx in (train_idx, val_idx):
        weights_np[idx] = inverse_frequency_weights(inputs.working_ion[idx])
    weights = torch.as_tensor(weights_np, device=device)

    model = AtomRegressor(
        latent_channels=int(latents.shape[1]), latent_size=int(latents.shape[2]), count_scale=count_scale,
        latent_scaling_factor=inputs.scaling_factor, n_outputs=targets.shape[1], output_names=element_symbols(),
        pooling=pooling, output=output,
    ).to(device)
    train_t = torch.as_tensor(train_idx, device=device)
    val_t = torch.as_tensor(val_idx, device=device)
    model.init_output_bias(targets[train_t].mean(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    history: dict[str, list] = {"train_loss": [], "val_loss": [], "epoch_seconds": []}
    stopper = EarlyStopping(patience)
    stopped = "max_epochs"
    budget = TimeBudget(max_minutes)
    bar = tqdm(range(epochs), desc="atom-regressor", unit="epoch", disable=not progress)
    for epoch in bar:
        if not budget.allows_epoch(history["epoch_seconds"]):
            stopped = "max_minutes"
            break
        t_epoch = time.perf_counter()
        model.train()
        order = train_t[torch.randperm(len(train_idx), generator=gen).to(device)]
        total = 0.0
        for i in range(steps_per_epoch):
            b = order[i * batch_size:(i + 1) * batch_size]
            x = add_latent_noise(augment_latents(latents[b], augment, gen), latent_noise, gen)
            loss = _weighted_mse(model, x, targets[b], weights[b])
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
    model.load_state_dict(stopper.best())
    model.eval()
    return Fit(model=model, history=history, best_epoch=stopper.best_epoch + 1, best_val_loss=stopper.best_score,
               stopped=stopped, train_seconds=budget.elapsed())


def train_atom_regressor(config: AtomRegressorTrainingConfig) -> dict:
    """Fit the atom regressor on the translator's latents; return the metrics.

    patience: the published model ran 400 epochs; early stopping only ends runs that stopped
    improving. max_minutes: the loop stops before an epoch that would overrun.
    ablation_epochs > 0: first the ablation table (:mod:`battgen.train.atom_regressor_ablation`),
    recorded in metrics.json.
    """
    t_start = time.perf_counter()
    out_dir = config.out
    set_threads(config.threads)
    dev = get_device(config.device)
    inputs = load_inputs(config, dev)
    train_idx, val_idx, test_idx = (inputs.indices(s) for s in ("train", "val", "test"))
    if test_idx.size < 1 or train_idx.size < 1 or val_idx.size < 1:
        raise ValueError("the atom regressor needs views in the train, val and test splits")

    ablation = None
    if config.ablation_epochs:
        from battgen.train.atom_regressor_ablation import ablation_table

        ablation = ablation_table(inputs, config, dev)

    n_distorted = n_instrument = 0
    if config.distorted_data is not None:  # after the ablation, whose grouped split must not move them
        extra = distorted_inputs(Path(config.translator), Path(config.distorted_data), config.distorted_copies,
                                 config.seed, dev, config.pink_weight)
        n_distorted = len(extra.split)
        inputs = _join_training_views(inputs, extra, f"{config.distorted_data} holds views of validation or test "
                                                     "materials; distort training materials only")
    n_turned = 0
    if config.turned_copies:
        extra = turned_inputs(Path(config.translator), Path(config.distorted_data), config.turned_copies,
                              config.seed, dev)
        n_turned = len(extra.split)
        inputs = _join_training_views(inputs, extra, f"{config.distorted_data} holds views of validation or test "
                                                     "materials; turn training materials only")
    if config.instrument_data is not None:
        extra = instrument_inputs(Path(config.translator), Path(config.instrument_data), dev)
        n_instrument = len(extra.split)
        inputs = _join_training_views(inputs, extra, f"{config.instrument_data} holds views of validation or test "
                                                     "materials; simulate training materials only (--split train)")
    train_idx = inputs.indices("train")

    fit = fit_regressor(inputs, train_idx, val_idx, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, patience=config.patience, augment=config.augment,
                        pooling=config.pooling, output=config.output, seed=config.seed, device=dev,
                        max_minutes=config.max_minutes, progress=config.progress, latent_noise=config.latent_noise)
    model, history = fit.model, fit.history
    pred_np = predict(model, torch.as_tensor(inputs.latents[test_idx], device=dev))
    true_np = inputs.counts[test_idx].astype(np.float32)
    test_metrics = atom_regressor_metrics(true_np, pred_np, inputs.working_ion[test_idx])

    # Staged beside the checkpoint and swapped in whole: a killed run never leaves half of one.
    with atomic.atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        np.savez_compressed(
            staging / PREDICTIONS_FILENAME,
            true=true_np, pred=pred_np, working_ion=inputs.working_ion[test_idx],
            material=inputs.material[test_idx], rotation=inputs.rotation[test_idx],
            index=test_idx.astype(np.int64),
        )
        metrics = {
            "test": test_metrics,
            "best_epoch": fit.best_epoch,
            "best_val_loss": fit.best_val_loss,
            "val_loss": "ion-weighted MSE of counts / count_scale",
            "epochs_run": len(history["val_loss"]),
            "stopped": fit.stopped,
            "seconds_per_epoch": float(np.mean(history["epoch_seconds"])),
            "train_seconds": fit.train_seconds,
            "encode_seconds": inputs.encode_seconds,
            "parameters": model.num_parameters(),
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
            "n_train_distorted": n_distorted,
            "n_train_instrument": n_instrument,
            "n_train_turned": n_turned,
            **({} if ablation is None else {"ablation": ablation}),
            "history": history,
        }
        write_metrics(staging, metrics)
        write_metadata(
            staging,
            command=command_line(config),
            config={
                "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                "weight_decay": config.weight_decay, "patience": config.patience, "optimizer": "AdamW",
                "max_minutes": config.max_minutes, "device": str(dev), "torch_threads": torch.get_num_threads(),
                "translator": for_display(config.translator),
                "latents": None if config.latents is None else for_display(config.latents),
                "augment": config.augment, "latent_noise": config.latent_noise, "sample_weights": "inverse working-ion frequency",
                "distorted_data": None if config.distorted_data is None else for_display(config.distorted_data),
                "distorted_copies": config.distorted_copies if config.distorted_data is not None else None,
                "pink_weight": config.pink_weight if config.distorted_data is not None else None,
                "turned_copies": config.turned_copies if config.distorted_data is not None else None,
                "instrument_data": None if config.instrument_data is None else for_display(config.instrument_data),
                "loss": "MSE on counts / count_scale",
                "model": {k: v for k, v in model.config.items() if not k.startswith("_")},
            },
            seed=config.seed,
            inputs=inputs.inputs,
            wall_time_s=time.perf_counter() - t_start,
            extra={"artifact": "afm_atom_regressor"},
        )
    return metrics
