"""What limits the atom regressor: short trainings of each variant, scored on the test split.

Issue 16 asks what caps composition R² and what makes it break under a scan offset. Every row
is one :func:`~battgen.train.atom_regressor.fit_regressor` run on the same latents, seed and
epoch budget, scored on the test split clean and with the test latents rolled by 1 and 3 latent
pixels (a 4- and 12-pixel scan offset: :mod:`battgen.train.latent_augment` says why a roll
stands in for one). Beside them, the trivial baselines every model must beat (per-ion mean
composition; k nearest training latents), and the cost of the formula-disjoint split: the
plain recipe and the k-NN again on a split that only keeps a material's views together.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from battgen.eval.afm_metrics import atom_regressor_metrics
from battgen.train.atom_regressor import RegressorInputs, fit_regressor, predict
from battgen.train.configs import AtomRegressorTrainingConfig

# name -> (pooling, output, augment); the first row is the plain recipe, the others change one or two things.
VARIANTS = {
    "plain recipe (flatten, counts, no augmentation)": ("flatten", "counts", "none"),
    "+ shift augmentation": ("flatten", "counts", "shift"),
    "+ shift, quarter-turn and mirror augmentation": ("flatten", "counts", "shift-dihedral"),
    "global pooling": ("global", "counts", "none"),
    "global pooling + shift augmentation": ("global", "counts", "shift"),
    "fractions + atom count": ("flatten", "fractions", "none"),
    "global pooling + shift augmentation + fractions": ("global", "fractions", "shift"),
}
SHIFTS = (1, 3)  # latent pixels
KNN_K = 5


def _r2(inputs: RegressorInputs, rows: np.ndarray, pred: np.ndarray) -> float:
    return atom_regressor_metrics(inputs.counts[rows], pred, inputs.working_ion[rows])["overall"]["r2"]


def _per_ion_r2(inputs: RegressorInputs, rows: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    per_ion = atom_regressor_metrics(inputs.counts[rows], pred, inputs.working_ion[rows])["per_ion"]
    return {ion: m["r2"] for ion, m in per_ion.items()}


def ion_mean_prediction(inputs: RegressorInputs, train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Every view predicted as the mean composition of the training views of its working ion."""
    pred = np.zeros((len(rows), inputs.counts.shape[1]), np.float32)
    overall = inputs.counts[train].mean(0)
    for ion in np.unique(inputs.working_ion[rows]):
        same = train[inputs.working_ion[train] == ion]
        pred[inputs.working_ion[rows] == ion] = inputs.counts[same].mean(0) if len(same) else overall
    return pred


def knn_prediction(inputs: RegressorInputs, train: np.ndarray, rows: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Every view predicted as the mean composition of its k nearest training latents (Euclidean)."""
    from sklearn.neighbors import KNeighborsRegressor

    flat = inputs.latents.reshape(len(inputs.latents), -1)
    knn = KNeighborsRegressor(n_neighbors=k).fit(flat[train], inputs.counts[train])
    return knn.predict(flat[rows]).astype(np.float32)


def material_grouped_split(inputs: RegressorInputs, seed: int) -> np.ndarray:
    """A split of the same sizes (in materials) that keeps each material's views together but lets
    materials of one formula fall on both sides."""
    materials = np.unique(inputs.material)
    per_split = {s: len(np.unique(inputs.material[inputs.split == s])) for s in ("train", "val", "test")}
    order = np.random.default_rng(seed).permutation(materials)
    n_test, n_val = per_split["test"], per_split["val"]
    assign = {m: "test" for m in order[:n_test]} | {m: "val" for m in order[n_test:n_test + n_val]}
    return np.array([assign.get(m, "train") for m in inputs.material])


def ablation_table(inputs: RegressorInputs, config: AtomRegressorTrainingConfig, device: torch.device) -> dict:
    """Each variant of :data:`VARIANTS` for ``config.ablation_epochs`` epochs, then the baselines."""
    train, val, test = (inputs.indices(s) for s in ("train", "val", "test"))
    test_latents = torch.as_tensor(inputs.latents[test], device=device)

    def run(split_inputs: RegressorInputs, pooling: str, output: str, augment: str) -> dict:
        tr, va, te = (split_inputs.indices(s) for s in ("train", "val", "test"))
        started = time.perf_counter()
        fit = fit_regressor(split_inputs, tr, va, epochs=config.ablation_epochs, batch_size=config.batch_size,
                            lr=config.lr, weight_decay=config.weight_decay, patience=config.patience,
                            augment=augment, pooling=pooling, output=output, seed=config.seed, device=device)
        x = torch.as_tensor(split_inputs.latents[te], device=device)
        pred = predict(fit.model, x)
        row = {"pooling": pooling, "output": output, "augment": augment,
               "test_r2": _r2(split_inputs, te, pred), "per_ion_r2": _per_ion_r2(split_inputs, te, pred),
               "best_epoch": fit.best_epoch, "epochs_run": len(fit.history["val_loss"]),
               "seconds": time.perf_counter() - started}
        for k in SHIFTS:
            row[f"test_r2_rolled_{k}"] = _r2(split_inputs, te, predict(fit.model, torch.roll(x, (k, k), (2, 3))))
        return row

    # A list, not a mapping: metrics.json is written with sorted keys and the plain recipe comes first.
    rows = [{"variant": name, **run(inputs, *variant)} for name, variant in VARIANTS.items()]
    baselines = {
        "per-ion mean composition": _r2(inputs, test, ion_mean_prediction(inputs, train, test)),
        f"{KNN_K}-NN on the latent": _r2(inputs, test, knn_prediction(inputs, train, test)),
    }
    rolled = inputs.latents.copy()
    rolled[test] = torch.roll(test_latents, (SHIFTS[0], SHIFTS[0]), (2, 3)).cpu().numpy()
    baselines[f"{KNN_K}-NN on the latent, test rolled by {SHIFTS[0]}"] = _r2(
        inputs, test, knn_prediction(RegressorInputs(**{**vars(inputs), "latents": rolled}), train, test))

    grouped = RegressorInputs(**{**vars(inputs), "split": material_grouped_split(inputs, config.seed)})
    g_train, g_test = grouped.indices("train"), grouped.indices("test")
    shipped = VARIANTS[next(iter(VARIANTS))]
    split_cost = {
        "plain recipe": {"formula_disjoint": rows[0]["test_r2"],
                           "material_grouped": run(grouped, *shipped)["test_r2"]},
        f"{KNN_K}-NN on the latent": {"formula_disjoint": baselines[f"{KNN_K}-NN on the latent"],
                                      "material_grouped": _r2(grouped, g_test,
                                                              knn_prediction(grouped, g_train, g_test))},
    }
    return {
        "definition": (f"each variant trained {config.ablation_epochs} epochs at most (patience {config.patience}, "
                       f"seed {config.seed}) on the train split, best validation epoch scored on the test split: "
                       "composition R² over all (views x 112) counts, clean and with the test latents rolled "
                       f"by {' and '.join(map(str, SHIFTS))} latent pixels (4 stack pixels each); split_cost: "
                       "the same recipe on a random material-grouped split of the same sizes"),
        "epochs": config.ablation_epochs,
        "rows": rows,
        "baselines": baselines,
        "split_cost": split_cost,
        "n_train": int(len(train)), "n_val": int(len(val)), "n_test": int(len(test)),
    }
