"""SEI (pr)VAE: model shapes and persistence, conditioning, training entry point, metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch

from battgen.eval.sei_metrics import (
    latent_pc_r2,
    linear_fit_r2,
    property_correlation,
    r2_score,
    reconstruction_metrics,
    regression_metrics,
    sei_test_metrics,
)
from battgen.models.prvae import (
    PROPERTY_NAMES,
    SPECIES_NAMES,
    SEIPRVAE,
    build_sei_model,
    lattice_to_onehot,
    logits_to_lattice,
    sei_vae_loss,
)
from battgen.sei.dataset import load_dataset as load_sei_dataset
from battgen.train.configs import SEITrainingConfig
from battgen.train.options import command_line
from battgen.train.sei_prvae import class_weights_from_frequencies, train_sei_model

L = 50
N_BARRIERS = 15
RANGES = [[0.1 + 0.01 * i, 0.6 + 0.02 * i] for i in range(N_BARRIERS)]
OBS_NAMES = ["thickness", "porosity", "inorganic_fraction", "organic_fraction", "density"]


def _model(kind: str, **kw) -> SEIPRVAE:
    torch.manual_seed(0)
    return build_sei_model(kind, barrier_ranges=RANGES if kind == "cprvae" else None,
                           property_min=[0.0, 1.0, 10.0, 0.0], property_max=[1.0, 30.0, 400.0, 1.0], **kw)


def _barriers(n: int, gen: np.random.Generator) -> np.ndarray:
    r = np.asarray(RANGES)
    return (r[:, 0] + gen.random((n, N_BARRIERS)) * (r[:, 1] - r[:, 0])).astype(np.float32)


def _write_dataset(directory, n: int = 40, seed: int = 0, status=None):
    """A random dataset with the builder's keys, dtypes and split codes (for plumbing only)."""
    gen = np.random.default_rng(seed)
    lattices = gen.choice(7, size=(n, L, L), p=[0.55, 0.02, 0.15, 0.02, 0.02, 0.04, 0.2]).astype(np.uint8)
    split = np.zeros(n, np.int8)
    split[int(0.7 * n):int(0.85 * n)] = 1
    split[int(0.85 * n):] = 2
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(
        directory / "dataset.npz",
        lattices=lattices,
        barriers=_barriers(n, gen),
        barrier_ranges=np.asarray(RANGES),
        observables=gen.random((n, len(OBS_NAMES))).astype(np.float32) * [30, 1, 1, 1, 400],
        observable_names=np.array(OBS_NAMES),
        split=split,
        seeds=np.arange(n, dtype=np.int64),
        **({} if status is None else {"status": np.asarray(status, np.int8)}),
    )
    return directory


# --------------------------------------------------------------------------- model


def test_onehot_and_argmax_round_trip():
    lat = np.random.default_rng(1).integers(0, 7, size=(3, L, L)).astype(np.uint8)
    onehot = lattice_to_onehot(lat)
    assert onehot.shape == (3, 7, L, L) and onehot.dtype == torch.float32
    assert torch.equal(onehot.sum(1), torch.ones(3, L, L))
    assert np.array_equal(logits_to_lattice(onehot).numpy(), lat)
    assert lattice_to_onehot(torch.as_tensor(lat[0])).shape == (1, 7, L, L)
    with pytest.raises(ValueError):
        lattice_to_onehot(np.full((L, L), 7, np.uint8))


@pytest.mark.parametrize("kind", ["vae", "prvae", "cprvae"])
def test_shapes(kind):
    model = _model(kind).eval()
    gen = np.random.default_rng(0)
    x = lattice_to_onehot(gen.integers(0, 7, size=(4, L, L)))
    b = torch.as_tensor(_barriers(4, gen)) if kind == "cprvae" else None
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 50)
    assert model.decode(mu, b).shape == (4, 7, L, L)
    out = model(x, b)
    assert out.logits.shape == (4, 7, L, L)
    assert torch.equal(out.z, out.mu)  # eval mode decodes the posterior mean
    assert model.kind == kind
    if kind == "vae":
        assert out.properties is None
        with pytest.raises(ValueError):
            model.predict_properties(mu)
    else:
        assert out.properties.shape == (4, len(PROPERTY_NAMES))
        assert torch.allclose(model.predict_properties(mu), out.properties)
        assert torch.allclose(model.unscale_properties(out.properties_scaled), out.properties)
    assert model.generate(2, b[:1] if b is not None else None).shape == (2, L, L)


def test_property_scaling_is_physical():
    model = _model("prvae")
    y = torch.tensor([[0.5, 15.5, 205.0, 0.25]])
    assert torch.allclose(model.scale_properties(y), torch.tensor([[0.5, 0.5, 0.5, 0.25]]))
    assert torch.allclose(model.unscale_properties(model.scale_properties(y)), y)


@pytest.mark.parametrize("kind", ["vae", "prvae", "cprvae"])
def test_save_load_round_trip_is_exact(kind, tmp_path):
    model = _model(kind)
    # a few training steps so BatchNorm running statistics differ from their initial values
    gen = np.random.default_rng(0)
    lat = torch.as_tensor(gen.integers(0, 7, size=(6, L, L)))
    b = torch.as_tensor(_barriers(6, gen)) if kind == "cprvae" else None
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    for _ in range(2):
        loss = sei_vae_loss(model, model(lattice_to_onehot(lat), b), lat, torch.rand(6, 4), lam=1.0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = SEIPRVAE.from_pretrained(tmp_path).eval()
    assert loaded.kind == kind and loaded.config.property_max == model.config.property_max
    assert list(loaded.config.species_names) == list(SPECIES_NAMES)
    x = lattice_to_onehot(lat)
    a, c = model(x, b), loaded(x, b)
    assert torch.equal(a.logits, c.logits) and torch.equal(a.mu, c.mu)
    if kind != "vae":
        assert torch.equal(a.properties, c.properties)


def test_conditional_decoder_requires_and_uses_barriers():
    model = _model("cprvae").eval()
    z = torch.zeros(2, 50)
    with pytest.raises(ValueError):
        model.decode(z)
    b = torch.as_tensor(_barriers(2, np.random.default_rng(0)), dtype=torch.float32).requires_grad_(True)
    model.decode(z, b).sum().backward()
    assert b.grad is not None and b.grad.abs().sum() > 0


def test_conditional_decoder_learns_barrier_dependence():
    """After optimisation the decoder must paint different lattices for different barriers.

    Targets depend only on barrier e1 (low e1 -> Li2CO3 everywhere, high -> attached organic);
    the latent is held at zero, so the barrier input is the only way to fit them.
    """
    torch.manual_seed(0)
    model = _model("cprvae")
    r = np.asarray(RANGES)
    low, high = r[:, 0] + 0.1 * (r[:, 1] - r[:, 0]), r[:, 0] + 0.9 * (r[:, 1] - r[:, 0])
    barriers = torch.as_tensor(np.stack([low, high] * 4), dtype=torch.float32)
    target = torch.stack([torch.full((L, L), 2), torch.full((L, L), 6)] * 4)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    model.train()
    for _ in range(30):
        logits = model.decode(torch.zeros(8, 50), barriers)
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = logits_to_lattice(model.decode(torch.zeros(2, 50), barriers[:2]))
    assert (pred[0] == 2).float().mean() > 0.9
    assert (pred[1] == 6).float().mean() > 0.9


def test_loss_terms():
    model = _model("prvae").eval()
    lat = torch.randint(0, 7, (3, L, L))
    out = model(lattice_to_onehot(lat))
    # a posterior equal to the prior has zero KL
    out.mu.data.zero_()
    out.logvar.data.zero_()
    props = model.unscale_properties(out.properties_scaled.detach())
    losses = {k: v.item() for k, v in sei_vae_loss(model, out, lat, props, beta=1.0, lam=5.0).items()}
    assert losses["kl"] == pytest.approx(0.0, abs=1e-6)
    assert losses["prop"] == pytest.approx(0.0, abs=1e-8)
    ce = torch.nn.functional.cross_entropy(out.logits, lat, reduction="sum").item() / 3
    assert losses["recon"] == pytest.approx(ce, rel=1e-5)
    assert losses["loss"] == pytest.approx(ce, rel=1e-5)


def test_build_rejects_unknown_or_contradictory_kind():
    with pytest.raises(ValueError):
        build_sei_model("gan")
    with pytest.raises(ValueError):
        build_sei_model("vae", regressor=True)
    with pytest.raises(ValueError):
        build_sei_model("cprvae")  # no barrier ranges to scale the condition


def test_class_weights():
    lat = np.zeros((1, 10, 10), np.uint8)
    lat[0, :2] = 2  # 20 % F, 80 % S, other species absent
    w, freq = class_weights_from_frequencies(lat, 7)
    assert freq[0] == pytest.approx(0.8) and freq[2] == pytest.approx(0.2)
    assert float((w * freq).sum()) == pytest.approx(1.0)
    assert w[2] / w[0] == pytest.approx(2.0)  # sqrt(0.8 / 0.2)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["vae", "prvae", "cprvae"])
def test_train_end_to_end(kind, tmp_path):
    data_dir = _write_dataset(tmp_path / "data")
    out = tmp_path / kind
    config = SEITrainingConfig(kind=kind, data=data_dir, out=out, epochs=2, batch_size=16, seed=0, device="cpu",
                               progress=False)
    metrics = train_sei_model(config)
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "metrics.json",
                 "metadata.json", "latents.npz"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["kind"] == kind and on_disk["epochs_run"] == 2
    assert set(on_disk["test"]["latent_pc12_r2"]) == set(PROPERTY_NAMES)
    assert set(on_disk["test"]["reconstruction"]["per_species"]) <= set(SPECIES_NAMES)
    assert ("properties" in on_disk["test"]) == (kind != "vae")
    assert metrics["n_test"] == 6
    assert set(on_disk["baselines"]) == {"train_mean", "species_fractions_linear", "row_profile_forest",
                                         "barriers_forest"}
    assert set(on_disk["baselines"]["row_profile_forest"]) == set(PROPERTY_NAMES)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["command"] == command_line(config) and meta["seed"] == 0 and meta["input_sha256"]
    assert f"train sei-{kind} --data {config.data} --out {config.out} --epochs 2 --batch-size 16" in meta["command"]

    data = load_sei_dataset(data_dir)
    z = np.load(out / "latents.npz")
    test_idx = data.indices("test")
    assert np.array_equal(z["indices"], test_idx)
    assert z["mu"].shape == (6, 50) and z["pca_components"].shape[0] >= 3
    assert np.allclose(z["pcs"], (z["mu"] - z["pca_mean"]) @ z["pca_components"].T, atol=1e-4)
    assert np.allclose(z["properties_true"], data.properties()[test_idx])
    assert np.allclose(z["barriers"], data.barriers[test_idx])
    assert ("properties_pred" in z.files) == (kind != "vae")

    # the saved latents are what the saved model computes
    model = SEIPRVAE.from_pretrained(out).eval()
    with torch.no_grad():
        mu, _ = model.encode(lattice_to_onehot(data.lattices[test_idx]))
        assert np.allclose(mu.numpy(), z["mu"], atol=1e-5)
        if kind != "vae":
            assert np.allclose(model.predict_properties(mu).numpy(), z["properties_pred"], atol=1e-4)
    train_props = data.properties()[data.indices("train")]
    assert np.allclose(model.config.property_min, train_props.min(0))
    assert np.allclose(model.config.property_max, train_props.max(0))


def test_training_on_passivated_runs_only(tmp_path):
    status = np.zeros(40, np.int8)
    status[::3] = 2  # every third run stopped at the event bound
    data_dir = _write_dataset(tmp_path / "data", status=status)
    common = dict(kind="prvae", data=data_dir, epochs=1, batch_size=16, seed=0, device="cpu", progress=False)
    everything = train_sei_model(SEITrainingConfig(out=tmp_path / "all", **common))
    finished = train_sei_model(SEITrainingConfig(out=tmp_path / "done", runs="passivated", **common))
    test_idx = load_sei_dataset(data_dir).indices("test")
    n_done = int((status[test_idx] == 0).sum())
    assert everything["runs"] == "all" and everything["n_test"] == len(test_idx)
    assert everything["test_passivated"]["n"] == n_done
    assert everything["test_passivated"]["n_truncated"] == len(test_idx) - n_done
    assert set(everything["test_passivated"]["properties"]) == set(PROPERTY_NAMES)
    assert finished["runs"] == "passivated" and finished["n_test"] == n_done
    assert finished["n_train"] == int((status[load_sei_dataset(data_dir).indices("train")] == 0).sum())
    z = np.load(tmp_path / "done" / "latents.npz")
    assert (status[z["indices"]] == 0).all()
    with pytest.raises(ValueError, match="no run status"):
        train_sei_model(SEITrainingConfig(out=tmp_path / "x", runs="passivated",
                                          **{**common, "data": _write_dataset(tmp_path / "plain")}))


def test_training_is_deterministic(tmp_path):
    data_dir = _write_dataset(tmp_path / "data")
    runs = [train_sei_model(SEITrainingConfig(kind="prvae", data=data_dir, out=tmp_path / f"run{i}", epochs=1,
                                              batch_size=16, seed=3, device="cpu", progress=False))
            ["history"]["val_loss"] for i in range(2)]
    assert runs[0] == runs[1]


def test_train_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        train_sei_model(SEITrainingConfig(data=tmp_path / "missing", out=tmp_path / "out", epochs=1, progress=False))
    with pytest.raises(ValueError, match="kind must be one of vae, prvae, cprvae"):
        SEITrainingConfig(kind="bogus", data=tmp_path, out=tmp_path / "out")


def test_cli_registers_sei_commands():
    from battgen import paths
    from battgen.train import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sei-cprvae", "--epochs", "3", "--max-minutes", "12"])
    config = commands.parse_config(args)
    assert config.kind == "cprvae" and config.out == paths.checkpoint_dir(paths.SEI_CPRVAE)
    assert config.data == paths.data_dir(paths.SEI)
    assert config.epochs == 3 and config.max_minutes == 12.0 and callable(args.func)
    assert commands.parse_config(parser.parse_args(["sei-vae"])).out == paths.checkpoint_dir(paths.SEI_VAE)


# --------------------------------------------------------------------------- metrics


def test_regression_metrics_known_answers():
    y = np.array([[0.1, 10.0], [0.4, 20.0], [0.7, 40.0]])
    perfect = regression_metrics(y, y, ["a", "b"])
    assert perfect["a"]["r2"] == pytest.approx(1.0) and perfect["b"]["mae"] == 0.0
    off = regression_metrics(y, y + [0.1, -2.0], ["a", "b"])
    assert off["a"]["mae"] == pytest.approx(0.1) and off["b"]["mae"] == pytest.approx(2.0)
    # predicting the mean gives R² = 0
    assert r2_score(y[:, 1], np.full(3, y[:, 1].mean())) == pytest.approx(0.0)
    assert r2_score([1.0, 1.0], [1.0, 2.0]) is None


def test_reconstruction_metrics_known_confusion():
    true = np.array([[0, 0, 0, 0], [2, 2, 6, 6]])
    pred = np.array([[0, 0, 0, 2], [2, 0, 6, 6]])
    m = reconstruction_metrics(true, pred, SPECIES_NAMES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    s, f, att = SPECIES_NAMES[0], SPECIES_NAMES[2], SPECIES_NAMES[6]
    assert m["per_species"] == {s: pytest.approx(0.75), f: pytest.approx(0.5), att: pytest.approx(1.0)}
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert m["site_fraction"][SPECIES_NAMES[1]] == 0.0  # absent species: no recall reported
    assert m["confusion"][0][2] == 1 and m["confusion"][2][0] == 1


def test_latent_pc_r2_and_correlation():
    gen = np.random.default_rng(0)
    pcs = gen.normal(size=(100, 3))
    props = np.stack([2 * pcs[:, 0] - pcs[:, 1] + 3, pcs[:, 2]], axis=1)
    r2 = latent_pc_r2(pcs, props, ["linear", "orthogonal"])
    assert r2["linear"] == pytest.approx(1.0)
    assert r2["orthogonal"] < 0.1
    assert linear_fit_r2(pcs[:, :1], 5 * pcs[:, 0]) == pytest.approx(1.0)

    x = gen.normal(size=50)
    obs = np.stack([x, 2 * x + 1, -x, np.ones(50)], axis=1)
    c = property_correlation(obs, ["a", "b", "c", "const"])
    assert c["names"] == ["a", "b", "c", "const"]
    assert c["matrix"][0][1] == pytest.approx(1.0) and c["matrix"][0][2] == pytest.approx(-1.0)
    assert c["matrix"][0][3] is None
    sub = property_correlation(obs, ["a", "b", "c", "const"], subset=["c", "a"])
    assert sub["names"] == ["c", "a"] and sub["matrix"][0][1] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        property_correlation(obs, ["a", "b", "c", "const"], subset=["nope"])


def test_sei_test_metrics_assembles_json_ready_dict():
    gen = np.random.default_rng(0)
    lat = gen.integers(0, 7, size=(5, 4, 4))
    props = gen.random((5, 4))
    m = sei_test_metrics(species_names=SPECIES_NAMES, property_names=PROPERTY_NAMES, true_lattices=lat,
                         pred_lattices=lat, properties_true=props, pcs=gen.normal(size=(5, 3)),
                         properties_pred=props)
    assert m["reconstruction"]["accuracy"] == 1.0
    assert all(v["r2"] == pytest.approx(1.0) for v in m["properties"].values())
    json.dumps(m)


def test_a_training_that_dies_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import battgen.train.sei_prvae as trainer

    data_dir = _write_dataset(tmp_path / "data")
    config = SEITrainingConfig(kind="prvae", data=data_dir, out=tmp_path / "ckpt", epochs=1, batch_size=16,
                               device="cpu", progress=False)
    train_sei_model(config)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()}

    def die(*args, **kwargs):
        raise RuntimeError("killed while writing metadata")

    monkeypatch.setattr(trainer, "write_metadata", die)
    with pytest.raises(RuntimeError, match="killed"):
        train_sei_model(dataclasses.replace(config, seed=1))
    # Every file of the first checkpoint is still there, unchanged; no staging folder is left behind.
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ckpt")] == []
