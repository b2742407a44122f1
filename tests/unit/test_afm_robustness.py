"""The robustness table of the shipped models, on the shipped (test-split) example views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from battgen.afm.distortions import Distortion

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    import torch

    from battgen.afm.loader import load_afm_dataset
    from battgen.afm.ood import LatentDensity
    from battgen.afm.robustness import robustness_table
    from battgen.models.atom_regressor import AtomRegressor
    from battgen.models.translator import AFMTranslator

    torch.set_num_threads(1)
    with np.load(REPO / "assets" / "afm" / "examples.npz", allow_pickle=False) as z:
        n = len(z["stacks"])
        path = tmp_path_factory.mktemp("heldout") / "dataset.npz"
        np.savez(path, stacks=z["stacks"], descriptors=z["descriptors"], material=np.arange(n),
                 rotation=z["rotation"], working_ion=z["working_ion"], split=np.full(n, "test"),
                 composition=z["composition"], material_ids=z["material_id"])
    data = load_afm_dataset(path, required_splits=("test",))
    translator = AFMTranslator.from_pretrained(REPO / "checkpoints" / "translator").eval()
    regressor = AtomRegressor.from_pretrained(REPO / "checkpoints" / "atom_regressor").eval()
    density = LatentDensity.load(REPO / "checkpoints" / "translator")
    # SNR 3 is inside the range the robust encoder was trained on, SNR 1 is beyond it.
    distortions = (Distortion("white noise SNR 3", "gaussian", 3.0, "SNR"),
                   Distortion("white noise SNR 1", "gaussian", 1.0, "SNR"),
                   Distortion("offset 12 px", "offset", 12.0, "px"),
                   Distortion("quarter turn", "rotation", 90.0, "deg"))
    result = robustness_table(translator, regressor, density, data, distortions=distortions,
                              stored_latents=REPO / "checkpoints" / "translator" / "latents.npz")
    return result, data, translator


def test_clean_row_is_the_translator_on_the_stacks_as_they_are(table):
    from battgen.eval.afm_metrics import ssim

    result, data, translator = table
    clean = result["rows"][0]
    descriptors, _ = translator.translate(data.stacks)
    assert clean["condition"] == "clean" and clean["ssim_drop"] == 0.0
    assert clean["ssim_mean"] == pytest.approx(float(ssim(data.descriptors, descriptors).mean()), abs=1e-9)
    assert clean["ood_detection_rate"] == 0.0  # the shipped examples are in distribution
    assert result["views"] == len(data) and result["materials"] == len(data)


def test_the_held_out_stacks_are_checked_against_the_latents_the_trainer_stored(table):
    result, data, _ = table
    check = result["reproduces_stored_latents"]
    # The shipped examples are test-split views of the training campaign: their latents were stored.
    assert check["views_matched"] == check["of"] == len(data) and check["splits"] == ["test"]
    # The stored latents are the type-map translator's; the shipped robust encoder was fine-tuned to
    # keep clean stacks where it put them (measured: 9 % of the latent RMS). Another view is ~100 % away.
    assert check["rms_latent_difference"] < 0.15 * check["stored_latent_rms"]


def test_distorted_rows_lose_quality_and_are_warned_about(table):
    result, _, _ = table
    clean, noisy, noisier, offset, _ = result["rows"]
    for row in (noisy, noisier, offset):
        assert row["ssim_drop"] == pytest.approx(clean["ssim_mean"] - row["ssim_mean"])
        assert row["composition_r2_drop"] == pytest.approx(clean["composition_r2"] - row["composition_r2"])
    # Noise the robust encoder learnt to read as the clean stack: within issue 16's SSIM bar, not warned.
    assert noisy["ssim_drop"] < 0.05 and noisy["ood_detection_rate"] == 0.0
    # Noise beyond what it saw (SNR 2-30) costs the descriptors more than noise within it, and the
    # composition too (measured on these examples, four-stage encoder, session 14's regressor read
    # once: SSIM drop 0.013 at SNR 3, 0.044 at SNR 1; composition R² 0.64 -> 0.50 / 0.56: on ten
    # views R² swings by ~0.1 with the noise drawn,
    # so only the SSIM order is asserted). The latent score mostly misses it, since the encoder maps it
    # onto ordinary latents (1 of 10 called unusual at SNR 1, 9 at 0.7, all at 0.5, 9 warned outright
    # at 0.3); the stack's own noise estimate flags every view.
    assert noisier["ssim_drop"] > noisy["ssim_drop"] + 0.02 and noisier["composition_r2_drop"] > 0.05
    from battgen.afm.distortions import gaussian_noise
    from battgen.afm.noise import NoiseCheck

    _, data, _ = table
    rng = np.random.default_rng(1)
    assert all(NoiseCheck.of(gaussian_noise(s, 1.0, rng)).too_noisy for s in data.stacks)
    assert not any(NoiseCheck.of(gaussian_noise(s, 3.0, rng)).too_noisy for s in data.stacks)
    assert not any(NoiseCheck.of(s).too_noisy for s in data.stacks)


def test_a_quarter_turned_scan_reads_the_same_composition_and_one_reading_would_not(table):
    result, _, _ = table
    clean, turned = result["rows"][0], result["rows"][-1]
    # The composition is the mean over the eight orientations, which a quarter turn only reorders.
    assert turned["composition_r2"] == pytest.approx(clean["composition_r2"], abs=1e-4)
    assert abs(turned["composition_r2_drop"]) < 1e-4
    # Read from the stack as given alone it changes: the models learnt the campaign's frame.
    assert abs(turned["composition_r2_as_given"] - clean["composition_r2_as_given"]) > 0.01
    # The descriptors turn with the sample and are scored against the turned truth.
    assert turned["ssim_drop"] < 0.05


def test_the_table_is_json_and_the_page_frame_reads_it(table, tmp_path):
    from battgen.afm.robustness import ROBUSTNESS_FILENAME
    from battgen.eval.afm_report import robustness_frame

    result, _, _ = table
    (tmp_path / ROBUSTNESS_FILENAME).write_text(json.dumps(result))
    frame, about = robustness_frame(tmp_path)
    assert list(frame["condition"]) == ["clean", "white noise SNR 3", "white noise SNR 1", "offset 12 px",
                                        "quarter turn"]
    assert {"SSIM", "SSIM drop", "composition R²", "R² drop", "OOD warned (%)"} <= set(frame.columns)
    assert frame["OOD unusual or warned (%)"].iloc[2] == pytest.approx(100 * result["rows"][2]["ood_caution_rate"])
    # every SNR-1 view is flagged by its own noise estimate, no clean or SNR-3 view
    assert frame["too noisy (%)"].tolist() == [0.0, 0.0, 100.0, 0.0, 0.0] and "too noisy = %" in about
    assert "composition R², stack as given only" in frame.columns
    assert (frame["views"] == result["views"]).all()
    drops_ok = [r["ssim_drop"] <= 0.05 and r["composition_r2_drop"] <= 0.1 for r in result["rows"][1:]]
    assert frame["within the bar"].tolist() == [""] + ["yes" if ok else "no" for ok in drops_ok]
    assert "test-split views" in about and "99th percentile" in about
    assert robustness_frame(tmp_path / "none") is None


def test_translators_trained_on_different_datasets_are_flagged(tmp_path):
    from battgen.artifacts import write_metadata, write_metrics
    from battgen.eval.afm_report import different_training_data

    def checkpoint(name: str, data: bytes, n_train: int) -> Path:
        source = tmp_path / f"{name}.npz"
        source.write_bytes(data)
        folder = tmp_path / name
        write_metadata(folder, command="python -m battgen train translator", config={}, seed=0,
                       inputs=[source], wall_time_s=1.0)
        write_metrics(folder, {"n_train": n_train, "n_test": n_train // 4})
        return folder

    same = {"a": checkpoint("a", b"one dataset", 400), "b": checkpoint("b", b"one dataset", 400)}
    assert different_training_data(same) is None
    other = {"translator": same["a"], "translator_noadv": checkpoint("c", b"an older dataset", 120)}
    caveat = different_training_data(other)
    assert "different AFM datasets" in caveat and "120 training and 30 test views" in caveat
    assert different_training_data({"translator": same["a"], "missing": tmp_path / "nothing"}) is None
