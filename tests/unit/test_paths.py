from pathlib import Path

from battgen import paths


def test_artifact_root_defaults_to_the_checkout(monkeypatch):
    monkeypatch.delenv(paths.ARTIFACT_ROOT_ENV_VAR, raising=False)
    assert paths.artifact_root() == paths.REPO_ROOT
    assert paths.checkpoint_dir(paths.SCREENING) == paths.REPO_ROOT / "checkpoints" / "screening"
    assert (paths.asset_dir(paths.ELECTRODES) / "electrodes.parquet").is_file()


def test_environment_variable_moves_every_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.ARTIFACT_ROOT_ENV_VAR, str(tmp_path))
    assert paths.checkpoint_dir("x") == tmp_path / "checkpoints" / "x"
    assert paths.asset_dir("y") == tmp_path / "assets" / "y"
    assert paths.data_dir("z") == tmp_path / "data" / "z"
    assert paths.checkpoint_dir("x", root=Path("/r")) == Path("/r/checkpoints/x")


def test_display_is_relative_inside_the_checkout_only(tmp_path):
    assert paths.for_display(paths.REPO_ROOT / "checkpoints" / "translator") == "checkpoints/translator"
    assert paths.for_display(tmp_path / "a") == str(tmp_path / "a")
