"""The SEI dataset builder: Latin-hypercube design, resumable builds, the stored format."""

import json
import os

import numpy as np
import pytest

from battgen.sei.barriers import BARRIER_RANGES
from battgen.sei.dataset import (
    DatasetPlan,
    build_dataset,
    load_dataset,
    sample_barriers,
    split_indices,
)


def test_latin_hypercube_stratifies_every_barrier():
    n = 20
    samples = sample_barriers(n, seed=5)
    assert samples.shape == (n, 15)
    unit = (samples - BARRIER_RANGES[:, 0]) / (BARRIER_RANGES[:, 1] - BARRIER_RANGES[:, 0])
    assert unit.min() >= 0 and unit.max() <= 1
    for column in unit.T:  # one sample in each of the n strata
        assert sorted(np.floor(column * n).astype(int)) == list(range(n))
    assert np.array_equal(sample_barriers(n, seed=5), samples)
    assert not np.array_equal(sample_barriers(n, seed=6), samples)


def test_split_is_70_15_15_and_fixed():
    split = split_indices(1000, seed=0)
    assert np.bincount(split).tolist() == [700, 150, 150]
    assert np.array_equal(split, split_indices(1000, seed=0))


def test_build_is_resumable_and_stores_the_documented_arrays(tmp_path):
    plan = DatasetPlan(n=8, size=12, seed=1, max_steps=200_000)
    path = build_dataset(tmp_path, plan, workers=1, progress=False)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    assert len(first) == 8
    os.remove(tmp_path / "runs" / "000002.npz")
    build_dataset(tmp_path, plan, workers=1, progress=False)
    second = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    assert {k for k in first if first[k] != second[k]} == {"000002.npz"}

    data = load_dataset(path)
    assert data.lattices.shape == (8, 12, 12) and data.lattices.dtype == np.uint8
    assert data.barriers.shape == (8, 15)
    assert np.allclose(data.barriers, sample_barriers(8, 1), atol=1e-6)
    assert "thickness" in data.observable_names and "porosity" in data.observable_names
    assert data.observable("thickness").shape == (8,)
    assert json.loads((tmp_path / "metrics.json").read_text())["runs"] == 8
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["config"]["n"] == 8 and meta["runs"] == 8

    with pytest.raises(ValueError, match="size"):
        build_dataset(tmp_path, DatasetPlan(n=8, size=14, seed=1, max_steps=200_000),
                      workers=1, progress=False)
    with pytest.raises(ValueError, match="different sample design"):
        build_dataset(tmp_path, DatasetPlan(n=9, size=12, seed=1, max_steps=200_000),
                      workers=1, progress=False)


def test_parallel_build_matches_serial(tmp_path):
    plan = DatasetPlan(n=8, size=10, seed=2, max_steps=100_000)
    serial = load_dataset(build_dataset(tmp_path / "a", plan, workers=1, progress=False))
    parallel = load_dataset(build_dataset(tmp_path / "b", plan, workers=2, chunk=1, progress=False))
    assert np.array_equal(serial.lattices, parallel.lattices)


def test_missing_dataset_message(tmp_path):
    with pytest.raises(ValueError, match="build-dataset"):
        load_dataset(tmp_path)


def test_accelerated_build_labels_the_runs_it_acted_on(tmp_path):
    exact_plan = DatasetPlan(n=6, size=12, seed=3, max_steps=300_000)
    exact = load_dataset(build_dataset(tmp_path / "exact", exact_plan, workers=1, progress=False))
    assert exact.accelerated_events is not None and not exact.accelerated_events.any()

    plan = DatasetPlan(n=6, size=12, seed=3, max_steps=300_000, hop_ratio=10.0, accelerate_after=2_000)
    data = load_dataset(build_dataset(tmp_path / "fast", plan, workers=1, progress=False))
    acted = data.accelerated_events > 0
    assert acted.any()
    # a run the acceleration never touched is the exact run, event for event
    for i in np.flatnonzero(~acted):
        assert np.array_equal(data.lattices[i], exact.lattices[i])
    meta = json.loads((tmp_path / "fast" / "metadata.json").read_text())
    assert meta["accelerated_runs"] == int(acted.sum()) and meta["config"]["hop_ratio"] == 10.0
    assert json.loads((tmp_path / "fast" / "metrics.json").read_text())["accelerated_runs"] == int(acted.sum())

    with pytest.raises(ValueError, match="hop_ratio"):  # never mixed with runs of other settings
        build_dataset(tmp_path / "fast", DatasetPlan(n=6, size=12, seed=3, max_steps=300_000, hop_ratio=100.0),
                      workers=1, progress=False)
    with pytest.raises(ValueError, match="accelerate_after needs a hop_ratio"):
        DatasetPlan(n=6, accelerate_after=10)


def test_runs_stored_before_acceleration_load_as_exact(tmp_path):
    plan = DatasetPlan(n=8, size=10, seed=4, max_steps=50_000)
    build_dataset(tmp_path, plan, workers=1, progress=False)
    for run in (tmp_path / "runs").iterdir():  # the format of older builds: no accelerated_events
        with np.load(run) as z:
            arrays = {k: z[k] for k in z.files if k != "accelerated_events"}
        np.savez_compressed(run, **arrays)
    from battgen.sei.dataset import consolidate

    data = load_dataset(consolidate(tmp_path, plan))
    assert data.accelerated_events.tolist() == [0] * 8
