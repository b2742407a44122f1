"""Screening model: conditioning, pipeline (schedulers, guidance, persistence, input checks),
sensitivity analysis and the training entry point, on tiny models and random latents.

The translator and atom regressor are the real classes at toy size.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, DDIMScheduler, ModelMixin
from diffusers.configuration_utils import register_to_config

from battgen.data.composition import N_ELEMENTS
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.table import COLUMNS, load_scaler, save_table
from battgen.eval.sensitivity import condition_sensitivity
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.translator import AFMTranslator
from battgen.models.screening import (
    CONDITION_DIM,
    SAMPLERS,
    BattGenScreeningPipeline,
    bound_noise_prediction,
    build_screening_unet,
    make_training_scheduler,
    null_condition,
    screening_condition,
)
from battgen.train.configs import ScreeningTrainingConfig
from battgen.train.screening import screening_loss, train_screening

SIZE = 8  # latent side; descriptors are 4x larger
TINY = dict(block_out_channels=(16, 32), attention_levels=(False, True), attention_head_dim=8,
            norm_num_groups=8)
LOW = [0.5, 20.0, 50.0, 10.0, 40.0, 0.0]
HIGH = [5.0, 500.0, 2000.0, 1500.0, 4000.0, 0.6]


def TinyTranslator(scaling_factor: float = 0.7) -> AFMTranslator:
    """The real translator at toy size: latents 4 x SIZE x SIZE decode to 4*SIZE maps."""
    return AFMTranslator(block_out_channels=(8, 16, 32), norm_num_groups=8, sample_size=4 * SIZE,
                         scaling_factor=scaling_factor)


def TinyRegressor() -> AtomRegressor:
    return AtomRegressor(latent_size=SIZE, conv_channels=(8, 16), hidden_units=16, latent_scaling_factor=0.7)


def _pipeline(seed: int = 0, scaling_factor: float = 0.7, unet=None) -> BattGenScreeningPipeline:
    torch.manual_seed(seed)
    pipe = BattGenScreeningPipeline(
        unet=unet if unet is not None else build_screening_unet(sample_size=SIZE, **TINY),
        scheduler=make_training_scheduler(),
        translator=TinyTranslator(scaling_factor=scaling_factor),
        atom_regressor=TinyRegressor(),
        property_low=LOW, property_high=HIGH,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe() -> BattGenScreeningPipeline:
    return _pipeline()


SCALED = [0.3, 0.6, 0.5, 0.4, 0.7, 0.2]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- condition / U-Net


def test_condition_vector_layout():
    c = screening_condition(SCALED, "Mg")
    assert c.shape == (CONDITION_DIM,) == (17,)
    np.testing.assert_allclose(c[:6], SCALED, rtol=1e-6)
    assert c[6 + WORKING_IONS.index("Mg")] == 1 and c[6:16].sum() == 1 and c[16] == 1
    assert not null_condition(1).any()  # the null condition differs from every request (flag)
    rows = screening_condition(np.zeros((3, 6)), ["Li", "Na", "Cs"])
    assert rows.shape == (3, 17) and (rows[:, -1] == 1).all()
    with pytest.raises(ValueError, match="unknown working ion"):
        screening_condition(SCALED, "Xx")


def test_unet_uses_condition_at_init_and_gradients_reach_the_class_embedding():
    torch.manual_seed(0)
    unet = build_screening_unet(sample_size=SIZE, **TINY)
    assert unet.config.class_embed_type == "projection"
    assert unet.config.projection_class_embeddings_input_dim == CONDITION_DIM
    # the condition enters through the time embedding that every resnet of every block receives
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    assert all(r.time_emb_proj is not None for b in blocks for r in b.resnets)
    x = torch.randn(2, 4, SIZE, SIZE)
    t = torch.tensor([500, 500])
    li = torch.as_tensor(screening_condition(np.tile(SCALED, (2, 1)), ["Li", "Li"]))
    cs = torch.as_tensor(screening_condition(np.tile(SCALED, (2, 1)), ["Cs", "Cs"]))
    with torch.no_grad():
        out_li = unet(x, t, None, class_labels=li).sample
        out_cs = unet(x, t, None, class_labels=cs).sample
        out_null = unet(x, t, None, class_labels=null_condition(2)).sample
    assert (out_li - out_cs).abs().max() > 1e-4
    assert (out_li - out_null).abs().max() > 1e-4
    loss = screening_loss(unet, make_training_scheduler(), x, li, torch.ones(2), torch.randn_like(x), t)
    loss.backward()
    grads = [p.grad for p in unet.class_embedding.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def _oracle_noise_prediction(x, t, encoder_hidden_states=None, class_labels=None, **_):
    """The exact noise of latents that are +1 for Li, -1 for Na and 0 without a condition.

    Sampling with it must reproduce those latents; a pipeline that lost, swapped or mixed up its
    conditions (or the guidance formula) generates something else from the same noise.
    """
    present = class_labels[:, -1] > 0.5
    li, na = class_labels[:, 6 + WORKING_IONS.index("Li")], class_labels[:, 6 + WORKING_IONS.index("Na")]
    mean = torch.where(present, li - na, 0.0)[:, None, None, None]
    a = make_training_scheduler().alphas_cumprod[int(t)]
    return SimpleNamespace(sample=(x - a.sqrt() * mean) / (1 - a).sqrt())


@pytest.mark.parametrize("scheduler", SAMPLERS)
def test_pipeline_steers_generation_by_the_ion(scheduler):
    oracle = _pipeline()
    oracle.unet.forward = _oracle_noise_prediction
    for guidance in (1.0, 2.0):
        kw = dict(num_candidates=2, num_inference_steps=5, scheduler=scheduler, scaled=True, guidance_scale=guidance)
        li = oracle(SCALED, "Li", generator=_gen(0), **kw).latents
        na = oracle(SCALED, "Na", generator=_gen(0), **kw).latents
        # eps-guidance of a point mass extrapolates its mean by the guidance scale
        scale = guidance / oracle.scaling_factor
        np.testing.assert_allclose(li, scale, atol=1e-3)
        np.testing.assert_allclose(na, -scale, atol=1e-3)


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("scheduler", [*SAMPLERS, None, "instance"])
def test_every_scheduler_returns_the_documented_shapes(pipe, scheduler):
    if scheduler == "instance":
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    out = pipe(SCALED, "Na", num_candidates=3, num_inference_steps=3, generator=_gen(), scheduler=scheduler,
               scaled=True)
    assert out.descriptors.shape == (3, 4 * SIZE, 4 * SIZE, 6)
    assert out.compositions.shape == (3, N_ELEMENTS)
    assert out.latents.shape == (3, 4, SIZE, SIZE)
    assert np.abs(out.descriptors).max() <= 1 and (out.compositions >= 0).all()
    assert np.isfinite(out.latents).all()


def test_same_generator_same_candidates_and_seed_decides(pipe):
    kw = dict(num_candidates=2, num_inference_steps=3, scheduler="dpm++", scaled=True)
    a = pipe(SCALED, "Li", generator=_gen(1), **kw)
    b = pipe(SCALED, "Li", generator=_gen(1), **kw)
    c = pipe(SCALED, "Li", generator=_gen(2), **kw)
    np.testing.assert_array_equal(a.latents, b.latents)
    assert not np.allclose(a.latents, c.latents)


def test_physical_properties_are_scaled_with_the_stored_ranges(pipe):
    scaler = PropertyScaler(tuple(LOW), tuple(HIGH))
    physical = dict(zip(PROPERTY_NAMES, scaler.inverse_transform(SCALED)))
    kw = dict(num_candidates=2, num_inference_steps=2, scheduler="ddim")
    a = pipe(physical, "K", generator=_gen(), **kw)
    b = pipe(SCALED, "K", generator=_gen(), scaled=True, **kw)
    np.testing.assert_allclose(a.condition, b.condition, atol=1e-6)
    np.testing.assert_allclose(a.latents, b.latents, atol=1e-5)


def test_guidance_one_is_the_conditional_only_path(pipe):
    steps = 4
    out = pipe(SCALED, "Ca", num_candidates=2, num_inference_steps=steps, guidance_scale=1.0,
               generator=_gen(5), scheduler="ddim", scaled=True, output_type="pt")
    # The same sampling written out with conditional U-Net calls only.
    cond = torch.as_tensor(screening_condition(SCALED, "Ca")).repeat(2, 1)
    sampler = DDIMScheduler.from_config(pipe.scheduler.config)
    sampler.set_timesteps(steps)
    x = torch.randn((2, 4, SIZE, SIZE), generator=_gen(5)) * sampler.init_noise_sigma
    with torch.no_grad():
        for t in sampler.timesteps:
            eps = bound_noise_prediction(pipe.unet(x, t, None, class_labels=cond).sample, x, sampler.alphas_cumprod[int(t)])
            x = sampler.step(eps, t, x).prev_sample
    torch.testing.assert_close(out.latents, x / pipe.scaling_factor, atol=1e-5, rtol=1e-5)
    # ... and guidance > 1 does change the result
    guided = pipe(SCALED, "Ca", num_candidates=2, num_inference_steps=steps, guidance_scale=3.0,
                  generator=_gen(5), scheduler="ddim", scaled=True, output_type="pt")
    assert not torch.allclose(guided.latents, out.latents)


def test_save_and_load_round_trip_gives_identical_outputs(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["property_low"] == LOW and index["working_ions"] == list(WORKING_IONS)
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    loaded = BattGenScreeningPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.translator, AFMTranslator) and isinstance(loaded.atom_regressor, AtomRegressor) and loaded.scaling_factor == pipe.scaling_factor
    assert loaded.property_scaler == pipe.property_scaler
    kw = dict(num_candidates=2, num_inference_steps=3, scheduler="ddpm", scaled=True)
    a = pipe(SCALED, "Zn", generator=_gen(7), **kw)
    b = loaded(SCALED, "Zn", generator=_gen(7), **kw)
    for field in ("descriptors", "compositions", "latents"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("kwargs, message", [
    (dict(working_ion="Xx"), "unknown working ion"),
    (dict(properties=[0.1] * 5), "expected 6 property values"),
    (dict(properties=[0.1, np.nan, 0.2, 0.3, 0.4, 0.5]), "finite.*capacity_grav"),
    (dict(properties={"average_voltage": 3.0}), "missing"),
    (dict(properties={**dict(zip(PROPERTY_NAMES, SCALED)), "density": 1.0}), "unknown density"),
    (dict(num_candidates=0), "num_candidates"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(num_inference_steps=2.5), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(scheduler="euler"), "unknown scheduler"),
    (dict(output_type="pil"), "output_type"),
])
def test_bad_requests_raise_clear_value_errors(pipe, kwargs, message):
    request = dict(properties=SCALED, working_ion="Li", scaled=True, num_inference_steps=2)
    request.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pipe(**request)


def test_physical_request_without_ranges_raises():
    torch.manual_seed(0)
    bare = BattGenScreeningPipeline(unet=build_screening_unet(sample_size=SIZE, **TINY),
                                    scheduler=make_training_scheduler(), translator=TinyTranslator(),
                                    atom_regressor=TinyRegressor())
    with pytest.raises(ValueError, match="no property ranges"):
        bare(SCALED, "Li", num_inference_steps=2)


# --------------------------------------------------------------------------- sensitivity


def test_sensitivity_has_seven_normalised_rows(pipe):
    kw = dict(num_candidates=1, num_inference_steps=2, guidance_scale=1.0)
    df = condition_sensitivity(pipe, SCALED, "Li", seeds=(0, 1), **kw)
    assert list(df["condition"]) == [*PROPERTY_NAMES, "working_ion"]
    # The six properties sum to 1; the ion swap is on the same scale but outside the sum.
    assert df["mean"][:6].sum() == pytest.approx(1.0) and df["latent_mean"][:6].sum() == pytest.approx(1.0)
    assert (df["mean"] > 0).all() and (df["std"] >= 0).all()
    assert all(len(v) == 2 and min(v) > 0 for v in df["raw_distance"])
    assert df.attrs["delta"] == 0.05
    # one request per call (as for DDPM) measures the same distances as the batched run
    single = condition_sensitivity(pipe, SCALED, "Li", seeds=(0,), scheduler=DDIMScheduler.from_config(
        pipe.scheduler.config), **kw)
    np.testing.assert_allclose([v[0] for v in single["raw_distance"]], [v[0] for v in df["raw_distance"]],
                               rtol=1e-3)


# --------------------------------------------------------------------------- training


def _write_table(directory, n_materials: int, ions: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_materials):
        row = {c: "" for c in COLUMNS}
        row.update({name: float(lo + (hi - lo) * rng.random()) for name, lo, hi in zip(PROPERTY_NAMES, LOW, HIGH)})
        row.update({"id": f"m{i}", "source": "computed", "working_ion": ions[i], "nsites_discharge": 4,
                    "composition": rng.random(N_ELEMENTS).astype(np.float32).tolist(), "split": "train",
                    **{c: 0.0 for c in ("energy_per_atom_discharge", "energy_per_atom_charge",
                                        "ion_energy_per_atom", "stability_discharge", "stability_charge")}})
        rows.append(row)
    save_table(pd.DataFrame(rows), directory)


def _screening_config(tmp_path, scaling_factor: float = 0.7, **changes) -> ScreeningTrainingConfig:
    """One epoch of a tiny U-Net on ``tmp_path/latents.npz`` and ``tmp_path/table``, tiny parts saved there."""
    TinyTranslator(scaling_factor=scaling_factor).save_pretrained(tmp_path / "translator")
    TinyRegressor().save_pretrained(tmp_path / "atom_regressor")
    settings = dict(latents=tmp_path / "latents.npz", table=tmp_path / "table", translator=tmp_path / "translator",
                    atom_regressor=tmp_path / "atom_regressor", out=tmp_path / "out", epochs=1,
                    channels=TINY["block_out_channels"], progress=False, device="cpu")
    return ScreeningTrainingConfig(**{**settings, **changes})


def test_train_screening_one_epoch_writes_a_loadable_pipeline(tmp_path):
    ions = ["Li", "Li", "Na", "Mg", "Li", "Na"]
    _write_table(tmp_path / "table", len(ions), ions)
    n = 24
    rng = np.random.default_rng(1)
    material = np.arange(n) % len(ions)
    np.savez(tmp_path / "latents.npz", mu=rng.normal(size=(n, 4, SIZE, SIZE)).astype(np.float16),
             scaling_factor=np.float32(0.7), material=material, working_ion=np.array([ions[m] for m in material]),
             split=np.array(["train"] * 16 + ["val"] * 4 + ["test"] * 4))
    out = tmp_path / "ckpt"
    metrics = train_screening(_screening_config(tmp_path, out=out, batch_size=8))
    for name in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json",
                 "translator/config.json", "metrics.json", "metadata.json"):
        assert (out / name).is_file(), name
    assert metrics["epochs_run"] == 1 and metrics["n_train"] == 16 and np.isfinite(metrics["best_val_loss"])
    assert {"loss", "loss_unconditional", "loss_by_ion"} <= set(metrics["test"])
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta["inputs"]) == 2 and meta["config"]["cond_dropout"] == 0.1
    pipe = BattGenScreeningPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.property_scaler == load_scaler(tmp_path / "table")
    assert pipe(dict(zip(PROPERTY_NAMES, HIGH)), "Na", num_candidates=1, num_inference_steps=2).latents.shape \
        == (1, 4, SIZE, SIZE)


def test_train_screening_rejects_a_mismatched_translator(tmp_path):
    ions = ["Li", "Na", "K"]
    _write_table(tmp_path / "table", 3, ions)
    np.savez(tmp_path / "latents.npz", mu=np.zeros((3, 4, SIZE, SIZE), np.float16), scaling_factor=np.float32(0.5),
             material=np.arange(3), working_ion=np.array(ions), split=np.array(["train", "val", "test"]))
    config = _screening_config(tmp_path)
    with pytest.raises(ValueError, match="scaled with 0.5"):
        train_screening(config)
    np.savez(tmp_path / "latents.npz", mu=np.zeros((3, 4, SIZE, SIZE), np.float16), scaling_factor=np.float32(0.7),
             material=np.arange(3), working_ion=np.array(["Li", "Li", "K"]), split=np.array(["train", "val", "test"]))
    with pytest.raises(ValueError, match="disagree with the table"):
        train_screening(config)


def test_the_noise_estimate_is_bounded_only_where_its_clean_latent_leaves_the_range():
    a = torch.tensor(0.3)
    x0 = torch.tensor([[-9.0, -1.0, 0.5, 3.9, 12.0]])
    noise = torch.randn_like(x0)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    eps = bound_noise_prediction(noise, x_t, a, bound=4.0)
    implied = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    torch.testing.assert_close(implied, torch.tensor([[-4.0, -1.0, 0.5, 3.9, 4.0]]), atol=1e-4, rtol=1e-4)
