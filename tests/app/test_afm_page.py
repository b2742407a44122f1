"""The AFM translation page, driven with Streamlit's AppTest (no browser).

The page is pointed (``BATTGEN_ARTIFACT_ROOT``) at a folder laid out like the repository that
holds real, untrained model checkpoints: the tests check the page's wiring — every input path,
every output, every message — not the quality of the shipped weights (that lives in
``checkpoints/*/metrics.json``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.afm_files import (TOPOGRAPHY_CHANNELS, gwy_channels, gwy_topography_scan, npy_bytes, npz_bytes,
                             sxm_series, tiff_bytes, write_3ds)
from tests.app.job_wait import run_until_job_ends

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "pages" / "afm_translation.py"
TIMEOUT_S = 300
GRID = 64


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory) -> Path:
    """Table, example stacks and small untrained translator + atom regressor checkpoints."""
    from battgen.afm.dataset import simulate_structure
    from battgen.afm.simulate import AFMSimulator, SimulationConfig
    from battgen.data.table import load_table, row_structure
    from battgen.models.atom_regressor import AtomRegressor
    from battgen.models.translator import AFMTranslator

    root = tmp_path_factory.mktemp("afm_root")
    shutil.copytree(REPO / "assets" / "electrodes", root / "assets" / "electrodes")
    table = load_table(root / "assets" / "electrodes")

    torch.manual_seed(0)
    translator = AFMTranslator(block_out_channels=(8, 16, 32), norm_num_groups=8, sample_size=GRID)
    translator.save_pretrained(root / "checkpoints" / "translator")
    AtomRegressor(latent_size=GRID // 4, conv_channels=(8, 16), hidden_units=16).save_pretrained(
        root / "checkpoints" / "atom_regressor")
    n = len(table)
    np.savez_compressed(root / "checkpoints" / "translator" / "latents.npz",
                        mu=np.random.default_rng(0).normal(size=(n, 4, GRID // 4, GRID // 4)).astype(np.float16),
                        material=np.arange(n), rotation=np.zeros(n, int), split=table["split"].to_numpy(str),
                        working_ion=table["working_ion"].to_numpy(str), material_id=table["id"].to_numpy(str),
                        scaling_factor=np.float32(1.0))

    row = table.iloc[0]
    views = simulate_structure(row_structure(row, "discharge"), AFMSimulator(SimulationConfig(grid=GRID)),
                               ion=row["working_ion"], candidates=20, keep=1)
    (root / "assets" / "afm").mkdir(parents=True)
    np.savez_compressed(root / "assets" / "afm" / "examples.npz", stacks=views.stacks, descriptors=views.descriptors,
                        material_id=np.array([row["id"]]), working_ion=np.array([row["working_ion"]]),
                        rotation=np.array([0]), composition=np.asarray(row["composition"], np.float32)[None])
    return root


@pytest.fixture()
def page(artifact_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(artifact_root))
    return ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())


def upload(page: AppTest, *files: tuple[str, bytes]) -> AppTest:
    page.radio(key="afm_source").set_value("Upload")
    ok(page.run())
    uploader = page.file_uploader(key="afm_upload")
    for name, data in files:
        uploader.upload(name, data)
    return page.run()


def translated(page: AppTest) -> dict:
    """What the page shows of a translation: download labels and the formula guess."""
    return {"downloads": [d.label for d in page.get("download_button")],
            "metrics": {m.label: m.value for m in page.metric}}


def test_example_is_translated_next_to_its_ground_truth(page):
    assert "view 1" in page.subheader[0].value
    shown = translated(page)
    assert {"Descriptors (PNG)", "Descriptors + latent (NPZ)", "Composition (CSV)"} <= set(shown["downloads"])
    assert "Formula guess" in shown["metrics"] and "True formula" in shown["metrics"]
    assert any("By latent" in c.value for c in page.caption)
    assert any("By predicted composition" in c.value for c in page.caption)
    page.slider(key="afm_height").set_value(1)
    ok(page.run())
    page.radio(key="afm_structure_style").set_value("spheres")
    ok(page.run())


def _stack(h: int = 40, w: int = 36, z: int = 12) -> np.ndarray:
    y, x, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(z), indexing="ij")
    return (np.sin(y / 3.0) + np.cos(x / 4.0) + 0.2 * k).astype(np.float32)


@pytest.mark.parametrize("name,make", [
    ("stack.npy", lambda: npy_bytes(_stack())),
    ("stack.npz", lambda: npz_bytes(df=_stack())),
    ("stack.tif", lambda: tiff_bytes(np.moveaxis(_stack(), 2, 0))),
    ("grid.3ds", lambda: write_3ds(_stack(), z_start=1e-10, z_end=5e-10)),
    ("maps.gwy", lambda: gwy_channels([_stack()[..., k] for k in range(5)])),
])
def test_each_upload_format_is_read_resampled_and_translated(page, name, make):
    ok(upload(page, (name, make())))
    assert page.session_state["afm_input"]["stack"].shape == (GRID, GRID, 10)
    notes = [c.value for c in page.caption]
    assert any("read as" in n for n in notes), notes
    assert "Descriptors (PNG)" in translated(page)["downloads"]


def test_a_series_of_sxm_scans_is_one_stack(page):
    series = sxm_series([2e-10, 3e-10, 4e-10, 5e-10], h=24, w=20)
    ok(upload(page, *[(name, data) for name, data, _ in series]))
    assert page.session_state["afm_input"]["stack"].shape == (GRID, GRID, 10)


@pytest.mark.parametrize("name,data,message", [
    ("notes.txt", b"hello", "."),
    ("stack.npy", b"\x89PNG\r\n\x1a\n" + bytes(64), "PNG"),
    ("stack.npy", npy_bytes(np.full((16, 16, 4), np.nan, np.float32)), "NaN"),
    ("flat.npy", npy_bytes(np.zeros(100, np.float32)), "1-D"),
    ("one.npy", npy_bytes(_stack(z=1)), "height"),
])
def test_bad_uploads_get_a_message_and_no_translation(page, name, data, message):
    ok(upload(page, (name, data)))
    errors = [e.value for e in page.error]
    assert errors and any(message in e for e in errors), errors
    assert "afm_input" not in page.session_state
    assert not [d for d in page.get("download_button") if d.label == "Descriptors (PNG)"]


def test_a_topography_scan_lists_its_channels_and_is_not_translated(page):
    ok(upload(page, ("scan.gwy", gwy_topography_scan())))
    errors = [e.value for e in page.error]
    assert any("This is a topography scan, not a constant-height force-map stack" in e for e in errors), errors
    channels = page.dataframe[0].value
    assert list(zip(channels["channel"], channels["unit"])) == list(TOPOGRAPHY_CHANNELS)
    assert set(channels["pixels"]) == {"256×256"} and set(channels["scan size"]) == {"5 µm × 5 µm"}
    assert "afm_input" not in page.session_state
    assert not [d for d in page.get("download_button") if d.label == "Descriptors (PNG)"]


def test_a_frequency_shift_file_shows_the_channels_it_read(page):
    ok(upload(page, ("maps.gwy", gwy_channels([_stack()[..., k] for k in range(5)]))))
    channels = page.session_state["afm_input"]["channels"]
    assert [c["channel"] for c in channels] == [f"df z{k}" for k in range(5)]
    assert {c["quantity"] for c in channels} == {"frequency shift"}
    assert "Descriptors (PNG)" in translated(page)["downloads"]


def test_switching_to_simulate_clears_the_example_until_a_stack_is_simulated(page):
    assert page.session_state["afm_input"]["label"]  # the page opens on an example
    page.radio(key="afm_source").set_value("Simulate from a structure")
    ok(page.run())
    assert "afm_input" not in page.session_state
    assert any("simulate one" in i.value for i in page.info)
    assert not page.get("plotly_chart")


@pytest.mark.slow
def test_simulating_a_dataset_material_shows_its_views_and_translation(page):
    page.radio(key="afm_source").set_value("Simulate from a structure")
    ok(page.run())
    page.button(key="afm_simulate").click()
    ok(run_until_job_ends(page.run(), "afm_job", timeout=TIMEOUT_S))
    simulated = page.session_state["afm_simulated"]["views"]
    assert simulated.stacks.shape[1:] == (GRID, GRID, 10)
    assert len(page.radio(key="afm_view").options) == len(simulated.valid)
    page.radio(key="afm_view").set_value(1)
    ok(page.run())
    assert "view 2" in page.subheader[0].value
    assert "Composition (CSV)" in translated(page)["downloads"]


def test_without_checkpoints_the_page_says_what_to_train(tmp_path, monkeypatch):
    shutil.copytree(REPO / "assets" / "electrodes", tmp_path / "assets" / "electrodes")
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(tmp_path))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    assert any("python -m battgen train translator" in i.value for i in app.info)
    assert app.radio(key="afm_source").value == "Simulate from a structure"
    app.radio(key="afm_source").set_value("Example")
    ok(app.run())
    assert any("afm export-examples" in w.value for w in app.warning)
    ok(upload(app, ("stack.npy", npy_bytes(_stack()))))
    assert app.session_state["afm_input"]["stack"].shape == (GRID, GRID, 10)
    assert not [d for d in app.get("download_button") if d.label == "Descriptors (PNG)"]


@pytest.fixture()
def shipped_page(monkeypatch) -> AppTest:
    """The page on the repository's own artifacts: the shipped translator, its OOD calibration and examples."""
    monkeypatch.delenv("BATTGEN_ARTIFACT_ROOT", raising=False)
    return ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())


def ood_shown(page: AppTest) -> tuple[str | None, list[str], list[str]]:
    """The score metric's value, the warnings and the captions of a translated stack."""
    score = next((m.value for m in page.metric if m.label == "Out-of-distribution score"), None)
    return score, [w.value for w in page.warning], [c.value for c in page.caption]


def test_a_shipped_example_gets_its_ood_score_and_no_warning(shipped_page):
    score, warnings, captions = ood_shown(shipped_page)
    assert score is not None and score.endswith("%")
    assert not any("Outside what the model saw" in w for w in warnings)
    assert any(c.startswith("Within what the model saw: more unusual than") for c in captions), captions


def test_a_noise_upload_gets_its_ood_score_and_a_warning(shipped_page):
    noise = np.random.default_rng(0).standard_normal((64, 64, 10)).astype(np.float32)
    ok(upload(shipped_page, ("noise.npy", npy_bytes(noise))))
    score, warnings, _ = ood_shown(shipped_page)
    assert score == "100.0 %"
    assert any("Outside what the model saw" in w and "held-out simulated stacks" in w for w in warnings), warnings
    assert "Descriptors (PNG)" in translated(shipped_page)["downloads"]  # shown, with the warning above


def test_a_stack_noisier_than_training_is_warned_about_even_when_its_latent_looks_ordinary(shipped_page):
    from battgen.afm.distortions import gaussian_noise
    from battgen.afm.examples import load_examples

    example = load_examples(REPO / "assets" / "afm" / "examples.npz")[0]
    assert not any("Noisier than anything" in w for w in ood_shown(shipped_page)[1])  # the clean example
    noisy = gaussian_noise(example.stack, 1.0, np.random.default_rng(0)).astype(np.float32)
    ok(upload(shipped_page, ("noisy.npy", npy_bytes(noisy))))
    _, warnings, _ = ood_shown(shipped_page)
    assert any("Noisier than anything the model was trained on" in w and "signal-to-noise ratio of 1.0" in w
               for w in warnings), warnings
    assert "Descriptors (PNG)" in translated(shipped_page)["downloads"]


def test_without_a_calibration_the_page_says_so(page):
    assert any("No out-of-distribution score" in c.value for c in page.caption)


def test_model_quality_shows_the_robustness_table_and_the_ood_calibration(shipped_page):
    frames = [d.value for d in shipped_page.dataframe]
    robustness = next(f for f in frames if "OOD warned (%)" in f.columns)
    assert robustness["condition"].iloc[0] == "clean" and len(robustness) > 1
    assert {"SSIM", "SSIM drop", "composition R²", "R² drop"} <= set(robustness.columns)
    # the models before the robust encoder and the distorted-view regressor, scored on the same views
    assert {"SSIM before", "composition R² before"} <= set(robustness.columns)
    noisy = robustness[robustness["condition"].str.contains("noise")]
    assert (noisy["SSIM drop"] < noisy["SSIM drop before"]).all()
    # Other instruments simulated by ppafm (probe particle, tip height) on a subset of the same views.
    simulated = robustness[robustness["condition"].str.endswith("(simulated)")]
    assert {"Xe probe (simulated)", "tip 0.2 Å closer (simulated)"} <= set(simulated["condition"])
    assert (simulated["views"] < robustness["views"].iloc[0]).all()
    assert set(robustness["within the bar"].iloc[1:]) <= {"yes", "no"}
    kinds = next(f for f in frames if "latent MSE after" in f.columns)
    for kind in ("gaussian", "pink", "drift", "tip_height"):
        row = kinds[kinds["distortion"] == kind].iloc[0]
        assert row["latent MSE after"] < row["latent MSE before"]
    captions = [c.value for c in shipped_page.caption]
    assert any(c.startswith("Out-of-distribution score: probabilistic-PCA") and "99th percentile" in c
               for c in captions), captions
    # Which anion the regressor reads, per true main anion, from the shipped test predictions.
    anions = next(f for f in frames if "read right (%)" in f.columns)
    assert {"O", "F"} <= set(anions["main anion"]) and anions["views"].sum() > 1000
    oxide = anions[anions["main anion"] == "O"].iloc[0]
    assert oxide["read right (%)"] == oxide["read as O (%)"]


def test_an_offset_stack_in_the_caution_band_is_called_unusual(shipped_page):
    from battgen.afm.distortions import lateral_offset
    from battgen.afm.examples import load_examples
    from battgen.afm.ood import LatentDensity
    from battgen.models.translator import AFMTranslator

    translator = AFMTranslator.from_pretrained(REPO / "checkpoints" / "translator").eval()
    density = LatentDensity.load(REPO / "checkpoints" / "translator")
    # The first example, shifted by a few pixels, that lands between the 95th and the 99th percentile.
    examples = load_examples(REPO / "assets" / "afm" / "examples.npz")
    shifted = (lateral_offset(example.stack, 0.0, dx) for example in examples for dx in (1.0, 2.0, 3.0, 4.0))
    stack = next(s for s in shifted if density.score(translator.translate(s)[1][0]).unusual)
    ok(upload(shipped_page, ("offset.npy", npy_bytes(stack))))
    infos = [i.value for i in shipped_page.info]
    assert any("Unusual for the model" in i for i in infos), infos
    assert not any("Outside what the model saw" in w.value for w in shipped_page.warning)
