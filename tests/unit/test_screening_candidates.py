"""From generated samples to ranked real materials: requests, ranking, the CLI and the evaluation.

Ranking is checked with hand-made "generated" compositions (a real material's own counts must
bring it to the top); the CLI and the evaluation run end to end on a tiny untrained pipeline
over the shipped table (tests/screening_root.py).
"""

from __future__ import annotations

import subprocess
import sys

import json
from pathlib import Path

import numpy as np
import pytest

from battgen.afm.translate import LatentIndex
from battgen.cli import main as cli_main
from battgen.paths import REPO_ROOT as REPO
from battgen.data.properties import PROPERTY_NAMES
from battgen.data.table import composition_matrix, load_scaler, load_table
from battgen.screening.candidates import composition_distances, property_match, rank_candidates
from battgen.screening.request import ScreeningRequest, ion_medians
from tests.screening_root import build_screening_root

TABLE = load_table()
SCALER = load_scaler()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return build_screening_root(tmp_path_factory.mktemp("screening_root"))


def test_screening_defaults_and_cli_import_no_torch():
    # The defaults module is what the CLI's --help and the page read; it must stay cheap.
    code = ("import sys, battgen.screening.defaults, battgen.screening.commands; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_a_request_defaults_to_the_ion_medians_and_flags_values_beyond_the_data():
    request = ScreeningRequest.build(TABLE, SCALER, "Mg", {"average_voltage": 2.5, "capacity_grav": None})
    medians = ion_medians(TABLE, "Mg")
    assert request.properties["average_voltage"] == 2.5
    assert request.properties["capacity_grav"] == pytest.approx(medians["capacity_grav"])
    assert medians["capacity_grav"] != pytest.approx(ion_medians(TABLE, "Cs")["capacity_grav"])
    assert request.outside_range == ()
    high = SCALER.high[SCALER.names.index("average_voltage")]
    far = ScreeningRequest.build(TABLE, SCALER, "Li", {"average_voltage": high + 5})
    assert far.outside_range == ("average_voltage",)
    assert "beyond the training data" in far.describe_outside(SCALER)
    with pytest.raises(ValueError, match="unknown properties"):
        ScreeningRequest.build(TABLE, SCALER, "Li", {"voltage": 3.0})
    with pytest.raises(ValueError, match="finite"):
        ScreeningRequest.build(TABLE, SCALER, "Li", {"average_voltage": float("nan")})
    with pytest.raises(ValueError, match="unknown working ion"):
        ScreeningRequest.build(TABLE, SCALER, "Xx")


def test_a_material_s_own_composition_and_properties_rank_it_first():
    target = TABLE[TABLE["working_ion"] == "Na"].iloc[7]
    request = ScreeningRequest("Na", {n: float(target[n]) for n in PROPERTY_NAMES})
    other = TABLE[(TABLE["working_ion"] == "Na") & (TABLE["formula_discharge"] != target["formula_discharge"])].iloc[0]
    generated = np.stack([np.asarray(target["composition"], np.float64) * 2,  # same material, doubled cell
                          np.asarray(other["composition"], np.float64)])
    samples, candidates = rank_candidates(TABLE, SCALER, request, generated, k=3)
    assert len(samples) == 2 and samples["nearest_by_composition"].iat[0] in set(
        TABLE.loc[TABLE["formula_discharge"] == target["formula_discharge"], "id"])
    assert candidates["id"].is_unique and (candidates["working_ion"] == "Na").all()
    assert candidates["rank"].tolist() == list(range(1, len(candidates) + 1))
    top = candidates.iloc[0]
    assert top["id"] == target["id"]
    assert top["composition_similarity"] == pytest.approx(1.0) and top["property_match"] == pytest.approx(1.0)
    # The default order is the property match; every Na electrode of the table is a candidate.
    assert candidates["property_match"].is_monotonic_decreasing
    assert len(candidates) == int((TABLE["working_ion"] == "Na").sum())
    by_score = rank_candidates(TABLE, SCALER, request, generated, k=3, rank_by="score")[1]
    assert by_score["score"].is_monotonic_decreasing and by_score.iloc[0]["id"] == target["id"]
    with pytest.raises(ValueError, match="rank_by"):
        rank_candidates(TABLE, SCALER, request, generated, rank_by="nonsense")


def test_composition_distance_and_property_match_are_bounded_and_exact_at_identity():
    rows = TABLE.head(5)
    d = composition_distances(composition_matrix(rows), rows)
    assert np.allclose(np.diag(d), 0.0) and ((d >= 0) & (d <= 1 + 1e-9)).all()
    match = property_match(rows, {n: float(rows.iloc[0][n]) for n in PROPERTY_NAMES}, SCALER)
    assert match[0] == pytest.approx(1.0) and ((match >= 0) & (match <= 1)).all() and (match[1:] < 1).all()


def test_latent_distances_agree_with_nearest_and_respect_the_ion():
    rng = np.random.default_rng(0)
    ids = np.array(["a", "a", "b", "c"])
    index = LatentIndex(rng.normal(size=(4, 8)).astype(np.float32), ids, np.array([0, 1, 0, 0]),
                        np.array(["train"] * 4), np.array(["Li", "Li", "Li", "Na"]))
    query = rng.normal(size=(2, 8)).astype(np.float32)
    frame = index.distances(query)
    for j in range(2):
        nearest = index.nearest(query[j], k=3)
        assert np.allclose(frame.loc[nearest["id"], j].to_numpy(), nearest["latent_distance"].to_numpy(), atol=1e-5)
    assert set(index.distances(query, ion="Li").index) == {"a", "b"}


def test_a_per_material_mean_index_holds_each_materials_mean_latent():
    rng = np.random.default_rng(1)
    ids = np.array(["a", "b", "a", "c", "a"])
    mu = rng.normal(size=(5, 8)).astype(np.float32)
    index = LatentIndex(mu, ids, np.arange(5), np.array(["train"] * 5), np.array(["Li", "Na", "Li", "Li", "Li"]))
    means = index.per_material_mean()
    assert list(means.material_id) == ["a", "b", "c"]
    assert np.allclose(means.mu[0], mu[[0, 2, 4]].mean(axis=0), atol=1e-6) and np.allclose(means.mu[1], mu[1])
    assert list(means.working_ion) == ["Li", "Na", "Li"]
    # A material's own mean latent is its nearest neighbour at distance zero.
    assert means.nearest(mu[[0, 2, 4]].mean(axis=0), k=1)["id"].iloc[0] == "a"


def test_the_session_indexes_mean_latents_for_a_model_trained_on_them(root, tmp_path):
    import json
    import shutil

    from battgen.screening.session import SCREENING_DIR, ScreeningSession, training_targets

    assert training_targets(root / SCREENING_DIR) == "all"  # the toy checkpoint says nothing: per view
    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    latents = copy / "checkpoints" / "translator" / "latents.npz"
    with np.load(latents) as z:  # two views per material, so a per-material mean differs from a view
        stored = {k: z[k] for k in z.files}
    rng = np.random.default_rng(2)
    second = (stored["mu"] + rng.normal(size=stored["mu"].shape)).astype(stored["mu"].dtype)
    doubled = {k: (np.concatenate([v, v]) if v.ndim and k != "mu" else v) for k, v in stored.items()}
    doubled["mu"] = np.concatenate([stored["mu"], second])
    np.savez_compressed(latents, **doubled)
    per_view = ScreeningSession.load(copy).latent_index
    (copy / SCREENING_DIR / "metadata.json").write_text(json.dumps({"config": {"targets": "mean"}}))
    per_material = ScreeningSession.load(copy).latent_index
    assert len(per_view.mu) == 2 * len(per_material.mu) and len(per_material.mu) == len(set(per_view.material_id))
    first = per_material.material_id[0]
    views = per_view.mu[per_view.material_id == first]
    assert np.allclose(per_material.mu[0], views.mean(axis=0), atol=1e-3)


def test_screen_cli_prints_json_with_defaults_timing_and_candidates_of_the_ion(root, capsys):
    code = cli_main(["screen", "--root", str(root), "--ion", "Mg", "--voltage", "2.5", "--steps", "3",
                     "--num-candidates", "2", "--json", "--top", "4"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["request"]["average_voltage"] == 2.5
    assert result["request"]["capacity_grav"] == pytest.approx(ion_medians(TABLE, "Mg")["capacity_grav"])
    assert result["wall_time_s"] > 0 and result["settings"]["scheduler"] == "dpm++"
    assert len(result["samples"]) == 2 and 1 <= len(result["candidates"]) <= 4
    assert {c["working_ion"] for c in result["candidates"]} == {"Mg"}
    assert {"score", "property_match", "composition_similarity"} <= set(result["candidates"][0])


def test_screen_cli_without_a_checkpoint_says_what_to_train(tmp_path, capsys):
    code = cli_main(["screen", "--root", str(tmp_path), "--ion", "Li"])
    assert code == 2
    assert "train screening" in capsys.readouterr().err


def test_evaluation_reports_every_metric_and_the_exact_property_lookup_wins_retrieval(root):
    from battgen.eval.screening_metrics import evaluate_screening
    from battgen.screening.session import ScreeningSession

    session = ScreeningSession.load(root)
    table = session.table
    first = table[table["split"] == "test"].head(3)
    afm = {mid: np.zeros((2, 16, 16, 6), np.float32) for mid in first["id"]}
    metrics = evaluate_screening(session.pipeline, table, session.scaler, latent_index=session.latent_index,
                                 afm_descriptors=afm, samples_per_material=2, num_inference_steps=2, max_materials=3)
    assert metrics["materials"] == 3
    assert set(metrics["composition"]["per_ion"]) == set(first["working_ion"])
    # Looking up a stored material's own properties finds it: the baseline is exact by construction.
    assert metrics["retrieval"]["baseline_nearest_by_properties"]["top1"] == 1.0
    loo = metrics["leave_one_out_top1"]
    assert 0 <= loo["generation_rank_by_score"]["jaccard"] <= 1
    assert loo["oracle_true_composition"]["composition_distance"] <= loo["generation_rank_by_score"]["composition_distance"] + 1e-9
    assert -1 <= metrics["descriptors"]["ssim_best_of_k"] <= 1
    assert metrics["descriptors"]["ssim_best_of_k"] >= metrics["descriptors"]["ssim_mean"]
    assert "vs_true_material" in metrics["composition_shuffled_condition_control"]


def test_guidance_sweep_cli_stores_one_row_per_scale_and_guidance_changes_the_samples(root, capsys):
    from battgen.viz.screening import guidance_sweep_table

    metrics_path = root / "checkpoints" / "screening" / "metrics.json"
    try:
        code = cli_main(["eval", "guidance-sweep", "--root", str(root), "--scales", "3", "0", "--max-materials", "3",
                         "--samples", "2", "--steps", "2"])
        assert code == 0
        sweep = json.loads(metrics_path.read_text())["guidance_sweep"]
    finally:
        metrics_path.unlink(missing_ok=True)
    assert [r["guidance_scale"] for r in sweep["rows"]] == [3.0, 0.0]
    assert sweep["settings"]["materials"] == 3 and sweep["settings"]["num_inference_steps"] == 2
    unconditional, guided = sweep["rows"][1], sweep["rows"][0]
    # Same materials and noise: only the guidance differs, and it must reach the samples.
    assert unconditional["composition_mae"] != guided["composition_mae"]
    assert all(np.isfinite(v) for row in sweep["rows"] for v in row.values() if v is not None)
    table = guidance_sweep_table(sweep)
    assert list(table["guidance"]) == [0.0, 3.0] and "composition MAE (atoms)" in table.columns


def test_guidance_sweep_rejects_negative_scales(root):
    from battgen.eval.screening_metrics import guidance_sweep
    from battgen.screening.session import ScreeningSession

    session = ScreeningSession.load(root)
    with pytest.raises(ValueError, match="guidance"):
        guidance_sweep(session.pipeline, session.table, session.scaler, [1.0, -1.0], max_materials=1)
