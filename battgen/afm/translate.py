"""One AFM stack through the shipped models: descriptors, latent, composition and neighbours.

What the AFM page and ``python -m battgen afm translate`` show for a stack, computed in one
place: the translator's descriptors (posterior mean, so a stack always gives the same
answer), its latent, the atom regressor's composition, how unlike the training stacks the
input is (:mod:`battgen.afm.ood`), and the dataset materials nearest by latent
(``latents.npz`` of the translator checkpoint) and by composition.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from battgen.afm.noise import NoiseCheck
from battgen.afm.ood import LatentDensity, OODScore
from battgen.data.composition import formula_guess, top_elements

LATENTS_FILENAME = "latents.npz"


@dataclass
class Translation:
    descriptors: np.ndarray  # (H, W, 6) in [−1, 1]
    mu: np.ndarray  # (4, h, w) unscaled posterior mean
    # (112,) atom counts, the mean over the stack's eight orientations (battgen.afm.orientations);
    # None without an atom regressor
    composition: np.ndarray | None
    ood: OODScore | None = None  # how unlike the training stacks the input is, None without a calibration
    noise: NoiseCheck | None = None  # the stack's own pixel noise against the least the models saw
    # (112,) standard deviation of the counts over those eight orientations
    composition_spread: np.ndarray | None = None

    def top_elements(self, k: int = 8) -> list[tuple[str, float]]:
        return [] if self.composition is None else top_elements(self.composition, k=k)

    @property
    def formula(self) -> str:
        return "" if self.composition is None else formula_guess(self.composition)

    def spread_by_element(self) -> dict[str, float] | None:
        """Symbol -> standard deviation of its count over the stack's eight orientations."""
        if self.composition_spread is None:
            return None
        from battgen.data.composition import element_symbols

        return dict(zip(element_symbols(), map(float, self.composition_spread)))

    def predictions_csv(self) -> bytes:
        """Predicted atom count of every element above 0.05 atoms, largest first, with its spread
        over the stack's eight orientations."""
        frame = pd.DataFrame(self.top_elements(k=112), columns=["element", "predicted_atoms"])
        spread = self.spread_by_element()
        if spread is not None:
            frame["spread_over_orientations"] = [spread[e] for e in frame["element"]]
        return frame.to_csv(index=False).encode()

    def descriptors_npz(self) -> bytes:
        from battgen.afm.simulate import DESCRIPTOR_NAMES

        buffer = io.BytesIO()
        ood = {} if self.ood is None else {"ood_distance": np.float32(self.ood.distance),
                                           "ood_percentile": np.float32(self.ood.percentile),
                                           "ood_threshold": np.float32(self.ood.threshold)}
        if self.noise is not None:
            ood["estimated_snr"] = np.float32(self.noise.snr)
        np.savez_compressed(buffer, descriptors=self.descriptors.astype(np.float32),
                            descriptor_names=np.array(DESCRIPTOR_NAMES), latent=self.mu.astype(np.float32),
                            **({} if self.composition is None else {"composition": self.composition}), **ood)
        return buffer.getvalue()


def translate_stack(translator, stack: np.ndarray, atom_regressor=None, density: LatentDensity | None = None
                    ) -> Translation:
    """Descriptors, latent, (with a regressor) composition over the stack's eight orientations,
    (with a calibration) OOD score and the estimated pixel noise of one stack."""
    from battgen.afm.orientations import composition_over_orientations

    stack = np.asarray(stack, np.float32)
    expected = (translator.config.sample_size, translator.config.sample_size, translator.config.stack_channels)
    if stack.shape != expected:
        raise ValueError(f"the translator expects a {expected[0]}×{expected[1]}×{expected[2]} stack, "
                         f"got {'×'.join(map(str, stack.shape))}; read uploads with target_shape="
                         f"({expected[0]}, {expected[1]})")
    if not np.isfinite(stack).all():
        raise ValueError("the stack contains NaN or infinite values")
    descriptors, mu = translator.translate(stack[None])
    composition = spread = None
    if atom_regressor is not None:
        mean, spread = composition_over_orientations(translator, atom_regressor, stack[None], mu)
        composition, spread = mean[0], spread[0]
    return Translation(descriptors[0], mu[0], composition, None if density is None else density.score(mu[0]),
                       NoiseCheck.of(stack), spread)


@dataclass
class LatentIndex:
    """Latent means of every dataset view, for nearest-material search."""

    mu: np.ndarray  # (N, D) float32, flattened
    material_id: np.ndarray  # (N,) str
    rotation: np.ndarray
    split: np.ndarray
    working_ion: np.ndarray

    @classmethod
    def load(cls, path: str | Path, material_ids: list[str] | None = None) -> "LatentIndex":
        """``latents.npz`` of a translator checkpoint; ``material_ids`` maps old files' indices."""
        path = Path(path)
        if path.is_dir():
            path = path / LATENTS_FILENAME
        if not path.is_file():
            raise ValueError(f"no latents at {path}; train the translator first")
        with np.load(path, allow_pickle=False) as z:
            mu = z["mu"].astype(np.float32).reshape(len(z["mu"]), -1)
            if "material_id" in z.files:
                ids = z["material_id"].astype(str)
            elif material_ids is not None:
                ids = np.asarray(material_ids, dtype=str)[z["material"]]
            else:
                raise ValueError(f"{path} names no material ids; pass the table's ids")
            return cls(mu, ids, z["rotation"], z["split"].astype(str), z["working_ion"].astype(str))

    def per_material_mean(self) -> "LatentIndex":
        """One entry per material: the mean of its views' latents, which is what a screening model
        trained on mean latents (``--targets mean``) generates; a single view is the wrong neighbour."""
        ids, first, inverse = np.unique(self.material_id, return_index=True, return_inverse=True)
        mu = np.zeros((len(ids), self.mu.shape[1]), np.float64)
        np.add.at(mu, inverse, self.mu)
        mu /= np.bincount(inverse)[:, None]
        return LatentIndex(mu.astype(np.float32), ids, np.zeros(len(ids), np.int64), self.split[first],
                           self.working_ion[first])

    def distances(self, mu: np.ndarray, ion: str | None = None) -> pd.DataFrame:
        """Per material, the smallest per-dimension RMS distance of any of its views to each latent.

        ``mu``: one latent or a batch (B, ...). Returns a frame indexed by material id with one
        column per latent (0..B-1), restricted to ``ion``'s materials when given.
        """
        target = np.asarray(mu, np.float32)
        target = target.reshape(1, -1) if target.size == self.mu.shape[1] else target.reshape(len(target), -1)
        if target.shape[1] != self.mu.shape[1]:
            raise ValueError(f"latent has {target.shape[1]} values, the index {self.mu.shape[1]}")
        rows = np.ones(len(self.mu), bool) if ion is None else self.working_ion == ion
        views = self.mu[rows]
        # |a-b|^2 = |a|^2 + |b|^2 - 2ab, one matrix product instead of a (B, N, D) difference array
        sq = (views ** 2).sum(1)[None, :] + (target ** 2).sum(1)[:, None] - 2.0 * target @ views.T
        distance = np.sqrt(np.maximum(sq, 0.0) / views.shape[1])
        frame = pd.DataFrame(distance.T, columns=range(len(target)))
        frame["id"] = self.material_id[rows]
        return frame.groupby("id", sort=False).min()

    def nearest(self, mu: np.ndarray, k: int = 5, ion: str | None = None) -> pd.DataFrame:
        """The ``k`` materials with a view closest to ``mu`` (Euclidean, per-dimension RMS)."""
        target = np.asarray(mu, np.float32).reshape(1, -1)
        if target.shape[1] != self.mu.shape[1]:
            raise ValueError(f"latent has {target.shape[1]} values, the index {self.mu.shape[1]}")
        rows = np.ones(len(self.mu), bool) if ion is None else self.working_ion == ion
        distance = np.sqrt(((self.mu[rows] - target) ** 2).mean(axis=1))
        frame = pd.DataFrame({"id": self.material_id[rows], "rotation": self.rotation[rows],
                              "split": self.split[rows], "latent_distance": distance})
        best = frame.sort_values("latent_distance", kind="stable").drop_duplicates("id")
        return best.head(k).reset_index(drop=True)
