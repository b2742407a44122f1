"""The Screening page, driven with Streamlit's AppTest (no browser).

The page is pointed (``BATTGEN_ARTIFACT_ROOT``) at a tiny artifact root with the real model
classes at toy size, untrained (tests/screening_root.py): the tests check the page's wiring
(every control reaches the request or the sampler, results persist across reruns, every
output and message is drawn), never the quality of a trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from battgen.screening.defaults import DEFAULT_GUIDANCE, DEFAULT_STEPS
from tests.screening_root import build_screening_root

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "pages" / "candidate_screening.py"
TIMEOUT_S = 300
FEW_STEPS = 3  # the toy model is untrained: more steps would only cost time


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory) -> Path:
    return build_screening_root(tmp_path_factory.mktemp("screening_root"))


@pytest.fixture()
def page(artifact_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(artifact_root))
    return ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())


@pytest.fixture(scope="module")
def session(artifact_root):
    from battgen.screening.session import ScreeningSession

    return ScreeningSession.load(artifact_root)


def generate(app: AppTest, *, steps: int = FEW_STEPS, **controls) -> AppTest:
    """Set form controls by key suffix (``seed=3`` sets ``screen_seed``), press Generate."""
    app.number_input(key="screen_steps").set_value(steps)
    for name, value in controls.items():
        form_widget(app, f"screen_{name}").set_value(value)
    app.button(key="screen_generate").click()
    return ok(app.run())


def form_widget(app: AppTest, key: str):
    for kind in (app.slider, app.number_input, app.selectbox):
        try:
            return kind(key=key)
        except KeyError:
            continue
    raise KeyError(key)


def result(app: AppTest):
    return app.session_state["screen_result"]


def shown_table(app: AppTest):
    # AppTest's dataframes carry no key; the candidate table is the first one of the page.
    return app.dataframe[0].value


def plotly_spec(app: AppTest, key: str) -> dict:
    charts = [c for c in app.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert charts, f"no plotly chart {key!r}"
    return json.loads(charts[0].proto.spec)


def test_sliders_start_at_the_ions_medians_within_the_data_range(page, session):
    from battgen.data.properties import PROPERTY_NAMES
    from battgen.screening.request import ion_medians

    assert page.selectbox(key="screen_ion").value == "Li"
    medians = ion_medians(session.table, "Li")
    for i, name in enumerate(PROPERTY_NAMES):
        slider = page.slider(key=f"screen_{name}")
        assert slider.value == pytest.approx(medians[name], abs=slider.step), name
        assert session.scaler.low[i] <= slider.min and slider.max <= session.scaler.high[i], name
    assert page.selectbox(key="screen_sampler").value == "dpm++"
    assert page.number_input(key="screen_steps").value == DEFAULT_STEPS
    assert page.number_input(key="screen_guidance").value == DEFAULT_GUIDANCE
    assert page.slider(key="screen_candidates").value == 4
    assert len(page.selectbox(key="screen_ion").options) == 10
    assert any("press **Generate**" in i.value for i in page.info)
    assert "screen_result" not in page.session_state


def test_generate_shows_ranked_candidates_samples_and_downloads(page):
    generate(page)
    shown = result(page)
    candidates = shown.candidates
    assert len(shown.samples) == 4 and shown.descriptors.shape[0] == 4
    assert set(candidates["working_ion"]) == {"Li"}
    np.testing.assert_allclose(candidates["score"],
                               0.5 * (candidates["property_match"] + candidates["composition_similarity"]))
    table = shown_table(page)
    assert table["id"].iloc[0] == "request"
    assert list(table["id"].iloc[1:]) == list(candidates["id"])
    assert {"score", "property_match", "composition_similarity"} <= set(table.columns)

    downloads = {d.label for d in page.get("download_button")}
    assert {"Candidates (CSV)", "Generated descriptors (NPZ)", "CIF", "POSCAR"} <= downloads
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Generation time"] == f"{shown.wall_time_s:.2f} s"
    assert metrics["Best property match"] == f"{candidates['property_match'].max():.2f}"
    assert any("Best property match:" in m.value and "of the data range off" in m.value for m in page.markdown)
    for b in range(4):  # one descriptor grid per sample, four panels each
        assert len(plotly_spec(page, f"screen_sample_{b}")["data"]) == 4
    comparison = plotly_spec(page, "screen_comparison")
    assert comparison["data"][-1]["name"] == "request"


def test_moving_the_voltage_slider_changes_the_request(page):
    voltage = page.slider(key="screen_average_voltage")
    median = voltage.value
    target = round(voltage.max - 10 * voltage.step, 2)
    assert abs(target - median) > 0.5
    others = {k: page.slider(key=f"screen_{k}").value for k in ("capacity_grav", "energy_vol")}
    generate(page, average_voltage=target)
    request = result(page).request
    assert request.properties["average_voltage"] == pytest.approx(target)
    assert request.properties["capacity_grav"] == pytest.approx(others["capacity_grav"])
    assert request.properties["energy_vol"] == pytest.approx(others["energy_vol"])
    assert shown_table(page)["average_voltage"].iloc[0] == pytest.approx(target)
    assert not page.warning  # a slider cannot leave the data range


def test_changing_the_ion_resets_the_sliders_and_the_candidates_follow(page, session):
    from battgen.data.properties import PROPERTY_NAMES
    from battgen.screening.request import ion_medians

    page.slider(key="screen_average_voltage").set_value(page.slider(key="screen_average_voltage").max)
    page.selectbox(key="screen_ion").set_value("Mg")
    ok(page.run())
    medians = ion_medians(session.table, "Mg")
    for name in PROPERTY_NAMES:
        slider = page.slider(key=f"screen_{name}")
        assert slider.value == pytest.approx(medians[name], abs=slider.step), name
    assert medians["average_voltage"] != pytest.approx(ion_medians(session.table, "Li")["average_voltage"], abs=0.05)

    generate(page)
    shown = result(page)
    assert shown.request.working_ion == "Mg"
    assert set(shown.candidates["working_ion"]) == {"Mg"}
    assert shown.request.properties["average_voltage"] == pytest.approx(medians["average_voltage"], abs=0.01)


def test_sampler_and_steps_reach_the_sampler(page):
    generate(page, steps=4, sampler="ddim")
    ddim = result(page)
    assert (ddim.settings["scheduler"], ddim.settings["num_inference_steps"]) == ("ddim", 4)
    assert any("ddim with 4 steps" in c.value for c in page.caption)
    generate(page, steps=5, sampler="ddpm", guidance=1.0, candidates=2)
    ddpm = result(page)
    assert ddpm.settings == {**ddpm.settings, "scheduler": "ddpm", "num_inference_steps": 5,
                             "guidance_scale": 1.0, "num_candidates": 2}
    assert ddpm.descriptors.shape[0] == 2
    assert not np.allclose(ddpm.descriptors, ddim.descriptors[:2])
    assert page.number_input(key="screen_steps").max == 1000  # DDPM's training timesteps


def test_same_seed_repeats_a_generation_and_a_new_seed_changes_it(page):
    generate(page, seed=7)
    first = result(page)
    generate(page, seed=7)
    again = result(page)
    assert again is not first  # generated anew, not kept
    np.testing.assert_array_equal(again.descriptors, first.descriptors)
    assert list(again.candidates["id"]) == list(first.candidates["id"])

    generate(page, seed=8)
    other = result(page)
    assert not np.allclose(other.descriptors, first.descriptors)

    page.button(key="screen_new_seed").click()
    ok(page.run())
    drawn = page.number_input(key="screen_seed").value
    reseeded = result(page)
    assert reseeded.settings["seed"] == drawn and reseeded is not other
    assert drawn != 8 or not np.allclose(reseeded.descriptors, other.descriptors)


def test_picking_a_candidate_shows_its_structure_without_regenerating(page):
    generate(page)
    shown = result(page)
    selector = page.selectbox(key="screen_candidate")
    assert selector.value == shown.candidates["id"].iloc[0]
    second = shown.candidates.iloc[1]
    selector.set_value(second["id"])
    ok(page.run())
    assert result(page) is shown
    facts = page.table[0].value
    assert second["formula_discharge"] in " ".join(map(str, facts.to_numpy().ravel()))
    page.radio(key="screen_structure_style").set_value("spheres")
    ok(page.run())
    assert result(page) is shown


def test_a_request_beyond_the_data_is_flagged(page, session):
    # Sliders cannot leave the data range; a result for such a request (as the CLI can make) still warns.
    request = session.request("Li", {"average_voltage": 9.0})
    page.session_state["screen_result"] = session.screen(request, num_candidates=1, num_inference_steps=2)
    ok(page.run())
    assert any("beyond the training data" in w.value and "Average voltage 9" in w.value for w in page.warning)


def test_sensitivity_button_draws_a_bar_per_condition(page):
    page.number_input(key="screen_steps").set_value(2)
    page.button(key="screen_generate").click()  # submits the steps with the form
    ok(page.run())
    page.button(key="screen_sensitivity_button").click()
    ok(page.run())
    frame = page.session_state["screen_sensitivity"]["frame"]
    assert list(frame["condition"])[-1] == "working_ion" and len(frame) == 7
    assert frame.attrs["num_inference_steps"] == 2 and frame.attrs["scheduler"] == "dpm++"
    assert frame["mean"][:6].sum() == pytest.approx(1.0)  # the six properties; the ion swap stands apart
    bars = plotly_spec(page, "screen_sensitivity")["data"][0]
    assert bars["type"] == "bar" and len(bars["x"]) == 7
    assert bars["error_y"]["array"] and bars["error_y"]["visible"]


def test_model_quality_shows_headline_metrics_when_present(page, artifact_root):
    assert any("No metrics.json" in i.value for i in page.info)
    metrics_path = artifact_root / "checkpoints" / "screening" / "metrics.json"
    metrics = {"best_val_loss": 0.123, "epochs_run": 40, "n_train": 700,
               "test": {"loss": 0.125, "loss_unconditional": 0.14, "condition_gain": 0.015},
               "history": {"train_loss": [0.3, 0.2], "val_loss": [0.25, 0.123]},
               "evaluation": {"retrieval": {"generation_rank_by_score": {"top1": 0.4, "top5": 0.7}},
                              "sensitivity": {"labels": ["a", "b"], "mean": [0.6, 0.4], "std": [0.1, 0.1],
                                              "definition": "test definition"}},
               "guidance_sweep": {"rows": [{"guidance_scale": 2.0, "composition_mae": 0.12, "top1_score": 0.2},
                                           {"guidance_scale": 0.0, "composition_mae": 0.15, "top1_score": 0.1}],
                                  "definition": "sweep definition"}}
    metrics_path.write_text(json.dumps(metrics))
    try:
        ok(page.run())
        shown = {m.label: m.value for m in page.metric}
        assert shown["best validation loss"] == "0.123"
        assert shown["condition gain (loss drop from the condition)"] == "0.015"
        assert shown["retrieval top-5 (rank by score)"] == "0.7"
        assert shown["epochs run"] == "40"
        assert len(plotly_spec(page, "screen_quality_sensitivity")["data"][0]["x"]) == 2
        sweep = next(d.value for d in page.dataframe if "guidance" in d.value.columns)
        assert list(sweep["guidance"]) == [0.0, 2.0] and list(sweep["top-1 (score)"]) == [0.1, 0.2]
        assert any(c.value == "sweep definition" for c in page.caption)
    finally:
        metrics_path.unlink()


def test_without_a_screening_checkpoint_the_page_says_what_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(build_screening_root(tmp_path, with_screening=False)))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    assert any("python -m battgen train screening" in i.value for i in app.info)
    assert not app.button and not app.slider


def test_candidates_rank_by_property_match_unless_asked_otherwise(page):
    app = generate(page)
    assert app.selectbox(key="screen_rank_by").value == "property_match"
    candidates = result(app).candidates
    assert list(candidates["property_match"]) == sorted(candidates["property_match"], reverse=True)
    # The signed voltage difference is in the first table a person sees.
    assert "delta_voltage" in shown_table(app).columns
    app = generate(app, rank_by="composition_similarity")
    candidates = result(app).candidates
    assert result(app).settings["rank_by"] == "composition_similarity"
    assert list(candidates["composition_similarity"]) == sorted(candidates["composition_similarity"], reverse=True)


def test_model_quality_shows_the_shipped_models_baselines_and_condition_effect(page, artifact_root):
    # The shipped checkpoint's own metrics.json: the page must show the generator beside its baselines.
    shipped = json.loads((REPO / "checkpoints" / "screening" / "metrics.json").read_text())
    metrics_path = artifact_root / "checkpoints" / "screening" / "metrics.json"
    metrics_path.write_text(json.dumps(shipped))
    try:
        ok(page.run())
        tables = [d.value for d in page.dataframe]
        quality = next(t for t in tables if "predictor" in t.columns and "test_r2" in t.columns)
        assert {"generator", "per_ion_mean", "random_forest", "shuffled_condition"} <= set(quality["predictor"])
        test_r2 = dict(zip(quality["predictor"], quality["test_r2"]))
        assert test_r2["generator"] == pytest.approx(shipped["evaluation"]["conditional"]["test"]["generator"]["r2"])
        effect = next(t for t in tables if "split" in t.columns)
        assert set(effect["split"]) == {"train", "test"}
        # Where identity is decided: own vs shuffled condition vs the constant, per noise level and split.
        denoising = shipped["evaluation"]["denoising"]
        traces = plotly_spec(page, "screen_quality_denoising")["data"]
        own = [t for t in traces if t["name"] == "own condition"]
        assert len(own) == 2 and len(traces) == 6
        expected = sorted(denoising["test"]["rows"], key=lambda r: r["timestep"])
        assert own[1]["y"] == pytest.approx([r["own_mse"] for r in expected])
    finally:
        metrics_path.unlink()


def test_a_screening_request_can_be_handed_to_the_design_page(page):
    app = generate(page, average_voltage=3.1)
    request = result(app).request
    app.button(key="screen_to_design").click()
    app.run()
    # The Design page's own controls now hold the request (AppTest does not follow the page switch).
    assert app.session_state["design_ion"] == request.working_ion
    assert app.session_state["design_average_voltage"] == pytest.approx(request.properties["average_voltage"], abs=1e-3)
    assert app.session_state["design_capacity_grav"] == pytest.approx(request.properties["capacity_grav"], abs=1e-3)
