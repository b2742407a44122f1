"""Training settings: generated CLI options, recorded commands that parse back to the same
settings, checked values, defaults from battgen.paths, and the Makefile's training lines."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest

from battgen import paths
from battgen.train import commands
from battgen.train.configs import (
    RobustEncoderTrainingConfig,
    LATENTS_FILENAME,
    AtomRegressorTrainingConfig,
    ScreeningTrainingConfig,
    SEITrainingConfig,
    TranslatorTrainingConfig,
)
from battgen.train.options import PROGRAM, command_line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _parse(argv: list[str]):
    return commands.parse_config(_parser().parse_args(argv))


def _replay(command: str):
    """The settings a recorded command runs with."""
    words = shlex.split(command)
    assert tuple(words[:len(PROGRAM)]) == PROGRAM
    return _parse(words[len(PROGRAM):])


def _non_default_configs(tmp_path: Path):
    """Every trainer with paths outside the checkout, flags flipped, optional values set."""
    common = dict(epochs=7, batch_size=3, lr=3.5e-4, seed=11, patience=0, max_minutes=2.5, device="cpu", threads=2,
                  progress=False)
    return [
        SEITrainingConfig(kind="cprvae", data=tmp_path / "sei data", out=tmp_path / "out", beta=0.5, lam=10.0,
                          kl_warmup_epochs=0, weight_decay=0.0, class_weights=False, **common),
        TranslatorTrainingConfig(data=tmp_path / "afm", adversarial=False, beta=0.0, channels=(8, 16, 32),
                                 layers_per_block=2, norm_num_groups=4, adv_weight=0.1, adv_warmup_epochs=3,
                                 disc_lr=1e-5, disc_layers=3, disc_channels=8, gan_loss="bce", disc_norm="instance",
                                 **common),
        AtomRegressorTrainingConfig(data=tmp_path / "afm", translator=tmp_path / "tr", out=tmp_path / "reg",
                                    latents=tmp_path / "l.npz", weight_decay=0.25, pooling="global",
                                    output="fractions", augment="shift-dihedral", ablation_epochs=3,
                                distorted_data=tmp_path / "sub", distorted_copies=3, latent_noise=0.2, **common),
        ScreeningTrainingConfig(latents=tmp_path / "l.npz", table=tmp_path / "table", translator=tmp_path / "tr",
                                atom_regressor=tmp_path / "reg", out=tmp_path / "scr", channels=(32, 64, 64),
                                cond_dropout=0.0, ema_decay=0.0, weight_decay=0.5, lr_warmup_steps=0, grad_clip=0.0,
                                **common),
        RobustEncoderTrainingConfig(data=tmp_path / "sub", teacher=tmp_path / "tr", out=tmp_path / "student",
                                    eval_data=tmp_path / "test", clean_weight=0.5, holdout=0.2, **common),
    ]


DEFAULT_CONFIGS = [SEITrainingConfig(kind="vae"), SEITrainingConfig(kind="prvae"), TranslatorTrainingConfig(),
                   TranslatorTrainingConfig(adversarial=False), AtomRegressorTrainingConfig(),
                   ScreeningTrainingConfig(), RobustEncoderTrainingConfig()]


@pytest.mark.parametrize("config", DEFAULT_CONFIGS, ids=lambda c: c.command_name())
def test_the_recorded_command_of_the_defaults_parses_back_to_them(config, monkeypatch):
    monkeypatch.chdir(paths.REPO_ROOT)  # recorded commands are run from the checkout
    command = command_line(config)
    assert str(paths.REPO_ROOT) not in command  # relative to the checkout, the same on every machine
    assert _replay(command) == config
    # the bare sub-command gives the same settings: the CLI defaults are the dataclass defaults
    bare = [config.command_name()] + ([] if getattr(config, "adversarial", True) else ["--no-adversarial"])
    assert _parse(bare) == config


def test_the_recorded_command_of_every_trainer_parses_back_to_an_equal_config(tmp_path):
    for config in _non_default_configs(tmp_path):
        command = command_line(config)
        assert "--no-progress" in command and "--threads 2" in command and "--lr 0.00035" in command
        assert _replay(command) == config, command
    sei, translator, regressor, screening, robust = _non_default_configs(tmp_path)
    assert ("--pooling global --output fractions --augment shift-dihedral --distorted-copies 3 --ablation-epochs 3 --latent-noise 0.2"
            in command_line(regressor)) and f"--distorted-data {tmp_path / 'sub'}" in command_line(regressor)
    assert f"robust-encoder --data {tmp_path / 'sub'} --teacher {tmp_path / 'tr'}" in command_line(robust)
    assert f"sei-cprvae --data '{tmp_path / 'sei data'}'" in command_line(sei)
    assert "--no-adversarial" in command_line(translator) and "--channels 8,16,32" in command_line(translator)
    assert "--no-class-weights" in command_line(sei)
    assert "--channels 32,64,64 --cond-dropout 0.0 --ema-decay 0.0" in command_line(screening)


@pytest.mark.parametrize("name", [paths.SEI_VAE, paths.SEI_PRVAE, paths.SEI_CPRVAE, paths.TRANSLATOR,
                                  paths.TRANSLATOR_NOADV, paths.ATOM_REGRESSOR, paths.SCREENING])
def test_the_shipped_checkpoints_recorded_commands_still_run(name):
    metadata = paths.checkpoint_dir(name, root=paths.REPO_ROOT) / "metadata.json"
    command = json.loads(metadata.read_text())["command"]
    config = _replay(command)
    assert config.epochs == int(re.search(r"--epochs (\d+)", command).group(1))


def test_an_option_left_at_none_is_left_out_and_stays_none():
    command = command_line(TranslatorTrainingConfig())
    for flag in ("--max-minutes", "--device", "--threads", "--disc-lr", "--adv-warmup-epochs", "--norm-num-groups",
                 "--no-adversarial", "--no-progress"):
        assert flag not in command
    assert "--adv-weight 0.01 --disc-layers 2" in command  # everything else is spelled out


def test_defaults_come_from_battgen_paths(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ARTIFACT_ROOT_ENV_VAR, str(tmp_path))
    screening = ScreeningTrainingConfig()
    assert screening.latents == tmp_path / "checkpoints" / "translator" / LATENTS_FILENAME
    assert screening.table == paths.asset_dir(paths.ELECTRODES) and screening.out == paths.checkpoint_dir("screening")
    assert TranslatorTrainingConfig(adversarial=False).out == tmp_path / "checkpoints" / "translator_noadv"
    assert SEITrainingConfig(kind="cprvae").data == tmp_path / "data" / "sei"
    # outside the checkout the recorded command names the full path
    assert f"--out {tmp_path / 'checkpoints' / 'atom_regressor'}" in command_line(AtomRegressorTrainingConfig())


def test_the_latents_file_name_is_the_one_the_translator_writes():
    from battgen.eval.sei_latent import LATENTS_FILENAME as written

    assert LATENTS_FILENAME == written


@pytest.mark.parametrize("argv, message", [
    (["translator", "--epochs", "0"], "argument --epochs: epochs must be at least 1, got 0"),
    (["translator", "--lr=-1e-3"], "argument --lr: lr must be greater than 0, got -0.001"),
    (["translator", "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["translator", "--max-minutes", "nan"], "max_minutes must be a finite number"),
    (["translator", "--channels", "8,x"], "expected comma-separated integers like 32,64,128, got '8,x'"),
    (["screening", "--channels", "64"], "need at least two positive block widths, got 64"),
    (["screening", "--cond-dropout", "1"], "cond_dropout must be less than 1, got 1.0"),
    (["translator", "--gan-loss", "wasserstein"], "gan_loss must be one of hinge, bce, got 'wasserstein'"),
    (["sei-vae", "--threads", "0"], "threads must be at least 1, got 0"),
    (["atom-regressor", "--patience", "-1"], "patience must be at least 0, got -1"),
])
def test_a_bad_option_value_is_a_clear_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("config_cls, values, message", [
    (TranslatorTrainingConfig, {"batch_size": 0}, "batch_size must be at least 1, got 0"),
    (ScreeningTrainingConfig, {"ema_decay": 1.0}, "ema_decay must be less than 1, got 1.0"),
    (ScreeningTrainingConfig, {"channels": [16]}, "need at least two positive block widths, got 16"),
    (SEITrainingConfig, {"kind": "gan"}, "kind must be one of vae, prvae, cprvae, got 'gan'"),
    (AtomRegressorTrainingConfig, {"lr": 0.0}, "lr must be greater than 0, got 0.0"),
])
def test_a_bad_value_from_python_is_a_value_error(config_cls, values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_cls(**values)


def test_settings_are_checked_again_when_replaced():
    import dataclasses

    with pytest.raises(ValueError, match="epochs must be at least 1"):
        dataclasses.replace(AtomRegressorTrainingConfig(), epochs=0)


def test_a_bad_input_reaches_the_user_as_one_error_line(tmp_path, capsys):
    from battgen.cli import main

    assert main(["train", "sei-vae", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_the_makefile_training_lines_parse(monkeypatch):
    monkeypatch.chdir(paths.REPO_ROOT)
    text = (paths.REPO_ROOT / "Makefile").read_text().replace("\\\n", " ")  # join continued lines
    variables = dict(re.findall(r"^([A-Z_]+) \??:?= (.*)$", text, flags=re.MULTILINE))
    lines = re.findall(r"-m battgen train ([^&\n]*)", text)

    def expand(line: str) -> str:
        while "$(" in line:  # variables name variables: TRANSLATOR_ARGS holds $(AFM_DATA)
            line = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], line)
        return line

    configs = [_parse(shlex.split(expand(line))) for line in lines]
    assert [c.command_name() for c in configs] == ["translator", "translator", "translator", "atom-regressor",
                                                   "robust-encoder", "robust-encoder", "robust-encoder", "robust-encoder",
                                                   "atom-regressor", "atom-regressor", "screening", "sei-vae", "sei-prvae", "sei-cprvae"]
    (adversarial, ablation, type_map_tune, regressor, robust, robust_stage2, robust_stage3, robust_stage4,
     robust_regressor,
     mean_regressor, screening, *sei) = configs
    # The robust encoder replaces the shipped translator; the regressor that follows reads its latents,
    # with distorted copies of the same training views it learnt from.
    # Its teacher is the translator before it, shipped, so a rerun never teaches the student itself.
    assert robust.teacher == paths.checkpoint_dir(paths.TRANSLATOR_TEACHER)
    assert robust.out == paths.checkpoint_dir(paths.TRANSLATOR)
    assert robust.eval_data is not None and robust.threads == 2 and robust.instrument_data is not None
    # Each later stage continues the one before towards the same teacher, on the same data, in place.
    for stage in (robust_stage2, robust_stage3, robust_stage4):
        assert stage.init_from == robust.out == stage.out and stage.teacher == robust.teacher
        assert (stage.data, stage.instrument_data) == (robust.data, robust.instrument_data)
    # the first three stages draw every distortion kind alike; the fourth draws 1/f noise more often
    assert robust.pink_weight == robust_stage2.pink_weight == robust_stage3.pink_weight == 1.0
    assert robust_stage4.pink_weight == 2.5
    assert robust_regressor.distorted_data == robust.data and robust_regressor.translator == robust.out
    assert robust_regressor.out == paths.checkpoint_dir(paths.ATOM_REGRESSOR)
    assert robust_regressor.latent_noise == 0.3  # the shipped regressor's, chosen by the robustness table
    assert robust_regressor.pink_weight == 2.5  # as the last encoder stage drew them
    # the page reads all eight orientations of a stack, so the shipped regressor saw the other seven
    assert robust_regressor.turned_copies == 3 and robust_regressor.max_minutes == 13
    # The SEI models learn finished SEIs only, all three from the same dataset and budget.
    for model in sei:
        assert model.runs == "passivated" and model.kl_warmup_epochs == 12 and model.threads == 1
        assert model.data == paths.data_dir(paths.SEI) and model.max_minutes == 25
        assert model.out == paths.checkpoint_dir(f"sei_{model.kind}")
    assert adversarial.adversarial and not ablation.adversarial and not ablation.progress
    # The fine-tune starts from the adversarial run and overwrites it with the decoder retrained only.
    assert Path(type_map_tune.init_from).resolve() == adversarial.out.resolve() == type_map_tune.out.resolve()
    assert type_map_tune.freeze_encoder
    assert (type_map_tune.output_activation, type_map_tune.reinit_output, type_map_tune.max_minutes) == (
        "clamp-type-map", True, 50)
    shipped_translator = json.loads((paths.checkpoint_dir(paths.TRANSLATOR) / "config.json").read_text())
    assert shipped_translator["output_activation"] == type_map_tune.output_activation
    assert ablation.out == paths.checkpoint_dir(paths.TRANSLATOR_NOADV) and ablation.data == paths.data_dir(paths.AFM)
    assert ablation.channels == (16, 32, 64) and ablation.epochs == 14 and ablation.max_minutes == 55
    assert regressor.translator == paths.checkpoint_dir(paths.TRANSLATOR) and regressor.threads == 2
    assert screening.channels == (32, 64, 64) and screening.lr == 5e-4 and screening.patience == 0
    assert (screening.prediction_type, screening.zero_terminal_snr, screening.min_snr_gamma) == ("v_prediction", True, 0)
    # The screening model's compositions are read by a regressor of mean latents, which it is trained with.
    assert mean_regressor.views == "mean" and str(mean_regressor.latents).endswith("translator/latents.npz")
    assert screening.atom_regressor == mean_regressor.out
    assert (screening.condition_norm, screening.targets, screening.select_by) == ("zscore", "mean",
                                                                                  "val_composition_r2")
    # The rebuild trains what is shipped: the same switches as the checkpoint's own metadata.
    shipped = json.loads((paths.checkpoint_dir(paths.SCREENING) / "metadata.json").read_text())["config"]
    assert (shipped["targets"], shipped["condition_norm"], shipped["prediction_type"], shipped["select_by"],
            shipped["min_snr_gamma"] or 0.0) == (screening.targets, screening.condition_norm, screening.prediction_type,
                                          screening.select_by, screening.min_snr_gamma)
