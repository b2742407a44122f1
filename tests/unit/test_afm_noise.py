"""The stack's own noise estimate (battgen/afm/noise.py): what it reads, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from battgen.afm.distortions import gaussian_noise, pink_noise
from battgen.afm.noise import TRAINED_MIN_SNR, NoiseCheck, estimate_snr, noise_sigma


def smooth_stack(n: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] / n
    blobs = sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.01) for cy, cx in ((0.3, 0.4), (0.6, 0.7), (0.7, 0.2)))
    return np.stack([blobs * (1 + 0.2 * k) for k in range(10)], -1) * 2 - 1


def test_white_noise_is_read_at_its_strength_and_a_clean_stack_as_clean():
    stack, rng = smooth_stack(), np.random.default_rng(0)
    assert estimate_snr(stack) > 100
    for snr in (0.5, 1.0, 3.0, 10.0):
        assert estimate_snr(gaussian_noise(stack, snr, rng)) == pytest.approx(snr, rel=0.1)
    assert noise_sigma(np.random.default_rng(1).standard_normal((64, 64)) * 0.3) == pytest.approx(0.3, rel=0.05)
    # 1/f noise puts its power where the kernel looks less: read as cleaner, never as noisier
    assert 1.0 < estimate_snr(pink_noise(stack, 1.0, rng)) < 2.5


def test_the_check_flags_noise_below_the_training_range_only():
    stack, rng = smooth_stack(), np.random.default_rng(2)
    assert TRAINED_MIN_SNR == 2.0
    assert NoiseCheck.of(gaussian_noise(stack, 1.0, rng)).too_noisy
    assert not NoiseCheck.of(gaussian_noise(stack, 4.0, rng)).too_noisy
    assert not NoiseCheck.of(stack).too_noisy and "no measurable pixel noise" in NoiseCheck.of(stack).summary()
    assert NoiseCheck(np.inf).summary().startswith("no measurable") and not NoiseCheck(np.inf).too_noisy


@pytest.mark.parametrize("bad", [np.zeros((64, 64)), np.zeros((2, 2, 10))])
def test_shapes_that_are_not_stacks_are_refused(bad):
    with pytest.raises(ValueError):
        estimate_snr(bad)
