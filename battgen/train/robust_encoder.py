"""Teach the translator's encoder to read a microscope's distortions as the clean stack (issue 16, item 3).

Retraining the translator with ``--augment`` moves its latent space, and with it every model
trained there: the atom regressor, the screening diffusion model, the out-of-distribution
density and the nearest-neighbour index, all of which need the whole ppafm campaign to
retrain. Here the shipped translator is the teacher and stays as it is. The student starts
from its weights, its decoder frozen, and learns on every training view ``x``

    || s(d(x)) − t(r(x)) ||²  +  clean_weight · || s(x) − t(x) ||²

on posterior means in the diffusion model's (unit-variance) latent units, where ``d`` is a
random microscope distortion (:func:`battgen.afm.augment.distorted_pairs`) and ``r(x)`` the
clean stack moved with the sample as the distortion moved it. The first term reads a noisy,
drifted or tip-offset stack as the teacher reads the clean one; the second keeps clean stacks
where the teacher put them, so the decoder, the scaling factor and every model downstream
still fit, and a subset of the campaign suffices to train it.

The student is a whole translator checkpoint. The teacher's latents, out-of-distribution
calibration and discriminator are copied beside it, and ``metrics.json`` records how far the
student's clean latents moved (``robust_encoder.clean_rms``, in units of the latent std).
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from battgen import atomic
from battgen.afm.augment import TRAINING_RANGES, distorted_pairs, kind_probabilities
from battgen.afm.loader import AFMDataset, load_afm_dataset
from battgen.afm.ood import OOD_FILENAME
from battgen.artifacts import read_metrics, write_metadata, write_metrics
from battgen.device import get_device
from battgen.eval.afm_metrics import translator_metrics
from battgen.eval.sei_latent import LATENTS_FILENAME
from battgen.models.translator import AFMTranslator, channels_first
from battgen.paths import for_display
from battgen.train.common import EarlyStopping, TimeBudget, cpu_state, seed_everything, set_threads
from battgen.train.configs import RobustEncoderTrainingConfig
from battgen.train.options import command_line
from battgen.train.translator import DISCRIMINATOR_SUBFOLDER

# What the student shares with its teacher and must carry to be a usable translator checkpoint.
TEACHER_FILES = (LATENTS_FILENAME, OOD_FILENAME, DISCRIMINATOR_SUBFOLDER)
EVAL_BATCH = 64


def _means(model: AFMTranslator, stacks: np.ndarray, device: torch.device) -> torch.Tensor:
    """Scaled posterior means of channels-last stacks (gradients flow when the model trains)."""
    mu = model.encode(channels_first(stacks, device)).mode()
    return model.scale_latents(mu)


@torch.no_grad()
def _eval_means(model: AFMTranslator, stacks: np.ndarray, device: torch.device) -> np.ndarray:
    return np.concatenate([_means(model, stacks[i:i + EVAL_BATCH], device).cpu().numpy()
                           for i in range(0, len(stacks), EVAL_BATCH)])


def holdout_rows(data: AFMDataset, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): the val split when the data has one, else ``share`` of the
    training materials (all their views) held out."""
    train = data.indices("train")
    val = data.indices("val")
    if len(val):
        return train, val
    materials = np.unique(data.material[train])
    if len(materials) < 2:
        raise ValueError(f"{data.path} needs at least two training materials to hold one out")
    n_out = max(1, int(round(share * len(materials))))
    held = set(np.random.default_rng([seed, 3]).permutation(materials)[:n_out].tolist())
    mask = np.array([m in held for m in data.material[train]])
    return train[~mask], train[mask]


@dataclass(frozen=True)
class InstrumentPairs:
    """Views of the training campaign simulated with another instrument (probe particle, tip height,
    oscillation), each beside the row of ``data`` holding the same view imaged as in training."""

    name: str
    path: Path
    stacks: np.ndarray  # (n, H, W, heights) float16, the other instrument's stacks
    rows: np.ndarray  # (n,) rows of the training campaign: the same views, training instrument

    def select(self, keep: np.ndarray) -> "InstrumentPairs":
        return InstrumentPairs(self.name, self.path, self.stacks[keep], self.rows[keep])


def load_instrument_pairs(folder: Path, data: AFMDataset) -> list[InstrumentPairs]:
    """Every campaign under ``folder`` (a subfolder with a ``dataset.npz`` each), matched view by
    view to ``data`` (:func:`battgen.afm.robustness.matching_views`); its instrument named from its plan."""
    from battgen.afm.dataset import campaign_instrument, instrument_campaigns
    from battgen.afm.robustness import matching_views

    campaigns = instrument_campaigns(folder)
    everything = np.arange(len(data))
    pairs = []
    for path in campaigns:
        variant = load_afm_dataset(path, dtype=np.float16, required_splits=())
        ours, theirs = matching_views(variant, data, everything)
        pairs.append(InstrumentPairs(campaign_instrument(path), variant.path, np.asarray(variant.stacks[ours]), theirs))
    return pairs


@dataclass(frozen=True)
class ValidationPairs:
    """Fixed distorted/reference pairs of the held-out views, with the teacher's latents of them
    encoded once: the teacher never changes, so only the student is re-encoded each epoch."""

    clean: np.ndarray
    distorted: np.ndarray
    kinds: np.ndarray
    target_clean: np.ndarray  # teacher(clean)
    target: np.ndarray  # teacher(reference)
    teacher_distorted: np.ndarray  # teacher(distorted): the "before" of every row

    @classmethod
    def make(cls, teacher: AFMTranslator, clean: np.ndarray, rng: np.random.Generator,
             device: torch.device, instrument: tuple[np.ndarray, np.ndarray, list[str]] | None = None
             ) -> "ValidationPairs":
        """``instrument``: (stacks of another instrument, the same views' clean stacks, instrument names),
        scored beside the random distortions as kinds of their own."""
        distorted, reference, kinds = distorted_pairs(clean, rng)
        if instrument is not None and len(instrument[0]):
            distorted = np.concatenate([distorted, instrument[0]])
            reference = np.concatenate([reference, instrument[1]])
            kinds = [*kinds, *instrument[2]]
        return cls(clean=clean, distorted=distorted, kinds=np.array(kinds),
                   target_clean=_eval_means(teacher, clean, device), target=_eval_means(teacher, reference, device),
                   teacher_distorted=_eval_means(teacher, distorted, device))


def _score(student: AFMTranslator, pairs: ValidationPairs, device: torch.device) -> dict:
    """Mean squared latent errors on the fixed validation pairs, overall and per distortion kind."""
    after = _eval_means(student, pairs.distorted, device)
    clean_after = _eval_means(student, pairs.clean, device)

    def mse(a, b, rows=slice(None)):
        return float(((a[rows] - b[rows]) ** 2).mean())

    target, before = pairs.target, pairs.teacher_distorted
    return {
        "distorted_mse": mse(after, target), "distorted_mse_teacher": mse(before, target),
        "clean_mse": mse(clean_after, pairs.target_clean),
        "per_kind": {k: {"student_mse": mse(after, target, pairs.kinds == k),
                         "teacher_mse": mse(before, target, pairs.kinds == k),
                         "views": int((pairs.kinds == k).sum())} for k in sorted(set(pairs.kinds.tolist()))},
    }


def _test_metrics(model: AFMTranslator, data: AFMDataset, device: torch.device) -> dict:
    rows = data.indices("test")
    if not len(rows):
        raise ValueError(f"{data.path} has no test views to score the student on")
    descriptors, _ = model.translate(np.asarray(data.stacks[rows], np.float32), batch_size=EVAL_BATCH)
    return translator_metrics(np.asarray(data.descriptors[rows], np.float32), descriptors,
                              data.descriptor_names, ions=data.working_ion[rows])


def _initial_weights(teacher: AFMTranslator, architecture: dict, init_from: Path | None) -> dict:
    """The teacher's weights, or those of ``init_from``: an earlier student whose decoder must be the
    teacher's, else it reads another latent space and continuing from it would train towards a moved one."""
    if init_from is None:
        return teacher.state_dict()
    if not (Path(init_from) / AFMTranslator.config_name).is_file():
        raise ValueError(f"no translator checkpoint at {init_from} to start the student from")
    start = AFMTranslator.from_pretrained(init_from)
    differ = sorted(k for k, v in start.config.items() if not k.startswith("_") and architecture.get(k) != v)
    if differ:
        raise ValueError(f"{init_from} is not a student of this teacher (its {', '.join(differ)} differ); "
                         "start from the teacher or a student of it")
    state = start.state_dict()
    frozen = [k for k, v in teacher.state_dict().items()
              if k.startswith(("decoder.", "post_quant_conv.")) and not torch.equal(v, state[k])]
    if frozen:
        raise ValueError(f"{init_from} is not a student of this teacher (another decoder: {len(frozen)} tensors "
                         "differ); start from the teacher or a student of it")
    return state


def train_robust_encoder(config: RobustEncoderTrainingConfig) -> dict:
    """Fine-tune the encoder of ``config.teacher`` as the module docstring says; save it to ``config.out``."""
    t_start = time.perf_counter()
    set_threads(config.threads)
    dev = get_device(config.device)
    gen = seed_everything(config.seed)
    teacher_dir = Path(config.teacher)
    if not (teacher_dir / AFMTranslator.config_name).is_file():
        raise ValueError(f"no translator checkpoint at {teacher_dir} (train one with "
                         "`python -m battgen train translator`)")
    teacher = AFMTranslator.from_pretrained(teacher_dir).to(dev).eval().requires_grad_(False)
    teacher_metrics = read_metrics(teacher_dir) or {}
    # Made from the config, not loaded: a loaded model's config carries the absolute path it came from.
    architecture = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
    student = AFMTranslator.from_config(architecture)
    student.load_state_dict(_initial_weights(teacher, architecture, config.init_from))
    student.to(dev)
    student.decoder.requires_grad_(False)
    student.post_quant_conv.requires_grad_(False)

    data = load_afm_dataset(config.data, dtype=np.float16, required_splits=("train",))
    train_rows, val_rows = holdout_rows(data, config.holdout, config.seed)
    if not len(train_rows):
        raise ValueError(f"{data.path} has no training views")
    instrument, instrument_val = [], None
    if config.instrument_data is not None:
        # Views of held-out materials score the student; those of training materials train it.
        held_out = np.isin(data.material, data.material[val_rows])
        groups = load_instrument_pairs(config.instrument_data, data)
        instrument = [group.select(np.isin(group.rows, train_rows)) for group in groups]
        val_groups = [group.select(held_out[group.rows]) for group in groups]
        instrument_val = (np.concatenate([g.stacks for g in val_groups]).astype(np.float32),
                          np.asarray(data.stacks[np.concatenate([g.rows for g in val_groups])], np.float32),
                          [g.name for g in val_groups for _ in g.rows])
    pairs = ValidationPairs.make(teacher, np.asarray(data.stacks[val_rows], np.float32),
                                 np.random.default_rng([config.seed, 2]), dev, instrument=instrument_val)
    # A training item is a row of the campaign (distorted at random each epoch) or (group, index) of
    # an instrument campaign; group -1 marks the campaign's own rows.
    items = np.array([(-1, int(r)) for r in train_rows]
                     + [(g, i) for g, group in enumerate(instrument) for i in range(len(group.rows))], np.int64)

    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)
    pair_rng = np.random.default_rng([config.seed, 1])
    budget = TimeBudget(config.max_minutes)
    stopper = EarlyStopping(config.patience)
    history: dict[str, list] = defaultdict(list)
    stopped = "max_epochs"
    start_score = _score(student, pairs, dev)

    def objective(score: dict) -> float:
        return score["distorted_mse"] + config.clean_weight * score["clean_mse"]

    # The starting point (the teacher, or --init-from) is the first candidate: a fine-tune that only
    # makes things worse ships nothing new.
    stopper.update(-1, objective(start_score), lambda: cpu_state(student))
    epochs = tqdm(range(config.epochs), desc="robust encoder", unit="epoch", disable=not config.progress)
    for epoch in epochs:
        if not budget.allows_epoch(history["epoch_seconds"]):
            stopped = "max_minutes"
            break
        t_epoch = time.perf_counter()
        student.train()
        order = torch.randperm(len(items), generator=gen).numpy()
        sums = {"distorted": 0.0, "clean": 0.0}
        n_clean_seen = 0
        for i in range(0, len(order), config.batch_size):
            batch = items[order[i:i + config.batch_size]]
            rows = np.sort(batch[batch[:, 0] < 0, 1])
            clean = np.asarray(data.stacks[rows], np.float32)
            distorted, reference, _ = distorted_pairs(clean, pair_rng, config.pink_weight)
            for g, index in batch[batch[:, 0] >= 0]:
                group = instrument[g]
                distorted = np.concatenate([distorted, group.stacks[index][None].astype(np.float32)])
                reference = np.concatenate([reference, np.asarray(data.stacks[group.rows[index]], np.float32)[None]])
            with torch.no_grad():
                target = _means(teacher, np.concatenate([reference, clean]), dev)
            pred = _means(student, np.concatenate([distorted, clean]), dev)
            n = len(distorted)
            loss_distorted = ((pred[:n] - target[:n]) ** 2).mean()
            loss_clean = ((pred[n:] - target[n:]) ** 2).mean() if len(rows) else pred.new_zeros(())
            loss = loss_distorted + config.clean_weight * loss_clean
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["distorted"] += loss_distorted.item() * n
            sums["clean"] += loss_clean.item() * len(rows)
            n_clean_seen += len(rows)
        student.eval()
        val = _score(student, pairs, dev)
        history["train_distorted_mse"].append(sums["distorted"] / len(items))
        history["train_clean_mse"].append(sums["clean"] / max(1, n_clean_seen))
        history["val_distorted_mse"].append(val["distorted_mse"])
        history["val_clean_mse"].append(val["clean_mse"])
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        epochs.set_postfix(distorted=f"{val['distorted_mse']:.4f}", clean=f"{val['clean_mse']:.4f}")
        reason = stopper.update(epoch, objective(val), lambda: cpu_state(student))
        if reason:
            stopped = reason
            break
    epochs.close()
    student.load_state_dict(stopper.best())
    student.eval()
    val = _score(student, pairs, dev)

    summary = {
        "teacher": for_display(teacher_dir),
        "objective": "MSE of scaled posterior means: student(distorted) vs teacher(clean reference), plus "
                     f"{config.clean_weight:g} x student(clean) vs teacher(clean)",
        "clean_rms": float(np.sqrt(val["clean_mse"])),
        "validation_before": start_score, "validation": val,
        # best_epoch 0: no epoch beat the starting point, which is then kept as it was
        "init_from": None if config.init_from is None else for_display(config.init_from),
        "best_epoch": stopper.best_epoch + 1, "epochs_run": len(history["epoch_seconds"]), "stopped": stopped,
        "train_seconds": budget.elapsed(), "n_train": int(len(train_rows)), "n_val": int(len(val_rows)),
        "train_materials": int(len(np.unique(data.material[train_rows]))),
        "instrument_views": {group.name: {"train": int(len(group.rows)),
                                          "val": int(np.sum(pairs.kinds == group.name))} for group in instrument},
        "history": dict(history),
    }
    if config.init_from is not None:
        # The shipped student's cost is the sum of every stage it was trained in.
        earlier = (read_metrics(config.init_from) or {}).get("robust_encoder") or {}
        summary["earlier_stages"] = [*earlier.get("earlier_stages", []), {
            k: earlier.get(k) for k in ("train_seconds", "epochs_run", "best_epoch", "n_train", "train_materials",
                                        "init_from", "training_ranges", "kind_probabilities")}]
        summary["total_train_seconds"] = summary["train_seconds"] + sum(
            stage.get("train_seconds") or 0.0 for stage in summary["earlier_stages"])
    summary["training_ranges"] = {k: list(v) for k, v in TRAINING_RANGES.items()}
    summary["kind_probabilities"] = dict(zip(TRAINING_RANGES, kind_probabilities(config.pink_weight).round(4).tolist()))
    metrics = {k: v for k, v in teacher_metrics.items() if k != "robust_encoder"}
    metrics["robust_encoder"] = summary
    if config.eval_data is not None:
        held_out = load_afm_dataset(config.eval_data, required_splits=("test",))
        metrics["test"] = _test_metrics(student, held_out, dev)
        metrics["test_teacher"] = _test_metrics(teacher, held_out, dev)
        metrics["n_test"] = int(len(held_out.indices("test")))  # the views both were just scored on
        summary["test_data"] = for_display(held_out.path)
    with atomic.atomic_directory(Path(config.out)) as staging:
        student.save_pretrained(staging)
        for name in TEACHER_FILES:
            source = teacher_dir / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            elif source.is_file():
                shutil.copy2(source, staging / name)
        write_metrics(staging, metrics)
        write_metadata(
            staging,
            command=command_line(config),
            config={"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                    "patience": config.patience, "max_minutes": config.max_minutes, "optimizer": "Adam",
                    "clean_weight": config.clean_weight, "holdout": config.holdout, "device": str(dev),
                    "init_from": None if config.init_from is None else for_display(config.init_from),
                    "instrument_data": None if config.instrument_data is None else for_display(config.instrument_data),
                    "torch_threads": torch.get_num_threads(), "teacher": for_display(teacher_dir),
                    "trained": "encoder and quant_conv; decoder frozen",
                    "model": {k: v for k, v in student.config.items() if not k.startswith("_")}},
            seed=config.seed,
            inputs=[data.path, *(group.path for group in instrument)],
            wall_time_s=time.perf_counter() - t_start,
            extra={"artifact": "afm_translator",
                   "copied_from_teacher": [n for n in TEACHER_FILES if (teacher_dir / n).exists()]},
        )
    return metrics
