"""Atom regressor variants: latent augmentation, the fractions + count head, global pooling, training
from the translator's stored latents with the ablation table, and the robustness before/after record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from battgen.models.atom_regressor import AtomRegressor
from battgen.train.latent_augment import add_latent_noise, augment_latents, dihedral_each, roll_each

REPO = Path(__file__).resolve().parents[2]


def _latents(b=5, c=4, h=6, w=6, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_a_rolled_latent_map_equals_each_input_rolled_on_its_own():
    x = _latents()
    dy, dx = torch.tensor([0, 1, -2, 3, 5]), torch.tensor([2, -1, 0, -3, 7])
    out = roll_each(x, dy, dx)
    for i in range(len(x)):
        assert torch.equal(out[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), (1, 2)))


def test_quarter_turns_and_mirrors_are_those_of_each_input():
    x = _latents()
    k, flip = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([False, True, False, True, False])
    out = dihedral_each(x, k, flip)
    for i in range(len(x)):
        expected = torch.rot90(x[i].flip(-1) if flip[i] else x[i], int(k[i]), (1, 2))
        assert torch.equal(out[i], expected)


def test_augmentation_only_moves_values_and_none_is_the_identity():
    x = _latents()
    gen = torch.Generator().manual_seed(1)
    assert augment_latents(x, "none", gen) is x
    for mode in ("shift", "shift-dihedral"):
        out = augment_latents(x, mode, gen)
        assert out.shape == x.shape and not torch.equal(out, x)
        # every sample keeps its values, only moved
        assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment_latents(x, "zoom", gen)


def test_latent_noise_has_the_asked_spread_and_zero_adds_none():
    x = _latents(b=64, h=16, w=16)
    gen = torch.Generator().manual_seed(2)
    assert add_latent_noise(x, 0.0, gen) is x
    noise = add_latent_noise(x, 0.15, gen) - x
    assert abs(float(noise.std()) - 0.15) < 0.01 and abs(float(noise.mean())) < 0.01
    with pytest.raises(ValueError, match="latent noise must be >= 0"):
        add_latent_noise(x, -0.1, gen)


def test_the_fractions_head_sums_to_its_total_count():
    model = AtomRegressor(latent_channels=4, conv_channels=(8, 8), hidden_units=16, n_outputs=12, count_scale=16.0,
                          output="fractions", pooling="global").eval()
    mean = torch.rand(12) * 0.3
    model.init_output_bias(mean)
    x = _latents(b=3, h=16, w=16)
    fractions, total = model.composition_parts(x)
    assert torch.allclose(fractions.sum(1), torch.ones(3), atol=1e-6) and (total > 0).all()
    counts = model(x)
    assert (counts >= 0).all()
    assert torch.allclose(counts.sum(1), total * 16.0, rtol=1e-5)
    # the bias starts every output at the training mean: with zero weights the mean comes back exactly
    with torch.no_grad():
        model.head[-1].weight.zero_()
    assert torch.allclose(model.forward_scaled(x), mean.expand(3, -1), atol=1e-5)


def test_global_pooling_ignores_where_a_pattern_sits():
    torch.manual_seed(0)
    model = AtomRegressor(latent_channels=4, conv_channels=(8, 8, 8), hidden_units=16, n_outputs=5,
                          pooling="global").eval()
    x = torch.zeros(1, 4, 32, 32)
    x[..., 8:11, 8:11] = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(2))
    # Moved by a multiple of the trunk's stride of 4, with its receptive field (9 pixels) clear of the
    # border in both places: the zero padding then looks like the background everywhere it is seen.
    moved = torch.roll(x, (8, 4), (2, 3))
    flat = AtomRegressor(latent_channels=4, conv_channels=(8, 8, 8), hidden_units=16, n_outputs=5).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), model(moved), atol=1e-5)
        assert not torch.allclose(flat(x), flat(moved), atol=1e-5)


def test_bad_switches_are_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        AtomRegressor(pooling="max")
    with pytest.raises(ValueError, match="output one of"):
        AtomRegressor(output="logits")


def _small_latents(path: Path, per_split: int = 12) -> Path:
    """The first materials of each split of the shipped translator's stored latents."""
    with np.load(REPO / "checkpoints" / "translator" / "latents.npz", allow_pickle=False) as z:
        rows = np.concatenate([np.flatnonzero(z["split"] == s)[:per_split] for s in ("train", "val", "test")])
        np.savez(path, **{k: (z[k] if z[k].ndim == 0 else z[k][rows]) for k in z.files})
    return path


def test_training_from_stored_latents_with_the_ablation_table(tmp_path):
    from battgen.train.atom_regressor import train_atom_regressor
    from battgen.train.configs import AtomRegressorTrainingConfig

    latents = _small_latents(tmp_path / "latents.npz")
    config = AtomRegressorTrainingConfig(latents=latents, out=tmp_path / "reg", epochs=2, ablation_epochs=1,
                                         pooling="global", output="fractions", augment="shift", threads=1,
                                         device="cpu", progress=False, batch_size=8, latent_noise=0.1)
    metrics = train_atom_regressor(config)
    ablation = metrics["ablation"]
    assert len(ablation["rows"]) == 7 and set(ablation["split_cost"]) == {"plain recipe", "5-NN on the latent"}
    assert all(row["epochs_run"] == 1 and "test_r2_rolled_3" in row for row in ablation["rows"])
    assert {"per-ion mean composition", "5-NN on the latent"} <= set(ablation["baselines"])
    saved = json.loads((tmp_path / "reg" / "metrics.json").read_text())
    assert saved["ablation"] == json.loads(json.dumps(ablation))
    model = AtomRegressor.from_pretrained(tmp_path / "reg").eval()
    assert (model.config.pooling, model.config.output) == ("global", "fractions")
    with np.load(latents) as z:
        counts = model.predict_from_mu(torch.as_tensor(z["mu"][:2], dtype=torch.float32))
    assert counts.shape == (2, 112) and (counts >= 0).all()
    meta = json.loads((tmp_path / "reg" / "metadata.json").read_text())
    assert "--latents" in meta["command"] and "--ablation-epochs 1" in meta["command"]
    assert "--latent-noise 0.1" in meta["command"] and meta["config"]["latent_noise"] == 0.1

    from battgen.eval.afm_report import atom_regressor_ablation

    frame, definition = atom_regressor_ablation(saved)
    assert frame["variant"].iloc[0] == "plain recipe (flatten, counts, no augmentation)" and "R², latent rolled 1 px" in frame
    assert "baseline: per-ion mean composition" in set(frame["variant"]) and "material-grouped" in definition


def test_the_ion_mean_baseline_predicts_each_ions_training_mean():
    from battgen.train.atom_regressor import RegressorInputs
    from battgen.train.atom_regressor_ablation import ion_mean_prediction, material_grouped_split

    counts = np.array([[1, 0], [3, 0], [0, 2], [0, 4], [5, 5], [7, 7]], np.float32)
    inputs = RegressorInputs(latents=np.zeros((6, 1, 2, 2), np.float32), counts=counts,
                             working_ion=np.array(["Li", "Li", "Na", "Na", "Li", "Na"]),
                             split=np.array(["train"] * 4 + ["test"] * 2), material=np.array([0, 0, 1, 1, 2, 3]),
                             rotation=np.zeros(6, int), scaling_factor=1.0, inputs=[], encode_seconds=0.0)
    pred = ion_mean_prediction(inputs, np.arange(4), np.array([4, 5]))
    assert pred.tolist() == [[2, 0], [0, 3]]
    split = material_grouped_split(inputs, seed=0)
    for m in np.unique(inputs.material):
        assert len(set(split[inputs.material == m])) == 1  # a material's views stay together
    assert len(np.unique(inputs.material[split == "test"])) == 2  # as many test materials as before


def test_robustness_keeps_the_previous_models_numbers_as_before(tmp_path):
    from battgen.afm.robustness import carry_over_before

    views = {"split": "test", "seed": 0, "views": 2, "materials": 1}
    data = {"sha256": "d"}
    old = {**views, "data": data, "translator": {"sha256": "t"}, "regressor": {"sha256": "old"},
           "rows": [{"condition": "clean", "composition_r2": 0.5, "ssim_mean": 0.9},
                    {"condition": "offset", "composition_r2": 0.1, "ssim_mean": 0.8}]}
    new = {**views, "data": data, "translator": {"sha256": "t"}, "regressor": {"sha256": "new"},
           "rows": [{"condition": "clean", "composition_r2": 0.6}, {"condition": "offset", "composition_r2": 0.55}]}
    after = carry_over_before(new, old)
    assert after["before"]["regressor"]["sha256"] == "old" and after["before"]["translator"]["sha256"] == "t"
    assert [r["composition_r2"] for r in after["before"]["rows"]] == [0.5, 0.1]
    assert carry_over_before(new, after)["before"] == after["before"]  # a rerun keeps what came before
    # a new encoder is a change of model too: its table keeps the old translator's SSIM and R²
    encoder = carry_over_before({**new, "translator": {"sha256": "student"}, "regressor": {"sha256": "old"}}, old)
    assert encoder["before"]["translator"]["sha256"] == "t" and encoder["before"]["rows"][1]["ssim_mean"] == 0.8
    # other views (another split, or another file without the stored-latent check) are not compared
    assert "before" not in carry_over_before({**new, "views": 3}, old)
    assert "before" not in carry_over_before({**new, "data": {"sha256": "other"}}, old)
    matched = {"reproduces_stored_latents": {"views_matched": 2}}
    rebuilt = carry_over_before({**new, **matched, "data": {"sha256": "other"}}, {**old, **matched})
    assert rebuilt["before"]["regressor"]["sha256"] == "old"  # a rebuilt held-out campaign of the same views
    assert "before" not in carry_over_before(new, None)

    from battgen.afm.robustness import ROBUSTNESS_FILENAME
    from battgen.eval.afm_report import robustness_frame

    (tmp_path / ROBUSTNESS_FILENAME).write_text(json.dumps({
        **after, "ood_threshold_percentile": 99, "ood_threshold": 2.0,
        "definition": "d", "rows": [{**r, "ssim_mean": 0.9} for r in after["rows"]]}))
    frame, about = robustness_frame(tmp_path)
    assert frame["composition R² before"].tolist() == [0.5, 0.1]
    assert frame["SSIM before"].tolist() == [0.9, 0.8]
    assert "before = the models this table replaced" in about


def test_a_checkpoint_saved_before_the_switches_loads_as_the_old_network(tmp_path):
    """Checkpoints written before pooling/output existed (their config.json lacks both) must load unchanged."""
    import shutil

    directory = tmp_path / "atom_regressor"
    shutil.copytree(REPO / "checkpoints" / "screening" / "atom_regressor", directory)
    config = json.loads((directory / "config.json").read_text())
    config.pop("pooling", None)
    config.pop("output", None)
    (directory / "config.json").write_text(json.dumps(config))
    model = AtomRegressor.from_pretrained(directory).eval()
    assert (model.config.pooling, model.config.output) == ("flatten", "counts")
    assert model.predict_from_mu(torch.zeros(1, 4, 16, 16)).shape == (1, 112)


def test_views_mean_trains_on_one_mean_latent_per_material(tmp_path):
    from battgen.train.atom_regressor import load_inputs
    from battgen.train.configs import AtomRegressorTrainingConfig

    latents = _small_latents(tmp_path / "latents.npz")
    every = load_inputs(AtomRegressorTrainingConfig(latents=latents, out=tmp_path / "a"), torch.device("cpu"))
    mean = load_inputs(AtomRegressorTrainingConfig(latents=latents, out=tmp_path / "b", views="mean"),
                       torch.device("cpu"))
    materials = np.unique(every.material)
    assert len(mean.material) == len(materials) and sorted(mean.material) == sorted(materials)
    for m in materials[:3]:
        got = mean.latents[np.flatnonzero(mean.material == m)[0]]
        assert np.allclose(got, every.latents[every.material == m].mean(axis=0), atol=1e-6)
    assert (mean.rotation == -1).all()
    # Both: every view, then one mean latent per material, each with its material's counts.
    both = load_inputs(AtomRegressorTrainingConfig(latents=latents, out=tmp_path / "d", views="all+mean"),
                       torch.device("cpu"))
    assert len(both.material) == len(every.material) + len(materials)
    assert np.array_equal(both.latents[:len(every.material)], every.latents)
    assert np.array_equal(both.latents[len(every.material):], mean.latents)
    assert np.array_equal(both.counts[len(every.material):], mean.counts)
    assert np.array_equal(both.split[len(every.material):], mean.split)
    assert (both.rotation[len(every.material):] == -1).all() and (both.rotation[:len(every.material)] >= 0).all()
    with pytest.raises(ValueError, match="--latents"):
        load_inputs(AtomRegressorTrainingConfig(out=tmp_path / "c", views="mean"), torch.device("cpu"))
