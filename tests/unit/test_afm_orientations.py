"""The composition the page reads is the mean over a stack's eight quarter turns and mirrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from battgen.afm.orientations import ORIENTATIONS, composition_over_orientations, turn

REPO = Path(__file__).resolve().parents[2]


def test_the_eight_orientations_are_the_symmetries_of_the_square():
    maps = np.random.default_rng(0).random((2, 6, 6, 3))
    turned = [turn(maps, k, m) for k, m in ORIENTATIONS]
    assert len({a.tobytes() for a in turned}) == 8
    assert np.array_equal(turned[0], maps)
    assert np.array_equal(turn(turn(maps, 1), 3), maps)
    assert np.array_equal(turn(turn(maps, 2, True), 2, True), maps)
    # One stack turns the same way as a batch of one.
    assert np.array_equal(turn(maps[0], 1, True), turn(maps, 1, True)[0])
    # Turning any orientation gives another one of the eight (a group): what makes the mean invariant.
    for k, m in ORIENTATIONS:
        assert all(any(np.array_equal(turn(t, k, m), u) for u in turned) for t in turned)
    with pytest.raises(ValueError, match="maps"):
        turn(maps[0, :, :, 0], 1)


@pytest.fixture(scope="module")
def shipped():
    import torch

    from battgen.models.atom_regressor import AtomRegressor
    from battgen.models.translator import AFMTranslator

    torch.set_num_threads(1)
    with np.load(REPO / "assets" / "afm" / "examples.npz", allow_pickle=False) as z:
        stacks = z["stacks"][:3].astype(np.float32)
    return (AFMTranslator.from_pretrained(REPO / "checkpoints" / "translator").eval(),
            AtomRegressor.from_pretrained(REPO / "checkpoints" / "atom_regressor").eval(), stacks)


def test_a_turned_or_mirrored_scan_reads_the_same_composition(shipped):
    translator, regressor, stacks = shipped
    mean, spread = composition_over_orientations(translator, regressor, stacks)
    assert mean.shape == spread.shape == (3, 112)
    for k, m in [(1, False), (2, True), (3, True)]:
        turned_mean, turned_spread = composition_over_orientations(
            translator, regressor, np.ascontiguousarray(turn(stacks, k, m)))
        np.testing.assert_allclose(turned_mean, mean, atol=1e-4)
        np.testing.assert_allclose(turned_spread, spread, atol=1e-4)
    # The shipped models were trained in one frame, so a single reading does depend on the turn:
    # the spread is what the mean removes.
    assert spread.max() > 0.1


def test_passing_the_stacks_latents_saves_one_encoding_and_changes_nothing(shipped):
    translator, regressor, stacks = shipped
    mu = translator.latent_means(stacks)
    _, mu_translate = translator.translate(stacks)
    np.testing.assert_array_equal(mu, mu_translate)
    with_mu = composition_over_orientations(translator, regressor, stacks, mu)
    without = composition_over_orientations(translator, regressor, stacks)
    for a, b in zip(with_mu, without):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="square"):
        composition_over_orientations(translator, regressor, stacks[:, :, :32])


def test_the_page_reads_the_mean_and_exports_the_spread(shipped):
    import io

    import pandas as pd

    from battgen.afm.translate import translate_stack

    translator, regressor, stacks = shipped
    translation = translate_stack(translator, stacks[0], regressor)
    mean, spread = composition_over_orientations(translator, regressor, stacks[:1])
    np.testing.assert_allclose(translation.composition, mean[0], atol=1e-6)
    np.testing.assert_allclose(translation.composition_spread, spread[0], atol=1e-6)
    frame = pd.read_csv(io.BytesIO(translation.predictions_csv()))
    assert list(frame.columns) == ["element", "predicted_atoms", "spread_over_orientations"]
    first = frame.iloc[0]
    from battgen.data.composition import element_symbols

    assert first["spread_over_orientations"] == pytest.approx(spread[0, element_symbols().index(first["element"])],
                                                              abs=1e-6)
