"""How unlike the training stacks an input is, read from the translator's latent.

The translator was trained on clean simulated stacks, and its answer for anything else — a noisy
or drifting measurement, a file of another quantity forced through — looks just as confident.
This module scores an input by where its posterior-mean latent falls among the latents of the
training views: a probabilistic-PCA Mahalanobis distance (Tipping & Bishop 1999), i.e. the
Mahalanobis distance under a Gaussian whose covariance keeps the ``k`` leading principal
directions of the training latents and replaces the rest by their mean variance, so a latent that
leaves the training subspace counts as much as one far along it. The distance is reported as
``sqrt(d² / D)`` (D = latent size), about 1 for a typical training latent.

Calibration turns the distance into a statement a person can use: the distances of held-out
simulated stacks (the validation split, whose latents the trainer stored in ``latents.npz``) are
kept, and an input's percentile says it is "more unusual than X % of held-out simulated stacks";
above the ``threshold_percentile`` (99 by default) the page warns, and above the
:data:`CAUTION_PERCENTILE` (95) it says the input is unusual: the robustness table showed that
small offsets and tip-height errors, which cost the atom regressor most of its R², move typical
inputs to the 93rd–97th percentile without crossing the 99th.

Everything is fitted from the checkpoint's own ``latents.npz`` (:func:`calibrate_from_latents`)
and stored beside it as ``ood_calibration.npz`` (plain arrays plus a JSON provenance string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from battgen import atomic

OOD_FILENAME = "ood_calibration.npz"
DEFAULT_COMPONENTS = 128
DEFAULT_THRESHOLD_PERCENTILE = 99.0
CAUTION_PERCENTILE = 95.0


@dataclass(frozen=True)
class OODScore:
    """One input's distance, its percentile among held-out simulated stacks, and the verdict."""

    distance: float
    percentile: float  # % of the calibration stacks with a smaller distance
    threshold: float  # distance at ``threshold_percentile``
    threshold_percentile: float
    caution: float  # distance at :data:`CAUTION_PERCENTILE` (never above ``threshold``)

    @property
    def out_of_distribution(self) -> bool:
        return self.distance > self.threshold

    @property
    def unusual(self) -> bool:
        """Above the caution level but not out of distribution."""
        return self.caution < self.distance <= self.threshold

    def summary(self) -> str:
        return (f"more unusual than {self.percentile:.1f} % of held-out simulated stacks "
                f"(distance {self.distance:.2f}; warning above {self.threshold:.2f}, "
                f"the {self.threshold_percentile:g}th percentile)")


@dataclass
class LatentDensity:
    """Probabilistic PCA of the training latents plus the calibration distances of held-out ones."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D) orthonormal rows
    eigenvalues: np.ndarray  # (k,) variance along each component
    residual_variance: float  # mean variance of the D − k directions left out
    calibration: np.ndarray  # (M,) sorted distances of the held-out calibration latents
    threshold_percentile: float = DEFAULT_THRESHOLD_PERCENTILE
    provenance: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, train: np.ndarray, held_out: np.ndarray, *, components: int = DEFAULT_COMPONENTS,
            threshold_percentile: float = DEFAULT_THRESHOLD_PERCENTILE, provenance: dict | None = None
            ) -> "LatentDensity":
        """Fit on ``train`` latents (N, ...) and calibrate on ``held_out`` latents (M, ...)."""
        x = _flat(train)
        if not 1 <= components < min(x.shape):
            raise ValueError(f"components must be between 1 and {min(x.shape) - 1} "
                             f"(fewer than the training latents and their size), got {components}")
        if not 0 < threshold_percentile < 100:
            raise ValueError(f"the threshold percentile must be between 0 and 100, got {threshold_percentile}")
        mean = x.mean(axis=0)
        _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
        variances = singular**2 / (len(x) - 1)
        residual = float(variances[components:].sum() / (x.shape[1] - components))
        density = cls(mean.astype(np.float32), vt[:components].astype(np.float32),
                      variances[:components].astype(np.float32), residual, np.zeros(0, np.float32),
                      float(threshold_percentile), dict(provenance or {}))
        held = _flat(held_out)
        if len(held) < 100:
            raise ValueError(f"calibration needs at least 100 held-out latents for a 99th percentile, got {len(held)}")
        density.calibration = np.sort(density.distance(held)).astype(np.float32)
        return density

    # ------------------------------------------------------------------ scoring
    def distance(self, mu: np.ndarray) -> np.ndarray:
        """sqrt(Mahalanobis² / D) of each latent of a batch (or of one latent: a 1-element array)."""
        x = _flat(mu, size=self.mean.shape[0]) - self.mean
        z = x @ self.components.T
        within = (z**2 / self.eigenvalues).sum(axis=1)
        outside = np.maximum((x**2).sum(axis=1) - (z**2).sum(axis=1), 0.0) / self.residual_variance
        return np.sqrt((within + outside) / x.shape[1])

    @property
    def threshold(self) -> float:
        return float(np.percentile(self.calibration, self.threshold_percentile))

    @property
    def caution(self) -> float:
        return min(float(np.percentile(self.calibration, CAUTION_PERCENTILE)), self.threshold)

    def percentile(self, distance: float | np.ndarray) -> np.ndarray:
        """% of calibration distances below ``distance``."""
        return 100.0 * np.searchsorted(self.calibration, distance, side="left") / len(self.calibration)

    def score(self, mu: np.ndarray) -> OODScore:
        """The score of one latent (4, h, w) or (D,)."""
        d = float(self.distance(mu)[0]) if np.size(mu) == self.mean.shape[0] else None
        if d is None:
            raise ValueError(f"score() takes one latent of {self.mean.shape[0]} values, got {np.size(mu)}")
        return OODScore(d, float(self.percentile(d)), self.threshold, self.threshold_percentile, self.caution)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic.save_npz(path, mean=self.mean, components=self.components, eigenvalues=self.eigenvalues,
                        residual_variance=np.float64(self.residual_variance), calibration=self.calibration,
                        threshold_percentile=np.float64(self.threshold_percentile),
                        provenance=np.array(json.dumps(self.provenance, sort_keys=True)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatentDensity":
        """``ood_calibration.npz`` (or the checkpoint folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / OOD_FILENAME
        if not path.is_file():
            raise ValueError(f"no out-of-distribution calibration at {path}; make it with "
                             "`python -m battgen afm calibrate-ood`")
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["components"], z["eigenvalues"], float(z["residual_variance"]),
                       z["calibration"], float(z["threshold_percentile"]), json.loads(str(z["provenance"])))


def _flat(mu: np.ndarray, size: int | None = None) -> np.ndarray:
    x = np.asarray(mu, np.float64)
    if size is not None and x.size == size:
        return x.reshape(1, size)
    if x.ndim < 2:
        raise ValueError(f"expected a batch of latents (N, ...), got shape {x.shape}")
    x = x.reshape(len(x), -1)
    if size is not None and x.shape[1] != size:
        raise ValueError(f"latents have {x.shape[1]} values, the calibration {size}")
    return x


def calibrate_from_latents(checkpoint: str | Path, *, components: int = DEFAULT_COMPONENTS,
                           threshold_percentile: float = DEFAULT_THRESHOLD_PERCENTILE,
                           calibration_split: str = "val") -> LatentDensity:
    """Fit on the train-split latents of a translator checkpoint's ``latents.npz``, calibrate on another split."""
    from battgen.afm.translate import LATENTS_FILENAME
    from battgen.artifacts import sha256_file

    path = Path(checkpoint) / LATENTS_FILENAME
    if not path.is_file():
        raise ValueError(f"no latents at {path}; train the translator first")
    with np.load(path, allow_pickle=False) as z:
        mu, split = z["mu"].astype(np.float32), z["split"].astype(str)
    if calibration_split == "train":
        raise ValueError("calibrate on a held-out split (val or test), not on the training latents")
    train, held = mu[split == "train"], mu[split == calibration_split]
    if not len(held):
        raise ValueError(f"{path} has no '{calibration_split}' latents; its splits are {sorted(set(split))}")
    provenance = {
        "latents": str(path), "latents_sha256": sha256_file(path),
        "fitted_on": f"train split, {len(train)} views (posterior means)",
        "calibrated_on": f"{calibration_split} split, {len(held)} held-out simulated views (posterior means)",
        "method": f"probabilistic-PCA Mahalanobis distance, {components} components, "
                  "sqrt(d²/D) with D = latent size",
    }
    return LatentDensity.fit(train, held, components=components, threshold_percentile=threshold_percentile,
                             provenance=provenance)

