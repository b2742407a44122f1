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
from diffusers import DDIMScheduler

from battgen.data.composition import N_ELEMENTS
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.table import COLUMNS, LATER_COLUMNS, load_scaler, save_table
from battgen.eval.sensitivity import condition_sensitivity
from battgen.models.atom_regressor import AtomRegressor
from battgen.models.translator import AFMTranslator
from battgen.models.screening import (
    CONDITION_DIM,
    SAMPLERS,
    BattGenScreeningPipeline,
    bound_noise_prediction,
    bound_prediction,
    condition_tokens,
    build_screening_unet,
    make_training_scheduler,
    null_condition,
    screening_condition,
)
from battgen.train.configs import ScreeningTrainingConfig
from battgen.train.screening import min_snr_weights, prediction_target, screening_loss, train_screening

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
        row.update({c: None for c in LATER_COLUMNS})  # integer columns: missing, not text
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


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_every_prediction_type_is_bounded_through_its_implied_clean_latent(kind):
    scheduler = make_training_scheduler(kind, zero_terminal_snr=kind != "epsilon")
    a = scheduler.alphas_cumprod[600]
    x0 = torch.tensor([[-9.0, -1.0, 0.5, 3.9, 12.0]])
    noise = torch.randn_like(x0)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    t = torch.tensor([600])
    output = prediction_target(scheduler, x0, noise, t)
    bounded = bound_prediction(output, x_t, a, kind, bound=4.0)
    # Whatever the U-Net outputs, a sampler reading the bounded output sees the clipped x0.
    implied = {"epsilon": lambda o: (x_t - (1 - a).sqrt() * o) / a.sqrt(),
               "v_prediction": lambda o: a.sqrt() * x_t - (1 - a).sqrt() * o,
               "sample": lambda o: o}[kind](bounded)
    torch.testing.assert_close(implied, torch.tensor([[-4.0, -1.0, 0.5, 3.9, 4.0]]), atol=1e-4, rtol=1e-4)


def test_zero_terminal_snr_refuses_epsilon_and_reaches_pure_noise():
    with pytest.raises(ValueError, match="zero terminal SNR"):
        make_training_scheduler("epsilon", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="unknown prediction type"):
        make_training_scheduler("noise")
    assert float(make_training_scheduler("v_prediction", zero_terminal_snr=True).alphas_cumprod[-1]) == 0.0
    assert float(make_training_scheduler().alphas_cumprod[-1]) > 1e-5


def test_min_snr_weights_cap_the_easy_timesteps_for_each_prediction_type():
    t = torch.tensor([10, 500, 990])
    for kind in ("epsilon", "v_prediction", "sample"):
        scheduler = make_training_scheduler(kind)
        a = scheduler.alphas_cumprod[t]
        snr = a / (1 - a)
        w = min_snr_weights(scheduler, t, gamma=5.0)
        # Weighted, every loss equals an x0-MSE weighted min(SNR, 5): the same objective.
        per_unit_x0 = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}[kind]
        torch.testing.assert_close(w * per_unit_x0, snr.clamp(max=5.0))


def test_standardised_conditions_are_stored_and_applied_after_scaling(tmp_path):
    torch.manual_seed(0)
    shift, scale = [0.5] * 6, [0.25] * 6
    pipe = BattGenScreeningPipeline(unet=build_screening_unet(sample_size=SIZE, **TINY),
                                    scheduler=make_training_scheduler("v_prediction", zero_terminal_snr=True),
                                    translator=TinyTranslator(), atom_regressor=TinyRegressor(),
                                    property_low=LOW, property_high=HIGH, condition_shift=shift,
                                    condition_scale=scale, x0_bound=6.5)
    c = pipe.condition_vector(SCALED, "Mg", scaled=True)
    np.testing.assert_allclose(c[:6], (np.asarray(SCALED) - 0.5) / 0.25, rtol=1e-6)
    pipe.save_pretrained(tmp_path)
    loaded = BattGenScreeningPipeline.from_pretrained(tmp_path)
    assert loaded.config.x0_bound == 6.5 and loaded.scheduler.config.prediction_type == "v_prediction"
    np.testing.assert_array_equal(loaded.condition_vector(SCALED, "Mg", scaled=True), c)
    with pytest.raises(ValueError, match="condition_scale must be positive"):
        BattGenScreeningPipeline(unet=build_screening_unet(sample_size=SIZE, **TINY),
                                 scheduler=make_training_scheduler(), translator=TinyTranslator(),
                                 atom_regressor=TinyRegressor(), condition_shift=shift, condition_scale=[0.0] * 6)


def test_a_checkpoint_without_the_new_config_keys_loads_with_the_old_behaviour(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    for key in ("condition_shift", "condition_scale", "x0_bound"):
        index.pop(key)
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    old = BattGenScreeningPipeline.from_pretrained(tmp_path)
    old.set_progress_bar_config(disable=True)
    assert old.config.x0_bound is None and old.config.condition_shift is None
    np.testing.assert_array_equal(old.condition_vector(SCALED, "Li", scaled=True)[:6], np.float32(SCALED))
    a = old(SCALED, "Li", scaled=True, num_candidates=1, num_inference_steps=3, generator=_gen(2)).latents
    b = pipe(SCALED, "Li", scaled=True, num_candidates=1, num_inference_steps=3, generator=_gen(2)).latents
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("targets", ["canonical", "mean"])
def test_train_screening_with_per_material_targets_and_r2_selection(tmp_path, targets):
    ions = ["Li", "Li", "Na", "Mg", "Li", "Na"]
    _write_table(tmp_path / "table", len(ions), ions)
    n = 24
    rng = np.random.default_rng(1)
    material = np.arange(n) % len(ions)
    split_of = np.array(["train", "train", "train", "train", "val", "test"])
    np.savez(tmp_path / "latents.npz", mu=rng.normal(size=(n, 4, SIZE, SIZE)).astype(np.float16),
             scaling_factor=np.float32(0.7), material=material, working_ion=np.array([ions[m] for m in material]),
             split=split_of[material])
    out = tmp_path / "ckpt"
    metrics = train_screening(_screening_config(
        tmp_path, out=out, epochs=2, batch_size=4, prediction_type="v_prediction", zero_terminal_snr=True,
        min_snr_gamma=5.0, condition_norm="zscore", targets=targets, select_by="val_composition_r2"))
    assert metrics["n_train"] == 4 and metrics["n_val"] == 1  # one target per material
    assert metrics["selected_by"] == "val_composition_r2"
    assert all(np.isfinite(v) for v in metrics["history"]["val_composition_r2"])
    meta = json.loads((out / "metadata.json").read_text())["config"]
    assert (meta["targets"], meta["condition_norm"], meta["prediction_type"]) == (targets, "zscore", "v_prediction")
    pipe = BattGenScreeningPipeline.from_pretrained(out)
    assert pipe.config.condition_scale is not None and pipe.config.x0_bound > 0
    assert pipe.scheduler.config.rescale_betas_zero_snr
    pipe.set_progress_bar_config(disable=True)
    assert np.isfinite(pipe(SCALED, "Na", scaled=True, num_candidates=1, num_inference_steps=2).latents).all()


def test_select_targets_keeps_a_real_view_or_the_mean_per_material():
    from battgen.train.screening import ScreeningData, select_targets

    latents = np.array([0.0, 1.0, 5.0, 10.0, 12.0], np.float32).reshape(5, 1, 1, 1)
    data = ScreeningData(latents=latents, conditions=np.zeros((5, 17), np.float32), ions=np.array(["Li"] * 5),
                         split=np.array(["train"] * 5), scaling_factor=1.0, scaler=None,
                         material=np.array([0, 0, 0, 1, 1]), compositions=np.zeros((5, 112), np.float32))
    canonical = select_targets(data, "canonical")
    np.testing.assert_array_equal(canonical.latents.ravel(), [1.0, 10.0])  # closest to the means 2 and 11
    np.testing.assert_allclose(select_targets(data, "mean").latents.ravel(), [2.0, 11.0])
    assert select_targets(data, "all") is data
    with pytest.raises(ValueError, match="unknown targets"):
        select_targets(data, "median")


def test_condition_tokens_give_each_property_its_slot_and_the_ion_its_own_token():
    c = torch.as_tensor(screening_condition(np.tile(SCALED, (2, 1)), ["Li", "Cs"]))
    tokens = condition_tokens(c)
    assert tokens.shape == (2, 7, 2 * 6 + len(WORKING_IONS) + 1)
    torch.testing.assert_close(tokens[0, 2, :6], torch.eye(6)[2])
    assert float(tokens[0, 2, 6 + 2]) == pytest.approx(SCALED[2]) and float(tokens[0, 2, 6:12].abs().sum()) \
        == pytest.approx(SCALED[2])
    assert tokens[1, 6, 12 + WORKING_IONS.index("Cs")] == 1 and tokens[1, 6, :12].abs().sum() == 0
    assert (tokens[:, :, -1] == 1).all()
    assert condition_tokens(null_condition(3)).abs().sum() == 0


def test_token_unet_steers_by_the_ion_and_round_trips(tmp_path):
    torch.manual_seed(0)
    unet = build_screening_unet(sample_size=SIZE, embedding="tokens", **TINY)
    assert unet.config.class_embed_type is None and unet.config.encoder_hid_dim == 23
    # Untrained cross-attention output layers start near zero; perturb them so the ion can act.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pipe = _pipeline(unet=unet)
    kw = dict(scaled=True, num_candidates=1, num_inference_steps=3, guidance_scale=1.0)
    li = pipe(SCALED, "Li", generator=_gen(1), **kw).latents
    cs = pipe(SCALED, "Cs", generator=_gen(1), **kw).latents
    assert np.abs(li - cs).max() > 1e-4
    pipe.save_pretrained(tmp_path)
    loaded = BattGenScreeningPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    # Measured: the cross-attention U-Net reloads equal to float32 rounding (1.8e-5), not bit for bit.
    np.testing.assert_allclose(loaded(SCALED, "Li", generator=_gen(1), **kw).latents, li, rtol=0, atol=1e-4)
    assert np.abs(loaded(SCALED, "Cs", generator=_gen(1), **kw).latents - li).max() > 1e-3
    with pytest.raises(ValueError, match="unknown embedding"):
        build_screening_unet(sample_size=SIZE, embedding="film", **TINY)
