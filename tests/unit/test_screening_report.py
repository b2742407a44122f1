"""Conditional evaluation of the screening generator, its baselines and the report tables.

A tiny untrained pipeline on the real electrode table (tests/screening_root.py): the numbers
say nothing about model quality; the tests check what is compared with what.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.screening_root import build_screening_root

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from battgen.screening.session import ScreeningSession

    root = build_screening_root(tmp_path_factory.mktemp("root"))
    return ScreeningSession.load(root, device="cpu")


@pytest.fixture(scope="module")
def conditional(session):
    from battgen.eval.screening_conditional import conditional_evaluation

    return conditional_evaluation(session.pipeline, session.table, session.scaler,
                                  latent_index=session.latent_index, max_materials=12, samples=2,
                                  sampler="ddim", num_inference_steps=2, guidance_scale=2.0)


def test_shuffled_partners_are_derangements_within_their_groups():
    from battgen.eval.screening_conditional import shuffled_partner

    rng = np.random.default_rng(0)
    groups = np.array(["Li"] * 5 + ["Na"] * 3 + ["K"])
    partner = shuffled_partner(rng, len(groups), groups)
    assert (partner[:8] != np.arange(8)).all() and partner[8] == 8  # a lone K keeps itself
    assert (groups[partner] == groups).all()
    assert sorted(partner) == list(range(len(groups)))
    assert (shuffled_partner(rng, 7) != np.arange(7)).all()


def test_baselines_fit_on_train_and_lookups_leave_the_material_out(session):
    from battgen.data.table import composition_matrix
    from battgen.eval.screening_baselines import BASELINES, baseline_predictions

    table = session.table
    train = table[table["split"] == "train"].head(20).reset_index(drop=True)
    predictions = baseline_predictions(table, session.scaler, train)
    assert set(predictions) == set(BASELINES)
    truth = composition_matrix(train)
    # In-sample, the nearest material by properties would be the material itself.
    assert not np.allclose(predictions["nearest_by_properties"], truth)
    li = train["working_ion"].to_numpy() == "Li"
    all_train = table[table["split"] == "train"]
    np.testing.assert_allclose(predictions["per_ion_mean"][li][0],
                               composition_matrix(all_train[all_train["working_ion"] == "Li"]).mean(axis=0))


def test_conditional_evaluation_scores_both_splits_beside_the_baselines(conditional):
    for split in ("train", "test"):
        result = conditional[split]
        assert result["materials"] == 12 and result["samples_per_material"] == 2
        assert np.isfinite(result["generator"]["r2"]) and np.isfinite(result["shuffled_condition"]["r2"])
        effect = result["condition_vs_noise"]
        assert effect["noise_effect_latent_l2"] > 0
        assert effect["ratio_latent"] == pytest.approx(
            effect["condition_effect_latent_l2"] / effect["noise_effect_latent_l2"])
        rank = result["rank_of_true_material"]
        assert 1 <= rank["median_rank_by_latent"] <= rank["median_pool_size"]
        assert rank["chance_median_rank"] > 1
        assert set(result["baselines"]) >= {"per_ion_mean", "random_forest", "knn5"}
        # The consensus averages a material's draws: by Jensen its error cannot exceed the draws' mean error.
        consensus = result["generator_consensus"]
        assert consensus["n_views"] == 12
        assert consensus["mse"] <= result["generator"]["mse"] + 1e-12


def test_report_tables_lay_the_model_beside_its_control_and_baselines(conditional, tmp_path):
    from battgen.artifacts import write_metrics
    from battgen.eval.screening_report import condition_effect_table, quality_table

    metrics = {"evaluation": {"conditional": conditional}}
    table = quality_table(metrics)
    assert list(table["predictor"][:4]) == ["generator", "generator_consensus", "shuffled_condition",
                                            "random_forest"]
    assert list(table["kind"][:3]) == ["model", "model", "control"]
    generator = table.set_index("predictor").loc["generator"]
    assert generator["test_r2"] == pytest.approx(conditional["test"]["generator"]["r2"])
    forest = table.set_index("predictor").loc["random_forest"]
    assert forest["train_mae"] == pytest.approx(conditional["train"]["baselines"]["random_forest"]["mae"])
    effects = condition_effect_table(metrics)
    assert list(effects["split"]) == ["train", "test"]
    assert effects["ratio_latent"].notna().all()
    write_metrics(tmp_path, metrics)
    pd.testing.assert_frame_equal(quality_table(tmp_path), table)
    with pytest.raises(ValueError, match="no conditional evaluation"):
        quality_table({"evaluation": {}})


def test_ablation_rows_carry_the_conditional_metrics_and_tabulate(conditional):
    from battgen.eval.screening_ablation import VARIANTS, ablation_row
    from battgen.eval.screening_report import ABLATION_COLUMNS, ablation_table

    train_metrics = {"steps": 132, "epochs_run": 12, "best_epoch": 8, "best_val_composition_r2": 0.1}
    description, options = VARIANTS["E_v_zsnr_zscore_minsnr_canon"]
    row = ablation_row("E_v_zsnr_zscore_minsnr_canon", description, options, train_metrics, conditional, 3.0)
    assert row["test_r2"] == conditional["test"]["generator"]["r2"]
    assert row["train_shuffled_r2"] == conditional["train"]["shuffled_condition"]["r2"]
    table = ablation_table({"ablation": {"rows": [row, {**row, "variant": "other"}]}})
    assert list(table.columns) == list(ABLATION_COLUMNS) and list(table["variant"]) == [row["variant"], "other"]
    with pytest.raises(ValueError, match="no ablation"):
        ablation_table({})


def test_eval_screening_cli_takes_sampler_and_writes_the_conditional_block(tmp_path, capsys):
    from battgen.cli import main
    from battgen.eval.screening_report import quality_table

    root = build_screening_root(tmp_path)
    code = main(["eval", "screening", "--root", str(root), "--sampler", "ddim", "--steps", "2", "--samples", "1",
                 "--max-materials", "4", "--sensitivity-seeds", "0", "--conditional-samples", "2",
                 "--denoising-materials", "3"])
    assert code == 0
    table = quality_table(root / "checkpoints" / "screening")
    assert table.set_index("predictor").loc["generator", ["train_r2", "test_r2"]].notna().all()
    metrics = json.loads((root / "checkpoints" / "screening" / "metrics.json").read_text())
    assert metrics["evaluation"]["denoising"]["test"]["materials"] == 3
    # The denoising check alone refreshes its block and keeps the rest of the evaluation.
    assert main(["eval", "screening-denoising", "--root", str(root), "--materials", "5"]) == 0
    metrics = json.loads((root / "checkpoints" / "screening" / "metrics.json").read_text())
    assert metrics["evaluation"]["denoising"]["train"]["materials"] == 5 and "conditional" in metrics["evaluation"]
    with pytest.raises(SystemExit):
        main(["eval", "screening", "--root", str(root), "--scheduler", "ddim"])
    assert "unrecognized arguments: --scheduler" in capsys.readouterr().err


def test_the_page_is_warned_when_generated_compositions_lose_to_the_per_ion_mean():
    from battgen.eval.screening_report import below_baseline_warning

    def metrics(generator: float) -> dict:
        return {"evaluation": {"conditional": {"test": {
            "generator": {"r2": generator, "mae": 0.1},
            "baselines": {"per_ion_mean": {"r2": 0.18, "mae": 0.1}}}}}}

    warning = below_baseline_warning(metrics(0.14))
    assert "R² 0.14 vs 0.18" in warning and "real, computed properties" in warning
    assert below_baseline_warning(metrics(0.25)) is None
    assert below_baseline_warning({}) is None
