"""Provenance files: what write_metadata records, and what list_artifacts finds."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from pathlib import Path

import numpy as np
import pytest

from battgen import artifacts
from battgen.artifacts import (
    list_artifacts,
    read_metadata,
    read_metrics,
    sha256_file,
    write_metadata,
    write_metrics,
)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- hashing


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    # Larger than the 1 MiB read chunk and not a multiple of it, so streaming is exercised.
    data = np.random.default_rng(0).integers(0, 256, size=3 * (1 << 20) + 12345, dtype=np.uint8).tobytes()
    path = _write(tmp_path / "big.bin", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256_file_of_missing_file_says_so(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        sha256_file(tmp_path / "absent.bin")


def test_input_hash_depends_on_content_and_file_boundaries(tmp_path):
    a = _write(tmp_path / "a.txt", b"abc")
    b = _write(tmp_path / "b.txt", b"def")
    digest, records = artifacts.hash_inputs([a, b])
    assert [r["sha256"] for r in records] == [hashlib.sha256(b"abc").hexdigest(), hashlib.sha256(b"def").hexdigest()]
    assert [r["size_bytes"] for r in records] == [3, 3]

    # Same concatenated bytes, split differently: must not collide.
    _write(tmp_path / "a.txt", b"ab")
    _write(tmp_path / "b.txt", b"cdef")
    assert artifacts.hash_inputs([a, b])[0] != digest

    _write(tmp_path / "a.txt", b"abc")
    _write(tmp_path / "b.txt", b"def")
    assert artifacts.hash_inputs([a, b])[0] == digest


def test_directory_input_is_expanded_in_sorted_order(tmp_path):
    _write(tmp_path / "inputs" / "z.txt", b"last")
    _write(tmp_path / "inputs" / "sub" / "a.txt", b"first")
    digest_dir, records = artifacts.hash_inputs([tmp_path / "inputs"])
    digest_files, _ = artifacts.hash_inputs([tmp_path / "inputs" / "sub" / "a.txt", tmp_path / "inputs" / "z.txt"])
    assert digest_dir == digest_files
    assert [Path(r["path"]).name for r in records] == ["a.txt", "z.txt"]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        artifacts.hash_inputs([tmp_path / "nope.csv"])


# --------------------------------------------------------------------------- metadata


def test_write_metadata_records_provenance(tmp_path):
    input_file = _write(tmp_path / "raw" / "barriers.csv", b"species,barrier_eV\nLiF,0.8\n")
    out_dir = tmp_path / "datasets" / "sei_small"
    config = {
        "temperature_K": np.float64(298.15),
        "n_steps": np.int64(1000),
        "lattice": np.array([16, 16, 32]),
        "rate_scale": float("nan"),
        "output": tmp_path / "x.npz",
        "species": ("LiF", "Li2CO3"),
    }
    returned = write_metadata(
        out_dir,
        command="python -m battgen sei build-dataset --n 10",
        config=config,
        seed=np.int64(42),
        inputs=[input_file],
        wall_time_s=12.3456,
        extra={"n_samples": np.int32(10)},
    )

    on_disk = read_metadata(out_dir)
    assert on_disk == returned
    assert on_disk["command"] == "python -m battgen sei build-dataset --n 10"
    assert on_disk["seed"] == 42 and type(on_disk["seed"]) is int
    assert on_disk["config"] == {
        "temperature_K": 298.15,
        "n_steps": 1000,
        "lattice": [16, 16, 32],
        "rate_scale": None,  # NaN is not JSON; stored as null rather than an invalid file
        "output": str(tmp_path / "x.npz"),
        "species": ["LiF", "Li2CO3"],
    }
    assert on_disk["n_samples"] == 10
    assert on_disk["wall_time_s"] == 12.346
    assert on_disk["input_sha256"] == artifacts.hash_inputs([input_file])[0]
    assert on_disk["inputs"][0]["sha256"] == sha256_file(input_file)

    assert on_disk["versions"]["python"] == platform.python_version()
    assert on_disk["versions"]["numpy"] == np.__version__
    assert "battgen" in on_disk["versions"]
    assert on_disk["machine"]["cpu_count"] >= 1
    assert socket.gethostname() not in on_disk["machine"].values()
    assert not {"hostname", "node", "host"} & set(on_disk["machine"])

    created = on_disk["created_utc"]
    assert created.endswith("+00:00"), created

    # Deterministic, diff-friendly file: sorted keys, strict JSON (no NaN tokens).
    text = (out_dir / "metadata.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert "NaN" not in text


def test_write_metadata_without_inputs_has_no_input_hash(tmp_path):
    metadata = write_metadata(tmp_path, command="python -m battgen train x", config={}, seed=None, wall_time_s=0)
    assert metadata["input_sha256"] is None
    assert metadata["inputs"] == []
    assert metadata["seed"] is None


def test_write_metadata_records_torch_facts_once_torch_is_imported(tmp_path):
    import torch

    metadata = write_metadata(tmp_path, command="c", config={}, seed=1, wall_time_s=1)
    assert metadata["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert metadata["machine"]["torch_threads"] == torch.get_num_threads()
    assert ("cuda_device_name" in metadata["machine"]) == torch.cuda.is_available()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wall_time_s": float("nan")}, "wall_time_s"),
        ({"wall_time_s": -1.0}, "wall_time_s"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"command": "  "}, "command"),
        ({"config": [1, 2]}, "config must be a dict"),
        ({"config": {"optimizer": object()}}, r"config\['optimizer'\]"),
        ({"extra": {"seed": 3}}, "may not overwrite"),
    ],
)
def test_write_metadata_rejects_bad_arguments_clearly(tmp_path, kwargs, message):
    arguments = {"command": "python -m battgen train x", "config": {}, "seed": 0, "wall_time_s": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        write_metadata(tmp_path / "out", **arguments)
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_metrics_round_trip_and_absent_files(tmp_path):
    assert read_metrics(tmp_path) is None
    assert read_metadata(tmp_path) is None
    write_metrics(tmp_path / "ckpt", {"test": {"mae": np.float32(0.25), "r2": float("inf")}, "epochs": 3})
    assert read_metrics(tmp_path / "ckpt") == {"test": {"mae": 0.25, "r2": None}, "epochs": 3}


def test_corrupt_metrics_file_is_named_in_the_error(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="should hold a JSON object"):
        read_metrics(tmp_path)


# --------------------------------------------------------------------------- listing


def _make_tree(root: Path) -> None:
    write_metadata(root / "checkpoints" / "sei_prvae", command="train", config={"epochs": 2}, seed=0, wall_time_s=5)
    write_metrics(root / "checkpoints" / "sei_prvae", {"val": {"loss": 0.5}})
    _write(root / "checkpoints" / "sei_prvae" / "model.safetensors", b"x" * 1000)
    (root / "checkpoints" / "untracked_model").mkdir(parents=True)
    _write(root / "checkpoints" / "untracked_model" / "weights.pt", b"y" * 10)

    write_metadata(root / "assets" / "sei", command="build", config={}, seed=1, wall_time_s=1)
    _write(root / "assets" / "sei" / "shards" / "part0.npz", b"z" * 100)  # part of the dataset
    write_metrics(root / "data" / "runs" / "kmc_big", {"n_samples": 5})
    (root / "data" / "runs" / "kmc_big" / "metrics.json").write_text("{broken")
    _write(root / "assets" / "vendor" / "3Dmol-min.js", b"js")  # not an artifact
    _write(root / "assets" / "logo.png", b"png")


def test_list_artifacts_finds_checkpoints_and_datasets(tmp_path):
    _make_tree(tmp_path)
    found = {a.name: a for a in list_artifacts(tmp_path)}

    assert set(found) == {"sei_prvae", "untracked_model", "assets/sei", "data/runs/kmc_big"}

    model = found["sei_prvae"]
    assert model.kind == "checkpoint"
    assert model.path == tmp_path / "checkpoints" / "sei_prvae"
    assert model.metadata["config"] == {"epochs": 2}
    assert model.metrics == {"val": {"loss": 0.5}}
    assert model.problems == []
    assert model.size_bytes == sum(p.stat().st_size for p in model.path.iterdir())

    assert found["untracked_model"].metadata is None
    assert "no metadata.json" in found["untracked_model"].problems[0]

    dataset = found["assets/sei"]
    assert dataset.kind == "dataset"
    assert dataset.size_bytes == (dataset.path / "metadata.json").stat().st_size + 100

    broken = found["data/runs/kmc_big"]
    assert broken.metrics is None
    assert any("metrics.json is not valid JSON" in p for p in broken.problems)


def test_list_artifacts_orders_checkpoints_first(tmp_path):
    _make_tree(tmp_path)
    kinds = [a.kind for a in list_artifacts(tmp_path)]
    assert kinds == sorted(kinds)  # "checkpoint" < "dataset"


def test_list_artifacts_of_empty_and_missing_roots(tmp_path):
    assert list_artifacts(tmp_path) == []
    with pytest.raises(ValueError, match="not a directory"):
        list_artifacts(tmp_path / "missing")


def test_provenance_summary_for_display(tmp_path):
    input_file = _write(tmp_path / "in.bin", b"abc")
    write_metadata(tmp_path / "checkpoints" / "m", command="train m", config={}, seed=7, inputs=[input_file],
                   wall_time_s=4000)
    (artifact,) = list_artifacts(tmp_path)
    provenance = artifact.provenance
    assert provenance["command"] == "train m"
    assert provenance["seed"] == 7
    assert provenance["wall time"] == "1.11 h"
    assert provenance["input sha256"] == artifacts.hash_inputs([input_file])[0][:16] + "…"
    assert f"numpy {np.__version__}" in provenance["versions"]
    assert provenance["created"].endswith(" UTC")


def test_flatten_and_format_metrics():
    flat = artifacts.flatten_metrics({"test": {"mae": 0.012345, "nested": {"r2": 0.9}}, "curve": [1, 2], "n": 3})
    assert flat == {"test.mae": 0.012345, "test.nested.r2": 0.9, "curve": [1, 2], "n": 3}
    assert artifacts.format_metric_value(0.012345) == "0.01235"
    assert artifacts.format_metric_value(None) == "—"
    assert artifacts.format_metric_value(list(range(50))) == "[50 values]"
    assert artifacts.format_metric_value(True) == "True"


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_234_567, "1.2 MB"), (5 * 10**12, "5.0 TB")]
)
def test_format_size(size, text):
    assert artifacts.format_size(size) == text


def test_format_duration_and_created():
    assert artifacts.format_duration(None) is None
    assert artifacts.format_duration(12.34) == "12.3 s"
    assert artifacts.format_duration(90) == "1.5 min"
    assert artifacts.format_created("2026-11-22T04:25:38+00:00") == "2026-11-22 04:25 UTC"
    assert artifacts.format_created("2026-11-22T06:25:38+02:00") == "2026-11-22 04:25 UTC"
    assert artifacts.format_created("yesterday") == "yesterday"


def test_check_inputs_reports_missing_and_changed_files(tmp_path):
    kept = _write(tmp_path / "kept.csv", b"1,2\n")
    edited = _write(tmp_path / "edited.csv", b"3,4\n")
    removed = _write(tmp_path / "removed.csv", b"5,6\n")
    metadata = write_metadata(tmp_path / "out", command="c", config={}, seed=0, inputs=[kept, edited, removed],
                              wall_time_s=1)
    assert artifacts.check_inputs(metadata) == []

    edited.write_bytes(b"3,5\n")
    removed.unlink()
    assert artifacts.check_inputs(metadata) == [f"{edited}: changed since the artifact was made", f"{removed}: missing"]
