"""The out-of-distribution score: its statistics on known distributions, and the shipped calibration on real inputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from battgen.afm.ood import OOD_FILENAME, LatentDensity, calibrate_from_latents

REPO = Path(__file__).resolve().parents[2]
TRANSLATOR = REPO / "checkpoints" / "translator"


def low_rank_gaussian(n: int, rng: np.random.Generator, dim: int = 60, rank: int = 8) -> np.ndarray:
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))[0]
    scales = np.r_[np.linspace(5.0, 2.0, rank), np.full(dim - rank, 0.1)]
    return (rng.standard_normal((n, dim)) * scales) @ basis.T + 3.0


def test_held_out_draws_of_the_training_distribution_are_calibrated():
    rng = np.random.default_rng(1)
    density = LatentDensity.fit(low_rank_gaussian(4000, rng), low_rank_gaussian(2000, rng), components=8)
    fresh = low_rank_gaussian(4000, rng)
    flagged = (density.distance(fresh) > density.threshold).mean()
    assert flagged == pytest.approx(0.01, abs=0.006)  # the 99th percentile holds for new draws
    percentiles = density.percentile(density.distance(fresh))
    assert np.median(percentiles) == pytest.approx(50, abs=4)


def test_leaving_the_training_subspace_counts_even_when_close_in_euclidean_terms():
    rng = np.random.default_rng(2)
    train = low_rank_gaussian(4000, rng)
    density = LatentDensity.fit(train, low_rank_gaussian(1000, rng), components=8)
    typical = train[:200]
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((60, 60)))[0]
    # One unit along a low-variance direction is a small step next to the spread along the leading ones.
    off = typical + 1.0 * basis[:, 30]
    assert (density.distance(off) > density.threshold).mean() > 0.95
    along = typical + 1.0 * basis[:, 0]
    assert (density.distance(along) > density.threshold).mean() < 0.05
    score = density.score(off[0])
    assert score.out_of_distribution and score.percentile == 100.0
    assert "more unusual than 100.0 % of held-out simulated stacks" in score.summary()


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    density = LatentDensity.fit(low_rank_gaussian(500, rng), low_rank_gaussian(200, rng), components=6,
                                threshold_percentile=95.0, provenance={"fitted_on": "test"})
    loaded = LatentDensity.load(density.save(tmp_path / OOD_FILENAME))
    x = low_rank_gaussian(50, rng)
    np.testing.assert_allclose(loaded.distance(x), density.distance(x), rtol=1e-6)
    assert loaded.threshold == density.threshold and loaded.provenance == {"fitted_on": "test"}
    with pytest.raises(ValueError, match="calibrate-ood"):
        LatentDensity.load(tmp_path / "missing")


def test_settings_are_checked():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="components"):
        LatentDensity.fit(low_rank_gaussian(100, rng), low_rank_gaussian(100, rng), components=60)
    with pytest.raises(ValueError, match="at least 100 held-out"):
        LatentDensity.fit(low_rank_gaussian(200, rng), low_rank_gaussian(20, rng), components=4)
    with pytest.raises(ValueError, match="percentile"):
        LatentDensity.fit(low_rank_gaussian(200, rng), low_rank_gaussian(200, rng), components=4,
                          threshold_percentile=100)
    density = LatentDensity.fit(low_rank_gaussian(200, rng), low_rank_gaussian(200, rng), components=4)
    with pytest.raises(ValueError, match="one latent"):
        density.score(low_rank_gaussian(2, rng))


# --------------------------------------------------------------------------- the shipped calibration


@pytest.fixture(scope="module")
def shipped():
    import torch

    from battgen.models.translator import AFMTranslator

    torch.set_num_threads(1)
    return AFMTranslator.from_pretrained(TRANSLATOR).eval(), LatentDensity.load(TRANSLATOR)


def test_the_shipped_calibration_is_what_calibrate_ood_makes_from_the_shipped_latents(shipped):
    from battgen.artifacts import sha256_file

    _, density = shipped
    assert density.provenance["latents_sha256"] == sha256_file(TRANSLATOR / "latents.npz")
    rebuilt = calibrate_from_latents(TRANSLATOR, components=density.components.shape[0],
                                     threshold_percentile=density.threshold_percentile)
    np.testing.assert_allclose(rebuilt.calibration, density.calibration, rtol=1e-4)
    assert rebuilt.threshold == pytest.approx(density.threshold, rel=1e-4)


def test_shipped_examples_are_in_distribution_and_foreign_inputs_are_not(shipped):
    from battgen.afm.examples import load_examples
    from battgen.afm.formats import common
    from battgen.afm.formats.gwyddion import decode_gwy
    from battgen.afm.formats.grid import to_network_grid, to_unit_range
    from tests.afm_files import gwy_topography_scan

    translator, density = shipped
    examples = load_examples(REPO / "assets" / "afm" / "examples.npz")
    _, mu = translator.translate(np.stack([e.stack for e in examples]))
    assert (density.distance(mu) < density.threshold).all(), density.distance(mu)

    rng = np.random.default_rng(0)
    noise = np.stack([to_unit_range(rng.standard_normal((64, 64, 10))) for _ in range(4)])
    _, noise_mu = translator.translate(noise)
    assert (density.distance(noise_mu) > density.threshold).all()

    # The topography scan the reader refuses, forced through as if its four channels were heights.
    data = gwy_topography_scan()
    with pytest.raises(ValueError, match="topography scan"):
        decode_gwy(common.Upload("scan.gwy", data), None)
    import gwyfile

    loaded = gwyfile.load(io.BytesIO(data))
    maps = np.stack([loaded[f"/{i}/data"].data for i in range(4)])
    forced = to_network_grid(common.Decoded(maps, "gwyddion", 0), (64, 64), 10, None, "scan.gwy").stack
    _, forced_mu = translator.translate(forced)
    assert density.score(forced_mu[0]).out_of_distribution


def test_a_translation_carries_its_score_into_the_download(shipped):
    from battgen.afm.examples import load_examples
    from battgen.afm.translate import translate_stack

    translator, density = shipped
    example = load_examples(REPO / "assets" / "afm" / "examples.npz")[0]
    translation = translate_stack(translator, example.stack, density=density)
    assert translation.ood == density.score(translation.mu) and not translation.ood.out_of_distribution
    with np.load(io.BytesIO(translation.descriptors_npz()), allow_pickle=False) as z:
        assert float(z["ood_percentile"]) == pytest.approx(translation.ood.percentile)
        assert float(z["ood_threshold"]) == pytest.approx(density.threshold)
    assert translate_stack(translator, example.stack).ood is None


def test_between_the_caution_level_and_the_threshold_an_input_is_unusual():
    rng = np.random.default_rng(5)
    density = LatentDensity.fit(low_rank_gaussian(3000, rng), low_rank_gaussian(1000, rng), components=8)
    assert density.caution == pytest.approx(np.percentile(density.calibration, 95))
    assert density.caution < density.threshold
    fresh = low_rank_gaussian(3000, rng)
    scores = [density.score(x) for x in fresh]
    unusual = np.mean([s.unusual for s in scores])
    assert unusual == pytest.approx(0.04, abs=0.015)  # between the 95th and the 99th percentile
    assert not any(s.unusual and s.out_of_distribution for s in scores)
