"""What a real microscope does to a force-map stack that the simulation does not.

The translator is trained on clean ppafm stacks. A measured stack carries noise (white and
1/f), drifts laterally while the tip steps down through the heights, is not centred on the
molecule, is rotated against the simulation's axes, and starts at a tip height that is only
known to a fraction of an ångström. Each function here applies one of these to a stack in the
dataset layout ((H, W, n_heights), index 0 = farthest height, values in [−1, 1]) and returns it
renormalised by the same per-stack min–max the upload reader applies, so a distorted stack is
exactly what the page would feed the translator had a microscope recorded it.

Distortions are named and parameterised by :class:`Distortion` so a robustness table can list
them and reproduce them (each draws its noise from its own seeded generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from battgen.afm.formats.grid import to_unit_range


def _check(stack: np.ndarray) -> np.ndarray:
    stack = np.asarray(stack, np.float64)
    if stack.ndim != 3 or stack.shape[2] < 2:
        raise ValueError(f"a stack is (H, W, heights) with at least 2 heights, got shape {stack.shape}")
    return stack


def _noise_like(stack: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``noise`` scaled per height so that each map's signal std / noise std is ``snr``."""
    if not snr > 0:
        raise ValueError(f"the signal-to-noise ratio must be positive, got {snr}")
    signal = stack.std(axis=(0, 1), keepdims=True)
    scale = noise.std(axis=(0, 1), keepdims=True)
    return noise * (signal / (snr * np.where(scale > 0, scale, 1.0)))


def gaussian_noise(stack: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """White noise, independent per pixel and height, at ``snr`` (std of each map / std of its noise)."""
    stack = _check(stack)
    return to_unit_range(stack + _noise_like(stack, rng.standard_normal(stack.shape), snr))


def pink_noise(stack: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """1/f noise (power ∝ 1/|k| in each map's 2-D spectrum) at ``snr``: the low-frequency wander of a
    real detector, which white noise of the same strength does not mimic."""
    stack = _check(stack)
    h, w, n = stack.shape
    ky, kx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf  # no DC offset: a constant shift is removed by the min–max anyway
    amplitude = (1.0 / np.sqrt(k))[:, :, None]
    spectrum = np.fft.fft2(rng.standard_normal((h, w, n)), axes=(0, 1)) * amplitude
    noise = np.fft.ifft2(spectrum, axes=(0, 1)).real
    return to_unit_range(stack + _noise_like(stack, noise, snr))


def shift_maps(maps: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Every map of (H, W, C) displaced by (``dy``, ``dx``) pixels, values not renormalised.

    Edge pixels are repeated outside the scanned window, as a larger scan would show more of the
    same surface.
    """
    return ndimage.shift(np.asarray(maps, np.float64), (dy, dx, 0), order=1, mode="nearest")


def rotate_maps(maps: np.ndarray, degrees: float) -> np.ndarray:
    """Every map of (H, W, C) rotated by ``degrees`` about the centre, values not renormalised."""
    return ndimage.rotate(np.asarray(maps, np.float64), degrees, axes=(0, 1), reshape=False, order=1,
                          mode="nearest")


def drift(stack: np.ndarray, pixels: float, angle_deg: float = 30.0) -> np.ndarray:
    """Slow lateral drift between heights: the map at the closest height is displaced by ``pixels``
    (in direction ``angle_deg``) from the farthest one, the heights between in proportion."""
    stack = _check(stack)
    n = stack.shape[2]
    dy, dx = np.sin(np.radians(angle_deg)), np.cos(np.radians(angle_deg))
    out = np.concatenate([shift_maps(stack[:, :, k:k + 1], pixels * k / (n - 1) * dy, pixels * k / (n - 1) * dx)
                          for k in range(n)], axis=2)
    return to_unit_range(out)


def lateral_offset(stack: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """The whole stack displaced by (``dy``, ``dx``) pixels: the molecule is not centred in the scan."""
    return to_unit_range(shift_maps(_check(stack), dy, dx))


def rotation(stack: np.ndarray, degrees: float) -> np.ndarray:
    """The scan rotated by ``degrees`` about its centre (scan axes at an angle to the simulation's)."""
    return to_unit_range(rotate_maps(_check(stack), degrees))


def tip_height_offset(stack: np.ndarray, steps: float) -> np.ndarray:
    """The heights sampled ``steps`` height steps closer to the sample (negative: farther).

    Linear interpolation between recorded heights and linear extrapolation past the closest or
    farthest one: the Δf of a stack started at a slightly different height than the simulation's.
    """
    stack = _check(stack)
    n = stack.shape[2]
    position = np.arange(n, dtype=np.float64) + steps  # index grows towards the sample
    low = np.clip(np.floor(position).astype(int), 0, n - 2)
    frac = (position - low)[None, None, :]
    out = stack[:, :, low] * (1.0 - frac) + stack[:, :, low + 1] * frac
    return to_unit_range(out)


@dataclass(frozen=True)
class Distortion:
    """One named distortion at one strength.

    ``apply(stack, rng)`` returns the distorted stack; ``apply_with_truth`` also moves the
    simulated descriptors the way the distortion moved the sample (offset, rotation, half the
    drift), so a translator that follows the sample is not scored as wrong for doing so.
    """

    name: str
    kind: str
    value: float
    unit: str

    def _draw(self, rng: np.random.Generator) -> tuple[float, ...]:
        if self.kind in ("gaussian", "pink", "tip_height"):
            return ()
        if self.kind in ("drift", "offset"):
            angle = float(rng.uniform(0.0, 2 * np.pi))
            return self.value * np.sin(angle), self.value * np.cos(angle)
        if self.kind == "rotation":
            return (self.value * float(rng.choice((-1.0, 1.0))),)
        raise ValueError(f"unknown distortion kind {self.kind!r}")

    def _stack(self, stack: np.ndarray, params: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
        if self.kind == "gaussian":
            return gaussian_noise(stack, self.value, rng)
        if self.kind == "pink":
            return pink_noise(stack, self.value, rng)
        if self.kind == "tip_height":
            return tip_height_offset(stack, self.value)
        if self.kind == "drift":
            return drift(stack, self.value, angle_deg=float(np.degrees(np.arctan2(*params))))
        if self.kind == "offset":
            return lateral_offset(stack, *params)
        return rotation(stack, params[0])

    def apply(self, stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._stack(stack, self._draw(rng), rng)

    def apply_with_truth(self, stack: np.ndarray, descriptors: np.ndarray, rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray]:
        """(distorted stack, descriptors moved with the sample), from the same random draw."""
        params = self._draw(rng)
        distorted = self._stack(stack, params, rng)
        if self.kind == "offset":
            descriptors = shift_maps(descriptors, *params)
        elif self.kind == "drift":
            # The sample sits at a different place at each height; its mean position is the fair reference.
            descriptors = shift_maps(descriptors, params[0] / 2, params[1] / 2)
        elif self.kind == "rotation":
            descriptors = rotate_maps(descriptors, params[0])
        return distorted, np.asarray(descriptors, np.float32)


# The table's distortions: strengths a careful measurement reaches (SNR 10, a pixel or two of drift
# or offset at 64 px per scan, a few degrees, ±0.2 Å = 2 height steps of 0.1 Å) and harsher ones.
STANDARD_DISTORTIONS: tuple[Distortion, ...] = (
    Distortion("Gaussian noise, SNR 10", "gaussian", 10.0, "SNR"),
    Distortion("Gaussian noise, SNR 3", "gaussian", 3.0, "SNR"),
    Distortion("1/f noise, SNR 10", "pink", 10.0, "SNR"),
    Distortion("1/f noise, SNR 3", "pink", 3.0, "SNR"),
    Distortion("drift 2 px over the stack", "drift", 2.0, "px"),
    Distortion("drift 6 px over the stack", "drift", 6.0, "px"),
    Distortion("lateral offset 4 px", "offset", 4.0, "px"),
    Distortion("lateral offset 12 px", "offset", 12.0, "px"),
    Distortion("rotation 5°", "rotation", 5.0, "deg"),
    Distortion("rotation 20°", "rotation", 20.0, "deg"),
    # A scan has no preferred azimuth; the campaign's views all share one (battgen/afm/orientations.py).
    Distortion("rotation 90°", "rotation", 90.0, "deg"),
    Distortion("tip 0.2 Å closer", "tip_height", 2.0, "steps of 0.1 Å"),
    Distortion("tip 0.2 Å farther", "tip_height", -2.0, "steps of 0.1 Å"),
)
