"""How noisy a stack is, read from the stack itself: the check the latent OOD score cannot make.

The robust encoder maps a noisy stack onto the latent of its clean reference, so the latent
density (:mod:`battgen.afm.ood`) stops seeing noise it was trained to ignore — and, past its
training range, noise it merely half-ignores: at SNR 1 the descriptors and the composition are
measurably worse (README, "Robustness") while the latent still looks ordinary. Pixel noise is easy to measure
directly instead. Simulated ppafm maps are smooth, so the response of each height map to
Immerkær's Laplacian-difference kernel (J. Immerkær, *Fast noise variance estimation*, CVIU
64, 1996) is almost all noise: on 300 held-out test stacks it reads white noise of SNR 0.5–30
to within 3 % (clean stacks read ~2,500), and 1/f noise about 1.4× too clean (its power sits
at low frequencies, where the kernel looks less).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from battgen.afm.augment import TRAINING_RANGES

_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
# The kernel's gain on white noise: mean |response| = sigma * 6 * sqrt(2 / pi).
_GAIN = 6.0 * np.sqrt(2.0 / np.pi)
# The least signal-to-noise ratio the robust encoder was trained on.
TRAINED_MIN_SNR = float(min(TRAINING_RANGES["gaussian"][0], TRAINING_RANGES["pink"][0]))


def noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of white pixel noise in a 2-D map (Immerkær's estimator)."""
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or min(image.shape) < 3:
        raise ValueError(f"a map is 2-D and at least 3 x 3, got shape {image.shape}")
    response = ndimage.convolve(image, _KERNEL, mode="reflect")[1:-1, 1:-1]
    return float(np.abs(response).mean() / _GAIN)


def estimate_snr(stack: np.ndarray) -> float:
    """Signal-to-noise ratio of a (H, W, n_heights) stack: per map, the std of the signal (the map's
    variance less the noise's) over the noise std, and the median over the heights. inf for a
    noiseless stack."""
    stack = np.asarray(stack, np.float64)
    if stack.ndim != 3:
        raise ValueError(f"a stack is (H, W, heights), got shape {stack.shape}")
    ratios = []
    for k in range(stack.shape[2]):
        image = stack[:, :, k]
        sigma = noise_sigma(image)
        signal = np.sqrt(max(float(image.var()) - sigma**2, 0.0))
        ratios.append(np.inf if sigma == 0 else signal / sigma)
    return float(np.median(ratios))


@dataclass(frozen=True)
class NoiseCheck:
    """A stack's estimated SNR against the least the model was trained on."""

    snr: float
    trained_min: float = TRAINED_MIN_SNR

    @classmethod
    def of(cls, stack: np.ndarray) -> "NoiseCheck":
        return cls(estimate_snr(stack))

    @property
    def too_noisy(self) -> bool:
        return self.snr < self.trained_min

    def summary(self) -> str:
        level = "no measurable pixel noise" if not np.isfinite(self.snr) or self.snr > 1000 else \
            f"an estimated signal-to-noise ratio of {self.snr:.1f}"
        return f"{level} (the models were trained on SNR {self.trained_min:g} and above, and on clean stacks)"
