"""The SEI explorer page, driven widget by widget with Streamlit's AppTest (no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "pages" / "sei_explorer.py"
TIMEOUT_S = 240


def fresh(page: Path = PAGE) -> AppTest:
    app = AppTest.from_file(str(page), default_timeout=TIMEOUT_S)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def page() -> AppTest:
    return fresh()


def test_shipped_checkpoints_and_dataset_are_present():
    for name in ("sei_vae", "sei_prvae", "sei_cprvae"):
        for file in ("config.json", "latents.npz", "metrics.json", "metadata.json"):
            assert (REPO / "checkpoints" / name / file).is_file(), f"{name}/{file}"
    assert (REPO / "assets" / "sei" / "dataset.npz").is_file()


def test_simulation_runs_with_chosen_barriers_size_and_seed(page):
    page.slider(key="barrier_0").set_value(0.45)
    page.slider(key="barrier_13").set_value(0.30)
    page.slider(key="kmc_size").set_value(25)
    page.number_input(key="kmc_seed").set_value(3)
    page.number_input(key="kmc_max_steps").set_value(5)
    page.button[0].click()
    ok(page.run())
    metrics = {m.label: m.value for m in page.metric}
    assert float(metrics["Thickness (nm)"]) > 0
    assert 0 <= float(metrics["Porosity (layer)"]) <= 1
    assert 0 <= float(metrics["Porosity (half-thickness)"]) <= 1
    result = page.session_state["kmc_result"]
    assert result.lattice.shape == (25, 25) and result.seed == 3
    assert result.barriers[0] == pytest.approx(0.45) and result.barriers[13] == pytest.approx(0.30)
    labels = [d.label for d in page.get("download_button")]
    assert any("CSV" in label for label in labels) and any("NPZ" in label for label in labels)

    frames = len(result.snapshots)
    page.slider(key="kmc_frame").set_value(0)
    ok(page.run())
    assert frames >= 3


def test_latent_space_colours_by_every_property(page):
    for prop in page.selectbox(key="latent_prop").options:
        page.selectbox(key="latent_prop").set_value(prop)
        ok(page.run())
    assert any("PC1–PC2" in c.value for c in page.caption)


@pytest.mark.parametrize("model", ["prvae", "cprvae", "vae"])
def test_pc_walks_for_every_model_and_component(page, model):
    page.selectbox(key="walk_model").set_value(model)
    for pc in (0, 1, 2):
        page.radio(key="walk_pc").set_value(pc)
        ok(page.run())
    slider = page.slider(key="walk_pos")
    slider.set_value(slider.max)
    ok(page.run())


def test_barrier_conditioned_generation_modes(page):
    page.radio(key="cond_mode").set_value("Barrier varies, latent at its mean")
    ok(page.run())
    page.selectbox(key="cond_barrier").set_value(6)
    ok(page.run())
    page.slider(key="cond_value").set_value(0.8)
    ok(page.run())
    page.radio(key="cond_mode").set_value("Latent varies, barriers fixed")
    ok(page.run())
    page.radio(key="cond_pc").set_value(1)
    ok(page.run())
    page.radio(key="cond_mode").set_value("Interpolate between two test configurations")
    ok(page.run())
    page.number_input(key="interp_a").set_value(2)
    page.number_input(key="interp_b").set_value(5)
    page.slider(key="interp_steps").set_value(7)
    ok(page.run())


def test_model_quality_tab_shows_metrics_table_and_correlations(page):
    ok(page.run())
    metrics_tables = [df.value for df in page.dataframe if "site accuracy" in df.value.columns]
    assert metrics_tables, "the metrics table is missing"
    table = metrics_tables[0]
    assert list(table["model"]) == ["vanilla VAE", "prVAE", "conditional prVAE"]
    assert table["R² thickness"].iloc[1] > 0.5  # the shipped prVAE predicts thickness
    # and is scored apart on the test runs that passivated (not stopped at the event bound)
    assert table["R² thickness, passivated runs"].iloc[1] > 0.5
    assert list(table["trained on"]) == ["passivated runs"] * 3  # truncated SEIs are not learned
    assert any("correlations over the 1,638 passivated simulations" in s.value for s in page.subheader)
    assert any("2,362 of the dataset's 4,000 runs stopped" in c.value for c in page.caption)
    # the regressors beside the trivial baselines fitted on the same runs
    baselines = next(df.value for df in page.dataframe if "runs" in df.value.columns)
    models = list(baselines["model"])
    assert models[:2] == ["prVAE regressor", "conditional prVAE regressor"]
    assert "baseline: random forest on per-row species fractions" in models
    forest = baselines[baselines["model"] == "baseline: random forest on per-row species fractions"].iloc[0]
    # the shipped prVAE reads the Li2CO3 fraction better than a forest on the depth profile
    assert baselines["R² inorganic_fraction"].iloc[0] > forest["R² inorganic_fraction"]


def test_page_without_checkpoints_or_dataset_explains_what_to_build(tmp_path, monkeypatch):
    # An empty artifact root: like every page, this one looks where BATTGEN_ARTIFACT_ROOT points.
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(tmp_path))
    app = fresh(PAGE)
    warnings = " ".join(w.value for w in app.warning)
    assert "checkpoint is missing" in warnings and "python -m battgen train" in warnings
    assert any("build-dataset" in i.value for i in app.info)


def test_latent_helpers_walk_along_one_principal_component():
    import numpy as np

    from battgen.eval.sei_latent import load_latents, pc_walk

    latents = load_latents(REPO / "checkpoints" / "sei_prvae")
    values, walk = pc_walk(latents, 1, 4)
    lo, _, hi = latents.pc_range(1)
    assert values[0] == lo and values[-1] == hi
    projected = (walk - latents.pca_mean) @ latents.pca_components.T
    assert np.allclose(projected[:, 1], values, atol=1e-4)
    assert np.allclose(np.delete(projected, 1, axis=1), 0, atol=1e-4)


@pytest.mark.slow
def test_a_large_run_queues_as_a_job_shows_its_progress_and_can_be_cancelled(monkeypatch):
    from tests.app.job_wait import run_until_job_ends

    monkeypatch.setenv("BATTGEN_KMC_INLINE_LIMIT", "0")  # every run goes through the job runner
    app = fresh()
    app.slider(key="kmc_size").set_value(25)
    app.number_input(key="kmc_max_steps").set_value(5)
    app.button[0].click()
    ok(app.run())
    assert "kmc_job" in app.session_state
    statuses = [e.label for e in app.main if e.type == "status"]
    assert any(label.startswith("KMC simulation: ") for label in statuses), statuses
    ok(run_until_job_ends(app, "kmc_job"))
    assert any(e.type == "status" and e.label.startswith("Done in ") for e in app.main)
    result = app.session_state["kmc_result"]
    assert result.lattice.shape == (25, 25)
    assert float({m.label: m.value for m in app.metric}["Thickness (nm)"]) > 0

    # A run that cannot end soon: cancelled from its panel, the page says so and keeps no result.
    app.slider(key="kmc_size").set_value(100)
    app.number_input(key="kmc_max_steps").set_value(200)
    app.button[0].click()
    ok(app.run())
    assert "kmc_result" not in app.session_state
    next(b for b in app.button if b.label == "Cancel").click()
    ok(run_until_job_ends(app, "kmc_job", timeout=30))
    assert any(e.value == "The KMC simulation was cancelled by the user." for e in app.error)
