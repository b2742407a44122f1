"""Training-time microscope distortions for the translator (battgen/afm/augment.py)."""

import numpy as np
import pytest

from battgen.afm.augment import TRAINING_RANGES, augment_views, kind_probabilities, random_distortion
from battgen.afm.distortions import lateral_offset, shift_maps


def _views(n=6, size=16, rng=None):
    rng = rng or np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    blob = np.exp(-((y - 0.3) ** 2 + (x - 0.25) ** 2) / 0.02)  # off centre: a rotation moves it
    stacks = np.stack([np.stack([blob * (k + 1) / 10 for k in range(10)], -1) for _ in range(n)]) * 2 - 1
    desc = np.repeat(np.stack([blob] * 6, -1)[None], n, 0) * 2 - 1
    return stacks.astype(np.float32), desc.astype(np.float32)


def test_random_distortions_cover_every_kind_within_their_ranges():
    rng = np.random.default_rng(1)
    drawn = [random_distortion(rng) for _ in range(600)]
    assert {d.kind for d in drawn} == set(TRAINING_RANGES)
    for d in drawn:
        low, high, _ = TRAINING_RANGES[d.kind]
        assert low <= d.value <= high


def test_a_pink_weight_draws_1f_noise_that_much_more_often_and_weight_one_repeats_the_even_draw():
    probabilities = dict(zip(TRAINING_RANGES, kind_probabilities(2.5)))
    assert probabilities["pink"] == pytest.approx(1 / 3)
    assert all(p == pytest.approx(2 / 15) for kind, p in probabilities.items() if kind != "pink")
    assert np.allclose(kind_probabilities(1.0), 1 / len(TRAINING_RANGES))
    rng = np.random.default_rng(4)
    kinds = [random_distortion(rng, pink_weight=2.5).kind for _ in range(3000)]
    assert abs(kinds.count("pink") / 3000 - 1 / 3) < 0.03
    assert abs(kinds.count("drift") / 3000 - 2 / 15) < 0.03
    # weight 1 is the draw every shipped stage before the weight existed was trained with, value for value
    for seed in range(20):
        even = list(TRAINING_RANGES)[int(np.random.default_rng(seed).integers(len(TRAINING_RANGES)))]
        assert random_distortion(np.random.default_rng(seed)).kind == even
    assert {random_distortion(rng, pink_weight=0.0).kind for _ in range(300)} == set(TRAINING_RANGES) - {"pink"}
    with pytest.raises(ValueError, match="1/f noise weight"):
        kind_probabilities(-1.0)


def test_augment_views_distorts_about_the_chosen_share_and_moves_the_truth_with_the_sample():
    stacks, desc = _views(n=200)
    x, y = augment_views(stacks, desc, 0.5, np.random.default_rng(2))
    changed = np.array([not np.allclose(a, b) for a, b in zip(x, stacks)])
    assert 0.35 < changed.mean() < 0.65
    assert np.array_equal(x[~changed], stacks[~changed]) and np.array_equal(y[~changed], desc[~changed])
    assert x.dtype == np.float32 and x.min() >= -1.0001 and x.max() <= 1.0001
    assert np.array_equal(stacks, _views(n=200)[0])  # the inputs are left untouched
    none_x, none_y = augment_views(stacks, desc, 0.0, np.random.default_rng(2))
    assert np.array_equal(none_x, stacks) and np.array_equal(none_y, desc)
    with pytest.raises(ValueError, match="probability"):
        augment_views(stacks, desc, 1.5, np.random.default_rng(0))


def _centroid(image):
    weights = image - image.min()
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return np.array([(weights * y).sum(), (weights * x).sum()]) / weights.sum()


@pytest.mark.parametrize("kind, value", [("offset", 3.0), ("rotation", 20.0)])
def test_a_moved_view_keeps_stack_and_descriptors_aligned(monkeypatch, kind, value):
    from battgen.afm import augment
    from battgen.afm.distortions import Distortion

    monkeypatch.setattr(augment, "random_distortion", lambda rng: Distortion(kind, kind, value, "px"))
    stacks, desc = _views(n=4)
    x, y = augment_views(stacks, desc, 1.0, np.random.default_rng(3))
    for i in range(4):
        moved_stack = _centroid(x[i, :, :, -1]) - _centroid(stacks[i, :, :, -1])
        moved_truth = _centroid(y[i, :, :, 0]) - _centroid(desc[i, :, :, 0])
        assert np.linalg.norm(moved_stack) > 0.5  # it moved
        np.testing.assert_allclose(moved_stack, moved_truth, atol=0.3)  # and the truth moved with it
