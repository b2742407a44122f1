"""How well the screening U-Net recovers a material's clean latent at each noise level.

At high noise a generated sample's identity is decided: what the U-Net estimates as the clean
latent there is all the sampler has to go on. Two numbers say whether that estimate is any use:

* against ``constant``: the error of predicting the training targets' mean latent for every
  material (a U-Net that knows nothing of the condition should at least learn this);
* against ``shuffled``: the same noisy input with another material's condition. Own minus
  shuffled is how much the six properties + ion steer the estimate at that noise level.

Measured on the training targets of the split (the same ``targets`` selection the model was
trained with: every view, one canonical view or the mean latent per material), with one fixed
draw of noise per material, so rows and checkpoints compare. On the train split it says whether
the model learned what it was shown; on the test split whether that carries over.
"""

from __future__ import annotations

import numpy as np
import torch

from battgen.models.screening import null_condition, predicted_clean_latent, unet_condition_kwargs

DEFAULT_TIMESTEPS = (999, 900, 800, 600, 400, 200, 50)
BATCH = 256


def _clean_estimate(unet, scheduler, x0: torch.Tensor, noise: torch.Tensor, conditions: torch.Tensor,
                    t: int) -> torch.Tensor:
    out = []
    timesteps = torch.full((len(x0),), int(t), dtype=torch.long)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    alpha_bar = scheduler.alphas_cumprod[int(t)]
    for start in range(0, len(x0), BATCH):
        sl = slice(start, start + BATCH)
        with torch.no_grad():
            pred = unet(noisy[sl], timesteps[sl], **unet_condition_kwargs(unet, conditions[sl])).sample
        out.append(predicted_clean_latent(pred.float(), noisy[sl], alpha_bar, scheduler.config.prediction_type))
    return torch.cat(out)


def denoising_by_noise_level(unet, scheduler, targets: np.ndarray, conditions: np.ndarray, *,
                             timesteps=DEFAULT_TIMESTEPS, seed: int = 0, mean_latent: np.ndarray | None = None) -> dict:
    """Clean-latent MSE per noise level with the own, a shuffled and the null condition.

    ``targets``: (N, C, h, w) scaled latents the U-Net was trained to produce; ``conditions``:
    (N, D) rows exactly as the U-Net takes them (see ``BattGenScreeningPipeline.condition_vector``);
    ``mean_latent``: the constant to compare with (default: the mean of ``targets``; pass the
    training split's mean when scoring another split).
    """
    x0 = torch.as_tensor(np.asarray(targets, np.float32))
    cond = torch.as_tensor(np.asarray(conditions, np.float32))
    if x0.ndim != 4 or cond.ndim != 2 or len(x0) != len(cond) or len(x0) < 2:
        raise ValueError(f"need N >= 2 targets (N, C, h, w) and N condition rows, got {tuple(x0.shape)} "
                         f"and {tuple(cond.shape)}")
    constant = torch.as_tensor(np.asarray(x0.mean(0) if mean_latent is None else mean_latent, np.float32))
    constant_mse = float(((x0 - constant) ** 2).mean())
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    other = torch.roll(torch.arange(len(x0)), 1)  # every material gets its neighbour's condition
    null = null_condition(len(x0), cond.shape[1])
    alphas = scheduler.alphas_cumprod
    rows = []
    for t in timesteps:
        a = float(alphas[int(t)])
        if scheduler.config.prediction_type == "epsilon" and a <= 0:
            continue  # an epsilon model's clean estimate is undefined where no signal is left
        errors = {name: float(((_clean_estimate(unet, scheduler, x0, noise, c, t) - x0) ** 2).mean())
                  for name, c in (("own", cond), ("shuffled", cond[other]), ("null", null))}
        rows.append({"timestep": int(t), "snr": a / max(1.0 - a, 1e-12), "own_mse": errors["own"],
                     "shuffled_mse": errors["shuffled"], "null_mse": errors["null"], "constant_mse": constant_mse,
                     "own_vs_constant": errors["own"] / max(constant_mse, 1e-12),
                     "condition_gain": (errors["shuffled"] - errors["own"]) / max(errors["shuffled"], 1e-12)})
    return {"definition": "clean-latent MSE of the U-Net's estimate at each timestep, on the split's training "
                          "targets with one fixed noise draw: with the material's own condition, a neighbour's "
                          "(shuffled) and the null condition, beside the constant mean latent; own_vs_constant "
                          "< 1: better than knowing nothing; condition_gain: relative error drop from the "
                          "shuffled to the own condition",
            "materials": int(len(x0)), "rows": rows}


def denoising_report(pipeline, latents_path, table_dir, targets: str, *, splits=("train", "test"),
                     max_materials: int | None = 300, seed: int = 0) -> dict:
    """:func:`denoising_by_noise_level` of ``pipeline`` on each split's training targets.

    ``targets`` is the selection the model was trained with; the constant is the train split's
    mean target in every split; ``max_materials`` draws that many targets per split (seeded).
    """
    from battgen.train.screening import load_screening_data, select_targets

    data = select_targets(load_screening_data(latents_path, table_dir), targets)
    n_props = len(pipeline.config.property_names)
    conditions = data.conditions.copy()
    conditions[:, :n_props] = pipeline.standardise(conditions[:, :n_props])
    train_mean = data.latents[data.indices("train")].mean(axis=0)
    rng = np.random.default_rng(seed)
    report = {"targets": targets}
    for split in splits:
        rows = data.indices(split)
        if max_materials is not None and len(rows) > max_materials:
            rows = np.sort(rng.choice(rows, int(max_materials), replace=False))
        report[split] = denoising_by_noise_level(pipeline.unet, pipeline.scheduler, data.latents[rows],
                                                 conditions[rows], seed=seed, mean_latent=train_mean)
    return report
