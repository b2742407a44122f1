"""Each microscope distortion does what its name says, measured on stacks where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from battgen.afm.distortions import (STANDARD_DISTORTIONS, Distortion, drift, gaussian_noise, lateral_offset,
                                     pink_noise, rotation, tip_height_offset)

N = 10


def blob_stack(cy: float = 32.0, cx: float = 32.0, side: int = 64, width: float = 4.0) -> np.ndarray:
    """The same Gaussian blob at every height, brighter closer to the sample."""
    y, x = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    return np.stack([(1 + k) * blob for k in range(N)], axis=2)


def centroid(image: np.ndarray) -> np.ndarray:
    weights = image - image.min()
    return np.array(ndimage.center_of_mass(weights))


def textured_stack(seed: int = 0) -> np.ndarray:
    smooth = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((64, 64, N)), (3, 3, 0))
    return smooth + np.linspace(0, 1, N)[None, None, :]


def test_every_distortion_returns_a_normalised_stack_of_the_same_shape():
    stack = textured_stack()
    for distortion in STANDARD_DISTORTIONS:
        out = distortion.apply(stack, np.random.default_rng(0))
        assert out.shape == stack.shape and out.dtype == np.float32, distortion.name
        assert out.min() == -1.0 and out.max() == 1.0, distortion.name


@pytest.mark.parametrize("snr", [3.0, 10.0])
def test_gaussian_noise_has_the_signal_to_noise_ratio_asked_for(snr):
    stack = textured_stack()
    noisy = gaussian_noise(stack, snr, np.random.default_rng(1))
    # The min–max is one affine map for the whole stack, so each map's correlation with its clean map
    # is that of signal + noise: snr / sqrt(1 + snr²).
    corr = [np.corrcoef(stack[:, :, k].ravel(), noisy[:, :, k].ravel())[0, 1] for k in range(N)]
    np.testing.assert_allclose(corr, snr / np.sqrt(1 + snr**2), atol=0.01)


def test_pink_noise_is_stronger_at_low_spatial_frequencies_than_white_noise():
    stack = np.zeros((64, 64, N)) + np.linspace(0, 1, N)[None, None, :]
    stack[0, 0, :] += 1e-3  # some contrast per map for the SNR to refer to; the noise swamps it (SNR 0.05)

    def band_ratio(noisy: np.ndarray) -> float:
        power = np.abs(np.fft.fft2(noisy - noisy.mean(axis=(0, 1)), axes=(0, 1))) ** 2
        k = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij"))
        return float(power[(k > 0) & (k < 0.05)].mean() / power[k > 0.4].mean())

    assert band_ratio(pink_noise(stack, 0.05, np.random.default_rng(2))) > 10.0
    assert band_ratio(gaussian_noise(stack, 0.05, np.random.default_rng(2))) < 2.0


def test_drift_moves_each_height_in_proportion():
    out = drift(blob_stack(), pixels=6.0, angle_deg=0.0)  # along +x (columns)
    shifts = np.array([centroid(out[:, :, k]) - centroid(out[:, :, 0]) for k in range(N)])
    np.testing.assert_allclose(shifts[:, 1], 6.0 * np.arange(N) / (N - 1), atol=0.05)
    np.testing.assert_allclose(shifts[:, 0], 0.0, atol=0.05)


def test_lateral_offset_moves_every_height_alike():
    out = lateral_offset(blob_stack(), dy=-3.0, dx=5.0)
    for k in range(N):
        np.testing.assert_allclose(centroid(out[:, :, k]), [29.0, 37.0], atol=0.05)


def test_rotation_turns_the_scan_about_its_centre():
    out = rotation(blob_stack(cy=31.5, cx=47.5), 90.0)
    moved = centroid(out[:, :, -1]) - 31.5
    assert np.hypot(*moved) == pytest.approx(16.0, abs=0.2)  # the radius is kept
    assert abs(moved[1]) < 0.2  # a quarter turn takes it off the x axis


def test_tip_height_offset_resamples_the_heights():
    f = np.array([(k + 1.0) ** 2 for k in range(N)])  # Δf growing faster than linearly towards the sample
    stack = np.broadcast_to(f, (8, 8, N)).astype(np.float64)

    def shape_of(out: np.ndarray, first: int) -> np.ndarray:
        # (value − value at a reference height) / (one step's change): what survives the min–max's affine map.
        v = out[0, 0, :].astype(np.float64)
        return (v - v[first]) / (v[first + 1] - v[first])

    closer = shape_of(tip_height_offset(stack, 2.0), 0)  # height k now holds what k + 2 held
    np.testing.assert_allclose(closer[: N - 2], (f[2:] - f[2]) / (f[3] - f[2]), rtol=1e-4)
    farther = shape_of(tip_height_offset(stack, -2.0), 2)  # height k holds what k − 2 held
    np.testing.assert_allclose(farther[2:], (f[: N - 2] - f[0]) / (f[1] - f[0]), rtol=1e-4)


def test_distortions_are_reproducible_and_refuse_unknown_kinds():
    stack = textured_stack()
    a = Distortion("noise", "gaussian", 5.0, "SNR").apply(stack, np.random.default_rng(7))
    b = Distortion("noise", "gaussian", 5.0, "SNR").apply(stack, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown distortion"):
        Distortion("x", "smudge", 1.0, "").apply(stack, np.random.default_rng(0))
    with pytest.raises(ValueError, match="signal-to-noise"):
        gaussian_noise(stack, 0.0, np.random.default_rng(0))


@pytest.mark.parametrize("kind,value", [("offset", 5.0), ("rotation", 20.0), ("drift", 6.0), ("gaussian", 10.0)])
def test_the_truth_moves_with_the_sample(kind, value):
    stack = blob_stack(cy=28.0, cx=40.0)
    truth = stack[:, :, -1:].repeat(6, axis=2)  # descriptors drawn where the sample is
    moved_stack, moved_truth = Distortion("d", kind, value, "").apply_with_truth(stack, truth, np.random.default_rng(5))
    if kind == "gaussian":  # noise does not move the sample
        np.testing.assert_allclose(moved_truth, truth, atol=1e-6)
        return
    closest, farthest = centroid(moved_stack[:, :, -1]), centroid(moved_stack[:, :, 0])
    # Offset and rotation move every height alike; drift's reference is the mean position over the heights.
    expected = (closest + farthest) / 2 if kind == "drift" else closest
    np.testing.assert_allclose(centroid(moved_truth[:, :, 0]), expected, atol=0.3)
