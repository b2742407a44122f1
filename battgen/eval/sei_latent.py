"""Walks through a trained SEI model's latent space: principal-component walks, barrier sweeps,
interpolation. Inputs and outputs are NumPy; the app and notebooks share these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from battgen.models.prvae import SEIPRVAE, logits_to_lattice

LATENTS_FILENAME = "latents.npz"


@dataclass
class LatentSet:
    """Test-split latents of one checkpoint, with the PCA fitted on its train latents."""

    indices: np.ndarray  # rows of the dataset
    mu: np.ndarray  # (N, latent_dim)
    pcs: np.ndarray  # (N, k)
    pca_components: np.ndarray  # (k, latent_dim)
    pca_mean: np.ndarray  # (latent_dim,)
    explained: np.ndarray  # (k,)
    properties_true: np.ndarray  # (N, P)
    properties_pred: np.ndarray | None
    property_names: tuple[str, ...]
    barriers: np.ndarray  # (N, 15) eV

    def pc_to_latent(self, coordinates: np.ndarray) -> np.ndarray:
        """PC coordinates (B, k') -> latent vectors (B, latent_dim); missing PCs at 0 (the mean)."""
        coordinates = np.atleast_2d(np.asarray(coordinates, float))
        k = coordinates.shape[1]
        return self.pca_mean + coordinates @ self.pca_components[:k]

    def along_pc(self, pc: int, values) -> np.ndarray:
        """Latent vectors at the given coordinates on principal component ``pc`` (0-based), all
        other components at the mean."""
        values = np.atleast_1d(np.asarray(values, float))
        coords = np.zeros((len(values), self.pcs.shape[1]))
        coords[:, pc] = values
        return self.pc_to_latent(coords)

    def pc_range(self, pc: int) -> tuple[float, float, float]:
        """(min, mean, max) of the test latents along principal component ``pc`` (0-based)."""
        values = self.pcs[:, pc]
        return float(values.min()), float(values.mean()), float(values.max())


def load_latents(checkpoint_dir: str | Path) -> LatentSet:
    path = Path(checkpoint_dir) / LATENTS_FILENAME
    if not path.exists():
        raise ValueError(f"{path} is missing: train the model with `python -m battgen train ...`")
    with np.load(path, allow_pickle=False) as data:
        return LatentSet(
            indices=data["indices"],
            mu=data["mu"],
            pcs=data["pcs"],
            pca_components=data["pca_components"],
            pca_mean=data["pca_mean"],
            explained=data["pca_explained_variance_ratio"],
            properties_true=data["properties_true"],
            properties_pred=data["properties_pred"] if "properties_pred" in data.files else None,
            property_names=tuple(str(s) for s in data["property_names"]),
            barriers=data["barriers"],
        )


@dataclass
class Decoded:
    lattices: np.ndarray  # (B, H, W) uint8, most probable species per site
    probabilities: np.ndarray  # (B, C, H, W) float32
    properties: np.ndarray | None  # (B, P) regressor prediction at the decoded latents


@torch.no_grad()
def decode_latents(model: SEIPRVAE, latents: np.ndarray, barriers: np.ndarray | None = None) -> Decoded:
    """Decode latent vectors (B, latent_dim), with barriers (B, 15) or (15,) for conditional models."""
    model.eval()
    z = torch.as_tensor(np.atleast_2d(latents), dtype=model.dtype, device=model.device)
    b = None
    if model.config.condition_dim:
        if barriers is None:
            raise ValueError("this model decodes conditioned on the 15 barriers: give them")
        b = torch.as_tensor(np.asarray(barriers, float), dtype=model.dtype, device=model.device)
    logits = model.decode(z, b)
    properties = None
    if model.regressor_head is not None:
        properties = model.predict_properties(z).cpu().numpy()
    return Decoded(
        lattices=logits_to_lattice(logits).cpu().numpy().astype(np.uint8),
        probabilities=torch.softmax(logits, dim=1).cpu().numpy(),
        properties=properties,
    )


def pc_walk(latents: LatentSet, pc: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """n evenly spaced coordinates on PC ``pc`` from the test minimum to maximum, and their latents."""
    lo, _, hi = latents.pc_range(pc)
    values = np.linspace(lo, hi, n)
    return values, latents.along_pc(pc, values)


def barrier_sweep(base: np.ndarray, index: int, values: np.ndarray) -> np.ndarray:
    """Copies of the 15-vector ``base`` with barrier ``index`` set to each of ``values``."""
    sweep = np.repeat(np.asarray(base, float)[None, :15], len(values), axis=0)
    sweep[:, index] = values
    return sweep


def interpolate(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """n points on the straight line from a to b (rows), ends included."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * np.asarray(a, float)[None] + t * np.asarray(b, float)[None]
