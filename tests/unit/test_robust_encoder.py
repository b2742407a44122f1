"""The robust-encoder fine-tune (battgen/train/robust_encoder.py) on tiny inputs: what it trains,
what it keeps, what it writes, and the distorted/reference pairs it learns from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from battgen.afm.augment import TRAINING_RANGES, distorted_pairs
from battgen.models.translator import AFMTranslator
from tests.unit.test_translator import GRID, write_afm_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_translator(out, data):
    """A one-epoch translator on the tiny dataset: the teacher, or the encoder of distorted views."""
    from battgen.cli import main

    assert main(["train", "translator", "--out", str(out), "--data", str(data), "--epochs", "1", "--batch-size", "4",
                 "--channels", "8,16,32", "--device", "cpu", "--no-progress", "--no-adversarial"]) == 0
    return out


def test_pairs_keep_the_reference_clean_and_moved_with_the_sample():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:GRID, 0:GRID] / GRID
    blob = np.exp(-((y - 0.3) ** 2 + (x - 0.4) ** 2) / 0.02)
    stacks = np.repeat(np.stack([blob * (k + 1) for k in range(10)], -1)[None], 60, 0) * 0.2 - 1
    distorted, reference, kinds = distorted_pairs(stacks.astype(np.float32), rng)
    assert set(kinds) == set(TRAINING_RANGES) and distorted.shape == reference.shape == stacks.shape
    assert reference.min() >= -1 and reference.max() <= 1
    for d, r, s, kind in zip(distorted, reference, stacks, kinds):
        if kind in ("gaussian", "pink", "tip_height"):
            # the sample did not move: the reference is the clean stack itself (min-max normalised)
            np.testing.assert_allclose(r, (s - s.min()) / (s.max() - s.min()) * 2 - 1, atol=1e-5)
            assert not np.allclose(d, r)
        elif kind in ("offset", "rotation"):
            np.testing.assert_allclose(d, r, atol=1e-5)  # a pure move: nothing to undo
        else:  # drift: the reference sits at the sample's mean position, between the heights' positions
            assert not np.allclose(d, r)


def test_the_student_keeps_the_decoder_and_the_teachers_files_and_never_ships_worse(tmp_path, capsys):
    from battgen.cli import main

    data = write_afm_dataset(tmp_path / "data", n=24)
    teacher, student = tiny_translator(tmp_path / "teacher", data), tmp_path / "student"
    capsys.readouterr()
    assert main(["train", "robust-encoder", "--teacher", str(teacher), "--out", str(student), "--data", str(data),
                 "--eval-data", str(data), "--epochs", "3", "--batch-size", "4", "--lr", "1e-3",
                 "--device", "cpu", "--no-progress", "--patience", "0"]) == 0
    out = capsys.readouterr().out
    assert "validation latent MSE" in out and "clean test SSIM, teacher -> student" in out

    metrics = json.loads((student / "metrics.json").read_text())
    robust = metrics["robust_encoder"]
    assert robust["epochs_run"] == 3 and len(robust["history"]["val_clean_mse"]) == 3
    assert robust["history"]["val_clean_mse"][0] > 0  # the encoder was trained: clean latents moved

    a, b = AFMTranslator.from_pretrained(teacher).state_dict(), AFMTranslator.from_pretrained(student).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("decoder.", "post_quant_conv.")))
    # The saved encoder is the best epoch's, or the teacher's when no epoch beat it (best_epoch 0):
    # a fine-tune never ships an encoder worse than its teacher on the validation objective.
    same_encoder = all(torch.equal(a[k], b[k]) for k in a if k.startswith(("encoder.", "quant_conv.")))
    assert same_encoder == (robust["best_epoch"] == 0)
    before, after = robust["validation_before"], robust["validation"]
    assert after["distorted_mse"] + after["clean_mse"] <= before["distorted_mse"] + before["clean_mse"] + 1e-9
    assert (student / "latents.npz").read_bytes() == (teacher / "latents.npz").read_bytes()
    assert "_name_or_path" not in json.loads((student / "config.json").read_text())  # no machine paths shipped
    assert before["distorted_mse"] == pytest.approx(before["distorted_mse_teacher"])
    assert set(after["per_kind"]) <= set(TRAINING_RANGES)
    assert {"per_descriptor", "type_map"} <= set(metrics["test"]) and "test_teacher" in metrics
    assert metrics["n_test"] == 6
    from battgen.eval.afm_report import robust_encoder_tables

    kinds, clean, about = robust_encoder_tables(metrics)  # what the page's Model quality tab shows
    assert set(kinds["distortion"]) == set(after["per_kind"]) and len(clean) == 6
    assert {"latent MSE before", "latent MSE after"} <= set(kinds.columns)
    assert {"SSIM before", "SSIM after"} <= set(clean.columns) and "decoder frozen" in about
    assert robust_encoder_tables({"test": metrics["test"]}) is None
    meta = json.loads((student / "metadata.json").read_text())
    assert meta["command"].startswith("python -m battgen train robust-encoder")
    assert meta["copied_from_teacher"] == ["latents.npz"]

    # A second stage continues from the student towards the same teacher, on the same validation pairs,
    # and may replace it in place (the Makefile's second stage does).
    stage2 = student
    assert main(["train", "robust-encoder", "--teacher", str(teacher), "--init-from", str(student), "--out",
                 str(stage2), "--data", str(data), "--epochs", "1", "--batch-size", "4", "--lr", "1e-3",
                 "--device", "cpu", "--no-progress", "--pink-weight", "2"]) == 0
    second = json.loads((stage2 / "metrics.json").read_text())["robust_encoder"]
    assert second["validation_before"]["distorted_mse"] == pytest.approx(after["distorted_mse"], rel=1e-4)
    assert second["validation_before"]["distorted_mse_teacher"] == pytest.approx(before["distorted_mse_teacher"])
    assert second["earlier_stages"][0]["epochs_run"] == 3
    # each stage records how often it drew each kind: evenly, then 1/f noise twice as often
    assert second["earlier_stages"][0]["kind_probabilities"]["pink"] == pytest.approx(1 / 6, abs=1e-4)
    assert second["kind_probabilities"]["pink"] == pytest.approx(2 / 7, abs=1e-4)
    assert "--pink-weight 2.0" in json.loads((stage2 / "metadata.json").read_text())["command"]
    assert second["total_train_seconds"] == pytest.approx(second["train_seconds"] + robust["train_seconds"])
    caption = robust_encoder_tables(json.loads((stage2 / "metrics.json").read_text()))[2]
    assert "2 stages of 3 + 1 epochs, best" in caption and "stage 2 drew 1/f noise in 29% of its pairs" in caption
    assert "drew 1/f" not in robust_encoder_tables(metrics)[2]  # evenly drawn: nothing to say
    # A translator with another decoder reads another latent space: not a student of this teacher.
    other = tmp_path / "other"
    assert main(["train", "translator", "--out", str(other), "--data", str(data), "--epochs", "1", "--batch-size", "4",
                 "--channels", "8,16,32", "--device", "cpu", "--no-progress", "--no-adversarial", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "robust-encoder", "--teacher", str(teacher), "--init-from", str(other), "--out",
                 str(tmp_path / "stage3"), "--data", str(data), "--epochs", "1", "--device", "cpu",
                 "--no-progress"]) != 0
    assert "not a student of this teacher" in capsys.readouterr().err and not (tmp_path / "stage3").exists()


def test_a_missing_teacher_is_an_error_and_writes_nothing(tmp_path, capsys):
    from battgen.cli import main

    data = write_afm_dataset(tmp_path / "data")
    assert main(["train", "robust-encoder", "--teacher", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "student"), "--data", str(data), "--device", "cpu", "--no-progress"]) != 0
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()


def test_the_regressor_trains_on_distorted_copies_of_training_views_only(tmp_path, capsys):
    from battgen.cli import main

    data = write_afm_dataset(tmp_path / "data", n=24)
    translator, regressor = tiny_translator(tmp_path / "translator", data), tmp_path / "regressor"
    common = ["--data", str(data), "--translator", str(translator), "--epochs", "2", "--device", "cpu",
              "--no-progress"]
    assert main(["train", "atom-regressor", "--out", str(regressor), *common, "--distorted-data", str(data),
                 "--distorted-copies", "2", "--pink-weight", "3"]) == 0
    metrics = json.loads((regressor / "metrics.json").read_text())
    train_views = 12  # the tiny dataset's split pattern puts half its views in train
    assert metrics["n_train_distorted"] == 2 * train_views and metrics["n_train"] == 3 * train_views
    assert metrics["n_test"] == 6
    meta = json.loads((regressor / "metadata.json").read_text())
    assert meta["config"]["distorted_copies"] == 2 and meta["config"]["pink_weight"] == 3.0
    assert meta["command"].endswith("--pink-weight 3.0 --turned-copies 0")  # options in their order, all recorded

    # distorted views of a material the regressor is tested on would leak the test split into training
    leaky = write_afm_dataset(tmp_path / "leaky", n=24, split=np.full(24, "train"))
    capsys.readouterr()
    assert main(["train", "atom-regressor", "--out", str(tmp_path / "leak"), *common,
                 "--distorted-data", str(leaky)]) != 0
    assert "validation or test materials" in capsys.readouterr().err
    assert not (tmp_path / "leak").exists()


def test_turned_copies_are_the_training_views_in_the_orientations_the_campaign_never_images(tmp_path, capsys):
    from battgen.afm.orientations import ORIENTATIONS, turn
    from battgen.cli import main
    from battgen.models.translator import AFMTranslator
    from battgen.train.atom_regressor import turned_inputs

    data = write_afm_dataset(tmp_path / "data", n=24)
    translator = tiny_translator(tmp_path / "translator", data)
    turned = turned_inputs(translator, data, 2, 0, torch.device("cpu"))
    train_views = 12
    assert turned.latents.shape[0] == 2 * train_views and set(turned.split) == {"train"}
    # Each latent is the translator's reading of its view in one of the seven other orientations.
    model = AFMTranslator.from_pretrained(translator).eval()
    with np.load(data / "dataset.npz") as z:
        first = z["stacks"][np.flatnonzero(z["split"] == "train")[0]].astype(np.float32)
    readings = [model.latent_means(np.ascontiguousarray(turn(first, *o))[None])[0] * model.config.scaling_factor
                for o in ORIENTATIONS]
    distances = [np.abs(turned.latents[0] - r).max() for r in readings]
    assert min(distances) < 1e-4 and int(np.argmin(distances)) != 0

    regressor = tmp_path / "regressor"
    common = ["--data", str(data), "--translator", str(translator), "--epochs", "2", "--device", "cpu",
              "--no-progress"]
    assert main(["train", "atom-regressor", "--out", str(regressor), *common, "--distorted-data", str(data),
                 "--distorted-copies", "1", "--turned-copies", "2"]) == 0
    metrics = json.loads((regressor / "metrics.json").read_text())
    assert metrics["n_train_turned"] == 2 * train_views and metrics["n_train"] == 4 * train_views
    assert json.loads((regressor / "metadata.json").read_text())["command"].endswith("--turned-copies 2")
    capsys.readouterr()
    assert main(["train", "atom-regressor", "--out", str(tmp_path / "none"), *common, "--turned-copies", "2"]) != 0
    assert "--turned-copies needs --distorted-data" in capsys.readouterr().err


def test_views_imaged_with_another_instrument_train_and_score_the_student_by_material(tmp_path, capsys):
    from battgen.afm.dataset import CampaignPlan
    from battgen.afm.formats.grid import to_unit_range
    from battgen.cli import main

    n = 24
    ids = np.array([f"mat-{i}" for i in range(n // 2)])
    data = write_afm_dataset(tmp_path / "data", n=n, material_ids=ids)
    with np.load(data / "dataset.npz") as z:
        arrays = {k: z[k] for k in z.files}
    # "Another probe": a monotone remap of every stack, renormalised as a simulated stack is.
    arrays["stacks"] = np.stack([to_unit_range(np.sign(s) * np.abs(s.astype(np.float32)) ** 0.5)
                                 for s in arrays["stacks"]]).astype(np.float16)
    variant = tmp_path / "instruments" / "xe"
    variant.mkdir(parents=True)
    np.savez(variant / "dataset.npz", **arrays)
    (variant / "metadata.json").write_text(json.dumps({"config": CampaignPlan(keep=2, probe="Xe").as_dict()}))
    teacher = tiny_translator(tmp_path / "teacher", data)
    capsys.readouterr()
    student = tmp_path / "student"
    assert main(["train", "robust-encoder", "--teacher", str(teacher), "--out", str(student), "--data", str(data),
                 "--instrument-data", str(tmp_path / "instruments"), "--epochs", "1", "--batch-size", "4",
                 "--device", "cpu", "--no-progress"]) == 0
    assert "Xe probe" in capsys.readouterr().out
    robust = json.loads((student / "metrics.json").read_text())["robust_encoder"]
    split = np.resize(["train", "train", "train", "train", "val", "val", "test", "test"], n)
    # Test-split views neither train nor score: only views of training and validation materials are used.
    assert robust["instrument_views"] == {"Xe probe": {"train": int((split == "train").sum()),
                                                       "val": int((split == "val").sum())}}
    assert robust["validation"]["per_kind"]["Xe probe"]["views"] == int((split == "val").sum())
    assert robust["n_train"] == int((split == "train").sum())  # the campaign's own rows, as before
    meta = json.loads((student / "metadata.json").read_text())
    assert any(entry["path"].endswith("xe/dataset.npz") for entry in meta["inputs"])

    (tmp_path / "empty").mkdir()
    assert main(["train", "robust-encoder", "--teacher", str(teacher), "--out", str(tmp_path / "s2"), "--data",
                 str(data), "--instrument-data", str(tmp_path / "empty"), "--epochs", "1", "--device", "cpu",
                 "--no-progress"]) != 0
    assert "no campaign folders" in capsys.readouterr().err and not (tmp_path / "s2").exists()


def test_the_regressor_also_reads_training_views_imaged_with_another_instrument(tmp_path, capsys):
    from battgen.afm.formats.grid import to_unit_range
    from battgen.cli import main

    n = 24
    data = write_afm_dataset(tmp_path / "data", n=n)
    with np.load(data / "dataset.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["stacks"] = np.stack([to_unit_range(np.sign(s) * np.abs(s.astype(np.float32)) ** 0.5)
                                 for s in arrays["stacks"]]).astype(np.float16)
    for name in ("xe", "tip_closer_0.3"):
        (tmp_path / "instruments" / name).mkdir(parents=True)
        np.savez(tmp_path / "instruments" / name / "dataset.npz", **arrays)
    translator = tiny_translator(tmp_path / "translator", data)
    common = ["--data", str(data), "--translator", str(translator), "--epochs", "2", "--device", "cpu",
              "--no-progress"]
    regressor = tmp_path / "regressor"
    capsys.readouterr()
    assert main(["train", "atom-regressor", "--out", str(regressor), *common,
                 "--instrument-data", str(tmp_path / "instruments")]) == 0
    metrics = json.loads((regressor / "metrics.json").read_text())
    train_views = 12  # only the campaigns' training views join: 12 of 24 each
    assert metrics["n_train_instrument"] == 2 * train_views and metrics["n_train"] == 3 * train_views
    meta = json.loads((regressor / "metadata.json").read_text())
    assert meta["config"]["instrument_data"].endswith("instruments")
    assert sum(entry["path"].endswith("dataset.npz") for entry in meta["inputs"]) == 3

    # every view of a campaign whose materials the regressor is tested on would leak the test split
    leaky = tmp_path / "leaky" / "xe"
    leaky.mkdir(parents=True)
    np.savez(leaky / "dataset.npz", **{**arrays, "split": np.full(n, "train")})
    assert main(["train", "atom-regressor", "--out", str(tmp_path / "leak"), *common,
                 "--instrument-data", str(tmp_path / "leaky")]) != 0
    assert "validation or test materials" in capsys.readouterr().err and not (tmp_path / "leak").exists()
    (tmp_path / "empty").mkdir()
    assert main(["train", "atom-regressor", "--out", str(tmp_path / "none"), *common,
                 "--instrument-data", str(tmp_path / "empty")]) != 0
    assert "no campaign folders" in capsys.readouterr().err and not (tmp_path / "none").exists()
