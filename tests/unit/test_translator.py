"""AFM translator, discriminator, atom regressor: shapes, persistence, learning, metrics, loader, CLI.

Everything runs on tiny inputs (16 x 16 grids, 8 views, 8/16/32-channel blocks) so the file
stays well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from battgen.afm.loader import load_afm_dataset
from battgen.eval.afm_metrics import (
    TYPE_CLASSES,
    atom_regressor_metrics,
    frechet_distance,
    frechet_distance_random_conv,
    mae,
    psnr,
    ssim,
    type_map_class_tensor,
    type_map_classes,
    type_map_metrics,
)
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.discriminator import (
    PatchDiscriminator,
    discriminator_loss,
    generator_adversarial_loss,
)
from battgen.models.translator import AFMTranslator, channels_first, channels_last, kl_per_element
from battgen.train.translator import translator_loss, type_map_class_weights

GRID = 16
N_VIEWS = 8
TINY = {"block_out_channels": (8, 16, 32), "norm_num_groups": 8}
IONS = np.array(["Li", "Li", "Na", "Na", "Li", "Na", "Li", "Na"])
SPLIT = np.array(["train", "train", "train", "train", "val", "val", "test", "test"])


def descriptors_from_stacks(stacks: np.ndarray) -> np.ndarray:
    """A deterministic, learnable stack -> descriptor map (a real signal for the tests)."""
    grey = np.stack([np.tanh(2 * stacks[..., -1]), stacks[..., :5].mean(-1), stacks[..., 5:].mean(-1)], -1)
    close = stacks[..., -1]
    rgb = -np.ones(stacks.shape[:3] + (3,), np.float32)
    rgb[..., 2][close > 0.5] = 1.0  # working ion
    rgb[..., 1][close < -0.5] = 1.0  # gas-phase
    rgb[..., 0][(close > 0.0) & (close <= 0.5)] = 0.5  # other, part-depth sphere
    return np.clip(np.concatenate([grey, rgb], -1), -1, 1).astype(np.float32)


def write_afm_dataset(directory: Path, *, n: int = N_VIEWS, grid: int = GRID, seed: int = 0,
                      encoding: str = "float16", **overrides) -> Path:
    """A dataset.npz with the builder's layout; ``overrides`` replace (or, as None, drop) arrays."""
    rng = np.random.default_rng(seed)
    stacks = np.tanh(rng.normal(size=(n, grid, grid, 10))).astype(np.float32)
    desc = descriptors_from_stacks(stacks)
    comp = np.zeros((n, 112), np.float32)
    ions = np.resize(IONS, n)
    comp[ions == "Li", 2] = 2.0  # Li
    comp[ions == "Na", 10] = 1.0  # Na
    comp[:, 25] = 1.0 + np.arange(n) % 3  # Fe
    comp[:, 7] = 4.0  # O
    if encoding == "uint8":
        stacks_out = np.round((stacks + 1) * 127.5).astype(np.uint8)
        desc_out = np.round((desc + 1) * 127.5).astype(np.uint8)
    else:
        stacks_out, desc_out = stacks.astype(encoding), desc.astype(encoding)
    arrays = {
        "stacks": stacks_out, "descriptors": desc_out,
        "material": np.arange(n) // 2, "rotation": np.arange(n) % 2,
        "working_ion": ions, "split": np.resize(SPLIT, n), "composition": comp,
    }
    for key, value in overrides.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "dataset.npz", **arrays)
    return directory


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors gain nothing from a second thread, and on a shared 2-core machine OpenMP's
    spinning worker loses its core to other jobs: one thread ran these tests up to 20x faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_model(**kw) -> AFMTranslator:
    torch.manual_seed(0)
    return AFMTranslator(**{**TINY, **kw})


# --------------------------------------------------------------------------- translator


def test_translator_shapes_and_latent_size():
    model = _tiny_model().eval()
    x = torch.rand(2, 10, GRID, GRID) * 2 - 1
    out = model(x)
    assert out.descriptors.shape == (2, 6, GRID, GRID)
    assert out.descriptors.abs().max() < 1  # tanh
    assert out.z.shape == (2, 4, GRID // 4, GRID // 4) == (2, *model.latent_shape(GRID, GRID))
    assert torch.equal(out.z, out.posterior.mean)  # eval mode decodes the mean
    assert model.downsample_factor == 4
    assert model.decode(torch.zeros(3, 4, 8, 8)).shape == (3, 6, 32, 32)
    assert kl_per_element(out.posterior).shape == (2,)
    # the default (shipped) architecture has the same H/4 latent on 64 x 64
    assert AFMTranslator().latent_shape(64, 64) == (4, 16, 16)


def test_translator_rejects_bad_inputs():
    model = _tiny_model()
    with pytest.raises(ValueError, match="channels-first"):
        model.encode(torch.zeros(1, GRID, GRID, 10))
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode(torch.zeros(1, 10, 18, 18))
    with pytest.raises(ValueError, match="multiple of norm_num_groups"):
        AFMTranslator(block_out_channels=(12, 24, 48), norm_num_groups=8)


def test_channel_layout_helpers_round_trip():
    a = np.random.default_rng(0).random((3, GRID, GRID, 6)).astype(np.float32)
    t = channels_first(a)
    assert t.shape == (3, 6, GRID, GRID)
    assert np.array_equal(channels_last(t), a)
    assert channels_first(a[0]).shape == (1, 6, GRID, GRID)


def test_translator_save_load_round_trip_is_exact(tmp_path):
    model = _tiny_model().eval()
    model.register_to_config(scaling_factor=2.5)
    model.save_pretrained(tmp_path / "tr")
    loaded = AFMTranslator.from_pretrained(tmp_path / "tr").eval()
    assert loaded.config.scaling_factor == 2.5
    assert tuple(loaded.config.block_out_channels) == TINY["block_out_channels"]
    x = torch.rand(2, 10, GRID, GRID) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x).descriptors, loaded(x).descriptors)
    desc, mu = loaded.translate(channels_last(x))
    assert desc.shape == (2, GRID, GRID, 6) and mu.shape == (2, 4, 4, 4)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    rng = np.random.default_rng(1)
    stacks = np.tanh(rng.normal(size=(2, GRID, GRID, 10))).astype(np.float32)
    x, y = channels_first(stacks), channels_first(descriptors_from_stacks(stacks))
    model = _tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        out = model(x, sample_posterior=True)
        loss = translator_loss(out, y, None, beta=1e-4)["vae"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("activation", ["tanh", "clamp", "clamp-type-map"])
def test_a_saturated_output_channel_gets_a_gradient_only_through_the_clamp(activation):
    """The shipped tanh models' green (gas-phase) channel sits at exactly −1 on every pixel: deep
    in saturation, its gradient is gone. The straight-through clamp keeps the same [−1, 1] range
    and passes the gradient that can bring the channel back."""
    model = _tiny_model(output_activation=activation).eval()
    with torch.no_grad():  # drive channel 4 (type-map green) far below −1 before the bound
        model.decoder.conv_out.bias[4] = -40.0
    z = torch.zeros(1, 4, GRID // 4, GRID // 4)
    out = model.decode(z)
    assert out.min() >= -1 and out.max() <= 1
    assert torch.allclose(out[:, 4], torch.full_like(out[:, 4], -1.0))
    target = out.detach().clone()
    target[:, 4, :2, :2] = 0.5  # a few gas-phase pixels
    (out - target).abs().mean().backward()
    grad = model.decoder.conv_out.bias.grad[4].abs().item()
    assert (grad > 1e-4) if activation != "tanh" else (grad < 1e-12), grad


def test_clamp_type_map_keeps_tanh_on_the_grey_maps():
    tanh, mixed = _tiny_model(output_activation="tanh").eval(), _tiny_model(output_activation="clamp-type-map").eval()
    mixed.load_state_dict(tanh.state_dict())  # the mask is config, not a weight: old checkpoints load
    with torch.no_grad():
        tanh.decoder.conv_out.bias += 0.7
        mixed.decoder.conv_out.bias += 0.7
        z = torch.randn(2, 4, GRID // 4, GRID // 4)
        a, b = tanh.decode(z), mixed.decode(z)
    assert torch.equal(a[:, :3], b[:, :3])  # height, vdW, disks
    assert not torch.allclose(a[:, 3:], b[:, 3:]) and b.min() >= -1 and b.max() <= 1


def test_unknown_output_activation_is_refused():
    with pytest.raises(ValueError, match="output_activation"):
        _tiny_model(output_activation="relu")


def _type_map_views() -> np.ndarray:
    """Two 8x8 views: background, a working-ion block (B), one gas-phase pixel (G), other (R)."""
    desc = -np.ones((2, 8, 8, 6), np.float32)
    desc[:, :2, :2, 5] = 1.0  # working ion: 4 pixels per view
    desc[:, 7, 7, 4] = 0.5  # gas phase: 1 pixel
    desc[:, 4:6, 4:6, 3] = 0.8  # other: 4 pixels
    return desc


def test_type_map_class_weights_invert_the_class_frequencies():
    desc = _type_map_views()
    flat = type_map_classes(desc[..., 3:6]).ravel()
    assert np.bincount(flat, minlength=4).tolist() == [110, 8, 2, 8]
    assert np.array_equal(type_map_class_tensor(channels_first(desc)).numpy().ravel(), flat)  # as the metrics read it
    none = type_map_class_weights(desc, np.arange(2), power=0.0)
    assert np.allclose(none, 1.0)
    full = type_map_class_weights(desc, np.arange(2), power=1.0)
    freq = np.array([110, 8, 2, 8]) / 128
    assert np.isclose((freq * full).sum(), 1.0)  # the average pixel keeps weight 1
    assert np.isclose(full[2] / full[1], 4.0) and np.isclose(full[1] / full[0], 110 / 8)
    assert full[2] > type_map_class_weights(desc, np.arange(2), power=0.5)[2] > 1


def test_class_weights_weight_only_the_type_map_pixels_of_their_class():
    y = channels_first(_type_map_views())
    rng = np.random.default_rng(0)
    stacks = np.tanh(rng.normal(size=(2, 8, 8, 10))).astype(np.float32)
    real = _tiny_model(sample_size=8)(channels_first(stacks), sample_posterior=False)
    desc = y.clone()
    desc[:, 4, 7, 7] = -1.0  # the decoder misses the gas-phase pixel
    out = dataclasses.replace(real, descriptors=desc)
    plain = translator_loss(out, y, None, beta=0.0)["l1_per_channel"]
    weighted = translator_loss(out, y, None, beta=0.0,
                               class_weights=torch.tensor([1.0, 1.0, 10.0, 1.0]))["l1_per_channel"]
    assert torch.allclose(weighted[:4], plain[:4]) and torch.allclose(weighted[5], plain[5])
    assert plain[4] > 0 and torch.isclose(weighted[4], 10 * plain[4])


# --------------------------------------------------------------------------- discriminator


def test_discriminator_branches_and_round_trip(tmp_path):
    torch.manual_seed(0)
    # eval: in training mode spectral norm refines its power iteration on every forward pass
    disc = PatchDiscriminator(base_channels=8, n_layers=2).eval()
    x, y = torch.rand(2, 10, GRID, GRID), torch.rand(2, 6, GRID, GRID)
    out = disc(x, y)
    assert out.grey.shape == out.type_map.shape == (2, 1, 2, 2)
    assert disc.receptive_field == 34 and PatchDiscriminator(n_layers=3).receptive_field == 70
    # each branch sees its own descriptor channels only
    y2 = y.clone()
    y2[:, 3:] = 0
    out2 = disc(x, y2)
    assert torch.equal(out.grey, out2.grey) and not torch.equal(out.type_map, out2.type_map)
    disc.save_pretrained(tmp_path / "d")
    loaded = PatchDiscriminator.from_pretrained(tmp_path / "d").eval()
    with torch.no_grad():
        assert torch.allclose(disc(x, y).grey, loaded(x, y).grey)
    with pytest.raises(ValueError, match="grid of at least"):
        disc(torch.rand(1, 10, 4, 4), torch.rand(1, 6, 4, 4))


def test_gan_loss_known_values():
    confident_real, confident_fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)
    assert discriminator_loss(confident_real, confident_fake, "hinge").item() == 0.0
    zeros = torch.zeros(2, 1, 3, 3)
    assert discriminator_loss(zeros, zeros, "hinge").item() == pytest.approx(2.0)
    assert discriminator_loss(zeros, zeros, "bce").item() == pytest.approx(2 * np.log(2))
    assert generator_adversarial_loss(confident_fake, "hinge").item() == pytest.approx(2.0)
    w = torch.tensor([2.0, 0.0])
    logits = torch.stack([torch.full((1, 3, 3), 1.0), torch.full((1, 3, 3), 5.0)])
    assert generator_adversarial_loss(logits, "hinge", w).item() == pytest.approx(-1.0)


# --------------------------------------------------------------------------- metrics


def test_ssim_identity_noise_and_known_value():
    rng = np.random.default_rng(0)
    x = np.tanh(rng.normal(size=(2, 32, 32, 3)))
    assert np.allclose(ssim(x, x), 1.0)
    scores = [ssim(x, np.clip(x + s * rng.normal(size=x.shape), -1, 1)).mean() for s in (0.05, 0.2, 0.5)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    # constant images: only the luminance term is left, (2 a b + C1) / (a² + b² + C1)
    a, b, c1 = 0.2, -0.4, (0.01 * 2) ** 2
    got = ssim(np.full((1, 16, 16, 1), a), np.full((1, 16, 16, 1), b))
    assert got[0, 0] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def test_psnr_and_mae_known_values():
    x = np.zeros((1, 8, 8, 2))
    y = x.copy()
    y[..., 0] = 0.1  # MSE 0.01 on channel 0
    y[..., 1] = -0.5
    assert psnr(x, y)[0, 0] == pytest.approx(10 * np.log10(4 / 0.01))
    assert psnr(x, y)[0, 1] == pytest.approx(10 * np.log10(4 / 0.25))
    assert np.allclose(mae(x, y), [[0.1, 0.5]])
    assert np.isinf(psnr(x, x)).all()


def test_type_map_classes_and_per_class_accuracy():
    # 2 x 4 map: background, ion (B), gas (G), other (R) per column, rows identical in truth
    bg, ion, gas, other = [-1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]
    true = np.array([[bg, ion, gas, other], [bg, ion, gas, other]], np.float32)
    assert type_map_classes(true).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert [TYPE_CLASSES[c] for c in (0, 1, 2, 3)] == ["background", "working_ion", "gas_phase", "other"]
    # a rim value just above the background still counts; the brightest channel wins overlaps
    assert type_map_classes(np.array([[[-0.95, -1, -1], [-0.5, -1, 0.3]]])).tolist() == [[0, 1]]
    pred = true.copy()
    pred[1, 1] = bg  # one ion pixel missed
    pred[1, 3] = gas  # one 'other' pixel called gas
    m = type_map_metrics(true, pred)
    assert m["per_class_accuracy"] == {"background": 1.0, "working_ion": 0.5, "gas_phase": 1.0, "other": 0.5}
    assert m["iou"]["background"] == pytest.approx(2 / 3) and m["iou"]["gas_phase"] == pytest.approx(2 / 3)
    assert m["iou"]["working_ion"] == 0.5 and m["iou"]["other"] == 0.5
    assert m["mean_iou"] == pytest.approx((2 / 3 + 2 / 3 + 0.5 + 0.5) / 4)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)


def test_frechet_distance_random_conv():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 1.0) == pytest.approx(6.0, rel=1e-6)  # mean shift only
    x = np.tanh(rng.normal(size=(6, GRID, GRID, 6)))
    same = frechet_distance_random_conv(x, x)
    assert same["grey"] == pytest.approx(0.0, abs=1e-6) and same["type_map"] == pytest.approx(0.0, abs=1e-6)
    noisy = frechet_distance_random_conv(x, np.clip(x + rng.normal(size=x.shape), -1, 1))
    assert noisy["grey"] > 0 and noisy["type_map"] > 0
    assert frechet_distance_random_conv(x, x * 0.5) == frechet_distance_random_conv(x, x * 0.5)  # fixed net


def test_atom_regressor_metrics_per_ion_like_sklearn():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, size=(6, 112)).astype(float)
    pred = true + rng.normal(scale=0.3, size=true.shape)
    ions = np.array(["Li", "Li", "Li", "Na", "Na", "Na"])
    m = atom_regressor_metrics(true, pred, ions)
    li = ions == "Li"
    assert m["per_ion"]["Li"]["mae"] == pytest.approx(np.abs(pred[li] - true[li]).mean())
    assert m["per_ion"]["Na"]["mse"] == pytest.approx(((pred[~li] - true[~li]) ** 2).mean())
    assert m["per_ion"]["Li"]["r2"] == pytest.approx(r2_score(true[li].ravel(), pred[li].ravel()))
    assert m["overall"]["r2"] == pytest.approx(r2_score(true.ravel(), pred.ravel()))
    assert m["per_ion"]["Na"]["n_views"] == 3 and set(m) == {"per_ion", "overall", "definition"}


# --------------------------------------------------------------------------- loader


def test_loader_reads_float16_uint8_and_builder_key_names(tmp_path):
    data = load_afm_dataset(write_afm_dataset(tmp_path / "f16"))
    assert data.stacks.dtype == np.float32 and data.stacks.shape == (N_VIEWS, GRID, GRID, 10)
    assert data.descriptors.shape == (N_VIEWS, GRID, GRID, 6) and data.grid == (GRID, GRID)
    assert data.indices("test").tolist() == [6, 7] and data.composition.shape == (N_VIEWS, 112)
    assert data.ion_weights(data.indices("train")).mean() == pytest.approx(1.0)

    u8 = load_afm_dataset(write_afm_dataset(tmp_path / "u8", encoding="uint8") / "dataset.npz", dtype=np.float16)
    assert u8.stacks.dtype == np.float16
    assert np.abs(u8.stacks.astype(np.float32) - data.stacks).max() < 0.01  # one uint8 step
    assert u8.descriptors.min() == -1.0 and u8.descriptors.max() <= 1.0

    n = N_VIEWS
    builder = load_afm_dataset(write_afm_dataset(
        tmp_path / "b", material=None, rotation=None, composition=None,
        material_index=np.arange(n, dtype=np.int32), rotation_index=np.arange(n, dtype=np.int16) + 7))
    assert builder.rotation.tolist() == list(range(7, 7 + n)) and builder.composition is None
    with pytest.raises(ValueError, match="no 'composition'"):
        builder.require_composition()


@pytest.mark.parametrize("overrides, message", [
    ({"stacks": None}, "lacks required arrays: stacks"),
    ({"material": None}, r"material \(or material_index\)"),
    ({"stacks": np.zeros((N_VIEWS, GRID, GRID, 9), np.float16)}, r"\(N, H, W, 10\)"),
    ({"stacks": np.zeros((N_VIEWS, 10, GRID, GRID), np.float16)}, "heights last"),
    ({"descriptors": np.zeros((N_VIEWS, GRID, GRID + 4, 6), np.float16)}, "disagree on N, H or W"),
    ({"stacks": np.full((N_VIEWS, GRID, GRID, 10), 3.0, np.float16)}, r"scaled to \[-1, 1\]"),
    ({"descriptors": np.full((N_VIEWS, GRID, GRID, 6), np.nan, np.float32)}, "NaN"),
    ({"stacks": np.zeros((N_VIEWS, GRID, GRID, 10), np.int32)}, "uint8"),
    ({"working_ion": np.array(["Li"] * 7 + ["Xx"])}, "unknown working ions"),
    ({"split": np.array(["train"] * 6 + ["test"] * 2)}, "empty val split"),
    ({"split": np.array(["train"] * 7 + ["holdout"])}, "train/val/test"),
    ({"rotation": np.arange(N_VIEWS - 1)}, "one entry per view"),
    ({"composition": np.zeros((N_VIEWS, 100), np.float32)}, r"\(N, 112\)"),
    ({"composition": -np.ones((N_VIEWS, 112), np.float32)}, "non-negative"),
])
def test_loader_rejects_bad_files(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_afm_dataset(write_afm_dataset(tmp_path, **overrides))


def test_loader_rejects_missing_file_and_odd_grid(tmp_path):
    with pytest.raises(ValueError, match="no AFM dataset"):
        load_afm_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="multiple of 4"):
        load_afm_dataset(write_afm_dataset(tmp_path, grid=18))


# --------------------------------------------------------------------------- CLI, end to end


def test_cli_registers_afm_commands_and_keeps_sei():
    from battgen import paths
    from battgen.train import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    config = commands.parse_config(parser.parse_args(["translator", "--no-adversarial", "--channels", "16,32,64"]))
    assert not config.adversarial and config.channels == (16, 32, 64) and config.data == paths.data_dir(paths.AFM)
    assert config.out == paths.checkpoint_dir(paths.TRANSLATOR_NOADV)
    config = commands.parse_config(parser.parse_args(["atom-regressor"]))
    assert config.translator == paths.checkpoint_dir(paths.TRANSLATOR)
    assert config.out == paths.checkpoint_dir(paths.ATOM_REGRESSOR) and config.epochs == 400
    assert commands.parse_config(parser.parse_args(["sei-vae"])).out == paths.checkpoint_dir(paths.SEI_VAE)


def test_cli_trains_translator_ablation_and_atom_regressor(tmp_path, capsys):
    from battgen.cli import main

    data_dir = write_afm_dataset(tmp_path / "data")
    common = ["--data", str(data_dir), "--epochs", "1", "--batch-size", "4", "--channels", "8,16,32",
              "--device", "cpu", "--no-progress"]
    adv, noadv = tmp_path / "translator", tmp_path / "translator_noadv"
    assert main(["train", "translator", "--out", str(adv), "--adv-warmup-epochs", "0", *common]) == 0
    assert main(["train", "translator", "--out", str(noadv), "--no-adversarial", "--type-map-weighting", "0.5",
                 "--augment", "0.5", *common]) == 0
    assert "type map: mean IoU" in capsys.readouterr().out

    for out in (adv, noadv):
        for name in ("config.json", "diffusion_pytorch_model.safetensors", "metrics.json", "metadata.json",
                     "latents.npz"):
            assert (out / name).is_file(), (out, name)
    # the ablation really has no discriminator; the adversarial run saved one and used it
    assert (adv / "discriminator" / "config.json").is_file() and not (noadv / "discriminator").exists()
    m_adv = json.loads((adv / "metrics.json").read_text())
    m_noadv = json.loads((noadv / "metrics.json").read_text())
    assert m_adv["adversarial"] and m_adv["adversarial_active_at_best"] and m_adv["history"]["train_d_loss"][0] > 0
    assert not m_noadv["adversarial"] and m_noadv["history"]["train_d_loss"] == [0.0]
    assert "discriminator" not in m_noadv["parameters"]
    assert set(m_adv["test"]["per_descriptor"]) == {"height", "vdw", "disks", "type_r", "type_g", "type_b"}
    assert "grey" in m_adv["test"]["frechet_distance_random_conv"]
    assert m_adv["type_map_class_weights"] is None
    assert set(m_noadv["type_map_class_weights"]) == {"background", "working_ion", "gas_phase", "other"}
    meta = json.loads((noadv / "metadata.json").read_text())
    assert "--no-adversarial" in meta["command"] and meta["seed"] == 0 and meta["input_sha256"]
    assert "--type-map-weighting 0.5" in meta["command"] and meta["config"]["augment"] == 0.5
    assert meta["config"]["discriminator"] is None

    z = np.load(adv / "latents.npz")
    assert z["mu"].shape == (N_VIEWS, 4, GRID // 4, GRID // 4) and z["mu"].dtype == np.float16
    assert z["split"].tolist() == SPLIT.tolist() and z["working_ion"].tolist() == IONS.tolist()
    model = AFMTranslator.from_pretrained(adv)
    assert float(z["scaling_factor"]) == pytest.approx(model.config.scaling_factor)
    train_mu = z["mu"][:4].astype(np.float32)
    assert np.std(train_mu * model.config.scaling_factor) == pytest.approx(1.0, rel=1e-2)
    data = load_afm_dataset(data_dir)
    _, mu = model.translate(data.stacks)
    assert np.allclose(mu, z["mu"].astype(np.float32), atol=2e-2)  # float16 storage

    reg = tmp_path / "atoms"
    assert main(["train", "atom-regressor", "--data", str(data_dir), "--translator", str(adv), "--out", str(reg),
                 "--epochs", "3", "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((reg / "metrics.json").read_text())
    assert set(metrics["test"]["per_ion"]) == {"Li", "Na"} and metrics["epochs_run"] == 3
    assert {"mae", "mse", "r2", "n_views"} <= set(metrics["test"]["overall"])
    p = np.load(reg / "predictions.npz")
    assert p["true"].shape == p["pred"].shape == (2, 112) and (p["pred"] >= 0).all()
    assert p["working_ion"].tolist() == ["Li", "Na"] and p["index"].tolist() == [6, 7]
    regressor = AtomRegressor.from_pretrained(reg).eval()
    assert regressor.config.latent_scaling_factor == pytest.approx(model.config.scaling_factor)
    assert regressor.config.output_names[:3] == ["H", "He", "Li"]
    with torch.no_grad():
        again = regressor.predict_from_mu(torch.as_tensor(mu[6:])).numpy()
    assert np.allclose(again, p["pred"], atol=1e-4)
    assert json.loads((reg / "metadata.json").read_text())["input_sha256"]


def test_decoder_fine_tune_from_a_checkpoint_keeps_the_latents(tmp_path, capsys):
    """--init-from + --freeze-encoder retrains the decoder (here onto the clamp output) while the
    encoder, so the latents and every model trained on them, stay exactly as they were."""
    from battgen.cli import main

    data_dir = write_afm_dataset(tmp_path / "data")
    common = ["--data", str(data_dir), "--epochs", "1", "--batch-size", "4", "--channels", "8,16,32",
              "--device", "cpu", "--no-progress", "--adv-warmup-epochs", "0"]
    start, tuned = tmp_path / "start", tmp_path / "tuned"
    assert main(["train", "translator", "--out", str(start), *common]) == 0
    assert main(["train", "translator", "--out", str(tuned), "--init-from", str(start), "--freeze-encoder",
                 "--output-activation", "clamp", "--lr", "1e-2", *common]) == 0
    a, b = AFMTranslator.from_pretrained(start), AFMTranslator.from_pretrained(tuned)
    assert b.config.output_activation == "clamp" and a.config.output_activation == "tanh"
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith(("encoder.", "quant_conv.")))
    assert not all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("decoder."))
    assert np.array_equal(np.load(start / "latents.npz")["mu"], np.load(tuned / "latents.npz")["mu"])
    assert b.config.scaling_factor == pytest.approx(a.config.scaling_factor)
    meta = json.loads((tuned / "metadata.json").read_text())
    assert meta["config"]["freeze_encoder"] and meta["config"]["init_from"] == str(start)

    # --reinit-output starts the last convolution afresh and keeps every other decoder weight.
    fresh = tmp_path / "fresh"
    assert main(["train", "translator", "--out", str(fresh), "--init-from", str(start), "--freeze-encoder",
                 "--reinit-output", "--output-activation", "clamp", "--lr", "1e-12", *common]) == 0
    sf = AFMTranslator.from_pretrained(fresh).state_dict()
    assert not torch.allclose(sa["decoder.conv_out.weight"], sf["decoder.conv_out.weight"])
    assert all(torch.allclose(sa[k], sf[k], atol=1e-6) for k in sa if not k.startswith("decoder.conv_out."))
    assert json.loads((fresh / "metadata.json").read_text())["config"]["reinit_output"]
    # only the rows whose activation changed start afresh: tanh -> clamp-type-map resets the type map's three
    mixed = tmp_path / "mixed"
    assert main(["train", "translator", "--out", str(mixed), "--init-from", str(start), "--freeze-encoder",
                 "--reinit-output", "--output-activation", "clamp-type-map", "--lr", "1e-12", *common]) == 0
    wm = AFMTranslator.from_pretrained(mixed).state_dict()["decoder.conv_out.weight"]
    assert torch.allclose(sa["decoder.conv_out.weight"][:3], wm[:3], atol=1e-6)
    assert not any(torch.allclose(sa["decoder.conv_out.weight"][i], wm[i]) for i in range(3, 6))

    wider = tmp_path / "wider"
    capsys.readouterr()
    assert main(["train", "translator", "--out", str(wider), "--init-from", str(start),
                 *[c if c != "8,16,32" else "16,32,64" for c in common]]) != 0
    assert "another architecture (block_out_channels" in capsys.readouterr().err
    assert main(["train", "translator", "--out", str(wider), "--freeze-encoder", *common]) != 0
    assert "needs --init-from" in capsys.readouterr().err
    assert main(["train", "translator", "--out", str(wider), "--reinit-output", *common]) != 0
    assert "--reinit-output needs --init-from" in capsys.readouterr().err
    assert not wider.exists()


def test_encode_latents_rewrites_a_translators_latents_for_a_grown_dataset(tmp_path, capsys):
    """A dataset grown since training (new materials appended) is encoded by the unchanged translator:
    the old views keep their latents, the new ones get theirs, the scaling factor stays."""
    from battgen.cli import main

    ids = np.array([f"m{i}" for i in range(6)])  # one per material, two views each
    old = write_afm_dataset(tmp_path / "old", material_ids=ids[:4])
    grown = write_afm_dataset(tmp_path / "grown", n=12, material_ids=ids)
    ckpt = tmp_path / "translator"
    assert main(["train", "translator", "--out", str(ckpt), "--data", str(old), "--epochs", "1", "--batch-size",
                 "4", "--channels", "8,16,32", "--device", "cpu", "--no-progress", "--no-adversarial"]) == 0
    before = dict(np.load(ckpt / "latents.npz"))
    weights = (ckpt / "diffusion_pytorch_model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["afm", "encode-latents", "--data", str(grown), "--translator", str(ckpt), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "12 views of 6 materials" in out and "2 new, 0 dropped, 4 kept" in out
    z = np.load(ckpt / "latents.npz")
    assert z["mu"].shape == (12, 4, GRID // 4, GRID // 4) and z["material_id"].tolist() == np.repeat(ids, 2).tolist()
    assert np.array_equal(z["mu"][:N_VIEWS], before["mu"])
    assert float(z["scaling_factor"]) == float(before["scaling_factor"])
    assert (ckpt / "diffusion_pytorch_model.safetensors").read_bytes() == weights

    assert main(["afm", "encode-latents", "--data", str(tmp_path / "nowhere"), "--translator", str(ckpt)]) != 0
    assert "no AFM dataset" in capsys.readouterr().err
    assert np.load(ckpt / "latents.npz")["mu"].shape[0] == 12  # a failed call leaves the file as it was


def test_atom_regressor_needs_composition(tmp_path):
    from battgen.train.atom_regressor import train_atom_regressor
    from battgen.train.configs import AtomRegressorTrainingConfig

    model = _tiny_model()
    model.save_pretrained(tmp_path / "tr")
    data_dir = write_afm_dataset(tmp_path / "data", composition=None)
    config = AtomRegressorTrainingConfig(data=data_dir, translator=tmp_path / "tr", out=tmp_path / "out", epochs=1,
                                         progress=False, device="cpu")
    with pytest.raises(ValueError, match="composition"):
        train_atom_regressor(config)
    with pytest.raises(ValueError, match="no translator checkpoint"):
        train_atom_regressor(dataclasses.replace(config, translator=tmp_path / "missing"))


def test_atom_regressor_starts_at_the_mean_counts_with_live_gradients():
    torch.manual_seed(0)
    model = AtomRegressor(latent_size=4, conv_channels=(8, 16), hidden_units=16, dropout=0.0).eval()
    mean = torch.zeros(112)
    mean[[2, 7, 25]] = torch.tensor([0.4, 0.8, 0.1])  # Li, O, Fe in a sparse composition
    model.init_output_bias(mean)
    latents = torch.randn(32, 4, 4, 4)
    out = model.forward_scaled(latents)
    assert torch.allclose(out.mean(0)[[2, 7, 25]], mean[[2, 7, 25]], atol=0.05)
    assert (out[:, mean == 0] < 0.01).all()
    # Softplus at a sensible pre-activation: every output still moves under a gradient step.
    out.sum().backward()
    assert model.head[-1].bias.grad.abs().min() > 1e-4
    with pytest.raises(ValueError, match="112 means"):
        model.init_output_bias(torch.zeros(3))


def test_examples_skip_views_the_models_find_unusual(tmp_path):
    from battgen.afm.examples import load_examples, write_examples

    data_dir = write_afm_dataset(tmp_path / "data")
    every = load_examples(write_examples(data_dir, tmp_path / "all.npz"))
    seen = []

    def all_typical(stacks):
        seen.append(stacks.shape)
        return np.ones(len(stacks), bool)

    same = load_examples(write_examples(data_dir, tmp_path / "same.npz", typical=all_typical))
    assert [e.material_id for e in same] == [e.material_id for e in every]
    assert seen and all(shape[1:] == (GRID, GRID, 10) for shape in seen)
    with pytest.raises(ValueError, match="no test-split views"):
        write_examples(data_dir, tmp_path / "none.npz", typical=lambda stacks: np.zeros(len(stacks), bool))
