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
