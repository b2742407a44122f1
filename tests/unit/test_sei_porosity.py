"""The two porosity definitions on hand-built lattices, and datasets stored before the second existed."""

import numpy as np
import pytest

from battgen.sei.dataset import DatasetPlan, build_dataset, load_dataset
from battgen.sei.observables import OBSERVABLE_NAMES, compute_observables, half_thickness_porosity
from battgen.sei.species import ATTACHED, FREE_CLUSTER, INORGANIC, MONOMER, RADICAL, SOLVENT


def _slab(rows: int, height: int, width: int) -> np.ndarray:
    lattice = np.full((rows, width), SOLVENT, np.uint8)
    lattice[:height] = INORGANIC
    return lattice


def test_both_porosities_of_a_slab_with_holes():
    lattice = _slab(12, 8, 4)  # thickness 8: layer 32 sites; half-thickness rows y = 1, 2, 3 of 4
    lattice[0, 1] = SOLVENT  # y = 1: a pore in both definitions
    lattice[2, 3] = MONOMER  # y = 3: a trapped monomer is a pore in both
    lattice[3, 0] = SOLVENT  # y = 4 is not below thickness / 2 = 4: layer only
    lattice[5, 2] = FREE_CLUSTER  # the reference counts any Li2EDC cluster as filled; the layer does not
    lattice[7, 1] = ATTACHED
    obs = compute_observables(lattice)
    assert obs["thickness"] == 8
    assert obs["porosity"] == pytest.approx(4 / 32)
    assert obs["porosity_half"] == pytest.approx(2 / (4 * 4))


def test_half_thickness_porosity_counts_rows_strictly_below_half_over_a_fractional_height():
    lattice = _slab(10, 5, 6)  # thickness 5 → half 2.5: rows y = 1, 2 counted, denominator 2.5 · 6
    lattice[1, 4] = RADICAL
    assert half_thickness_porosity(lattice, 5.0) == pytest.approx(1 / 15)
    assert compute_observables(lattice)["porosity_half"] == pytest.approx(1 / 15)
    lattice[2, 4] = SOLVENT  # y = 3 > 2.5: not counted, though the layer has a pore there now
    assert compute_observables(lattice)["porosity_half"] == pytest.approx(1 / 15)
    assert compute_observables(lattice)["porosity"] == pytest.approx(2 / 30)


def test_uneven_columns_use_the_mean_thickness():
    lattice = np.full((10, 2), SOLVENT, np.uint8)
    lattice[:6, 0] = INORGANIC  # heights 6 and 2: thickness 4, half 2 → only y = 1 counts
    lattice[:2, 1] = ATTACHED
    lattice[0, 1] = SOLVENT
    obs = compute_observables(lattice)
    assert obs["thickness"] == 4
    assert obs["porosity_half"] == pytest.approx(1 / (2 * 2))
    assert obs["porosity"] == pytest.approx(1 / 8)


def test_no_sei_means_zero_porosity_in_both():
    obs = compute_observables(np.zeros((8, 8), np.uint8))
    assert obs["porosity"] == 0 and obs["porosity_half"] == 0


def test_datasets_store_the_half_thickness_porosity_and_old_ones_still_load(tmp_path):
    plan = DatasetPlan(n=8, size=10, seed=3, max_steps=100_000)
    path = build_dataset(tmp_path / "new", plan, workers=1, progress=False)
    data = load_dataset(path)
    assert data.observable_names == list(OBSERVABLE_NAMES)
    expected = [compute_observables(lattice)["porosity_half"] for lattice in data.lattices]
    assert np.allclose(data.observable("porosity_half"), expected, atol=1e-6)

    # a dataset written before porosity_half existed: same arrays without its column
    old_names = [n for n in OBSERVABLE_NAMES if n != "porosity_half"]
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["observables"] = arrays["observables"][:, [OBSERVABLE_NAMES.index(n) for n in old_names]]
    arrays["observable_names"] = np.array(old_names)
    np.savez(tmp_path / "old.npz", **arrays)
    old = load_dataset(tmp_path / "old.npz")
    assert old.observable_names[-1] == "porosity_half"
    assert np.allclose(old.observable("porosity_half"), expected, atol=1e-6)
    assert np.array_equal(old.properties(), data.properties())


def test_a_resumed_build_recomputes_observables_of_runs_stored_before_the_new_one(tmp_path):
    plan = DatasetPlan(n=8, size=10, seed=4, max_steps=100_000)
    fresh = load_dataset(build_dataset(tmp_path, plan, workers=1, progress=False))
    run = tmp_path / "runs" / "000001.npz"
    with np.load(run, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["observables"] = arrays["observables"][:-1]  # as written before porosity_half
    np.savez(run, **arrays)
    rebuilt = load_dataset(build_dataset(tmp_path, plan, workers=1, progress=False))
    assert np.allclose(rebuilt.observables, fresh.observables, atol=1e-6)
