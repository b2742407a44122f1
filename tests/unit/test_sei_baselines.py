"""Trivial baselines of the SEI property regressors: features, known answers, and the report."""

import json

import numpy as np
import pytest

from battgen.eval.sei_baselines import BASELINE_LABELS, property_baselines, row_profiles, species_fractions
from battgen.eval.sei_report import sei_baseline_table
from battgen.sei.observables import PROPERTY_NAMES


def test_row_profiles_count_each_rows_species():
    lattice = np.array([[[0, 1, 1, 2], [2, 2, 2, 2]]])  # one lattice, two rows, four columns
    profile = row_profiles(lattice, 3).reshape(1, 2, 3)
    assert np.allclose(profile[0, 0], [0.25, 0.5, 0.25])
    assert np.allclose(profile[0, 1], [0.0, 0.0, 1.0])
    assert np.allclose(species_fractions(lattice, 3), [[0.125, 0.25, 0.625]])
    with pytest.raises(ValueError, match="species codes"):
        row_profiles(np.full((1, 2, 2), 3), 3)
    with pytest.raises(ValueError, match="rows, columns"):
        row_profiles(np.zeros((2, 2)), 3)


def test_baselines_recover_a_property_the_lattice_determines():
    gen = np.random.default_rng(0)
    n = 120
    lattices = gen.integers(0, 3, size=(n, 6, 8))
    lattices[: n // 2, :3] = 2  # half the runs have a thick species-2 layer
    fraction_2 = (lattices == 2).mean(axis=(1, 2))
    noise = gen.normal(size=n)
    properties = np.stack([fraction_2, noise], axis=1)
    barriers = gen.random((n, 15))
    idx = gen.permutation(n)
    scores = property_baselines(lattices=lattices, barriers=barriers, properties=properties,
                                train_idx=idx[:90], test_idx=idx[90:], names=["fraction_2", "noise"],
                                num_species=3, n_estimators=50)
    assert set(scores) == set(BASELINE_LABELS)
    # the fraction is linear in the species fractions: exact; the forest gets most of it
    assert scores["species_fractions_linear"]["fraction_2"]["r2"] > 0.999
    assert scores["row_profile_forest"]["fraction_2"]["r2"] > 0.8
    # the train mean is the floor; nothing predicts pure noise; barriers carry no signal here
    assert scores["train_mean"]["fraction_2"]["r2"] <= 0.0
    assert scores["row_profile_forest"]["noise"]["r2"] < 0.2
    assert scores["barriers_forest"]["fraction_2"]["r2"] < 0.3
    with pytest.raises(ValueError, match="at least two"):
        property_baselines(lattices=lattices, barriers=barriers, properties=properties, train_idx=idx[:1],
                           test_idx=idx[90:], names=["a", "b"], num_species=3)


def _metrics(directory, r2, baselines=None, runs="passivated"):
    directory.mkdir()
    metrics = {"runs": runs, "test": {"properties": {n: {"r2": r2} for n in PROPERTY_NAMES}}}
    if baselines is not None:
        metrics["baselines"] = baselines
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


def test_baseline_table_puts_models_beside_baselines(tmp_path):
    baselines = {key: {n: {"r2": 0.1 * i} for n in PROPERTY_NAMES} for i, key in enumerate(BASELINE_LABELS)}
    prvae = _metrics(tmp_path / "prvae", 0.9, baselines)
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "metrics.json").write_text(json.dumps({"test": {}}))
    table = sei_baseline_table({"prVAE": prvae, "VAE": vae, "missing": tmp_path / "nope"})
    assert list(table["model"]) == ["prVAE regressor"] + [f"baseline: {v}" for v in BASELINE_LABELS.values()]
    assert table.loc[0, "R² thickness"] == 0.9
    assert table.loc[2, "R² thickness"] == pytest.approx(0.1)
    assert set(table["runs"]) == {"passivated runs"}
    assert sei_baseline_table({"old": _metrics(tmp_path / "old", 0.5)}) is None
