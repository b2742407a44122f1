"""The reference side-by-side harness: its lattice converter, and real runs of the reference when one is on disk.

The reference (KIT-Workflows/KMC-CIDEMOD) is never part of the product. Runs use the checkout named
by BATTGEN_SEI_REFERENCE, or the read-only mirror of the development machines; in CI neither exists
and those tests skip.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from battgen.sei.observables import compute_observables
from battgen.sei.species import (
    ATTACHED,
    DIMER,
    FREE_CLUSTER,
    INORGANIC,
    MONOMER,
    N_SPECIES,
    RADICAL,
    SOLVENT,
)

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path("/work/.mirror/KIT-Workflows+KMC-CIDEMOD/repo")
REFERENCE_FILES = ("KMC_SEI.py", "collection.py", "initialize.py", "support.py", "update.py")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


driver = _load("sei_reference_driver")


def _site(x, y, species, bonds=(), sei=False):
    return SimpleNamespace(coordinate=[x, y], species=species, bonds=list(bonds),
                           status=[[], [], "", [0, "SEI" if sei else ""]])


def _reference_sites(codes: np.ndarray) -> list:
    """Our lattice as the reference's site objects (electrode and absorbing rows included)."""
    ny, nx = codes.shape
    sites = {}
    for x in range(1, nx + 1):
        sites[x, 0] = _site(x, 0, "E")
        sites[x, ny + 1] = _site(x, ny + 1, "A")
        for y in range(1, ny + 1):
            code = codes[y - 1, x - 1]
            species = {SOLVENT: "S", RADICAL: "P", INORGANIC: "F", MONOMER: "O", DIMER: "O",
                       FREE_CLUSTER: "C", ATTACHED: "C"}[int(code)]
            sites[x, y] = _site(x, y, species, sei=code == ATTACHED)
    for (x, y), site in sites.items():  # dimers: pair each O with its dimer neighbour
        if 1 <= y <= ny and codes[y - 1, x - 1] == DIMER:
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                other = sites.get((x + dx, y + dy))
                if other is not None and 1 <= y + dy <= ny and codes[y + dy - 1, x + dx - 1] == DIMER:
                    site.bonds = [other]
                    break
    return list(sites.values())


def test_converter_maps_every_reference_species_and_drops_the_boundary_rows():
    nx, ny = 3, 2
    o1, o2 = _site(1, 2, "O"), _site(2, 2, "O")
    o1.bonds, o2.bonds = [o2], [o1]
    sites = [_site(x, 0, "E") for x in (1, 2, 3)] + [_site(x, 3, "A") for x in (1, 2, 3)] + [
        _site(1, 1, "F"), _site(2, 1, "C", sei=True), _site(3, 1, "C"), o1, o2]
    lattice = driver.reference_lattice_to_codes(sites + [_site(3, 2, "P")], nx, ny)
    assert lattice.tolist() == [[INORGANIC, ATTACHED, FREE_CLUSTER], [DIMER, DIMER, RADICAL]]
    assert driver.reference_lattice_to_codes(sites + [_site(3, 2, "O")], nx, ny)[1, 2] == MONOMER
    assert driver.reference_lattice_to_codes(sites + [_site(3, 2, "S")], nx, ny)[1, 2] == SOLVENT


def test_converter_round_trips_our_lattices():
    rng = np.random.default_rng(0)
    codes = rng.choice([SOLVENT, RADICAL, INORGANIC, MONOMER, FREE_CLUSTER, ATTACHED], size=(7, 5)).astype(np.uint8)
    codes[3, 1:3] = DIMER
    assert np.array_equal(driver.reference_lattice_to_codes(_reference_sites(codes), 5, 7), codes)


def test_converter_rejects_incomplete_or_foreign_lattices():
    sites = _reference_sites(np.zeros((2, 2), np.uint8))
    others = [s for s in sites if s.coordinate != [1, 1]]
    with pytest.raises(ValueError, match="cover"):
        driver.reference_lattice_to_codes(others, 2, 2)
    with pytest.raises(ValueError, match="species"):
        driver.reference_lattice_to_codes(others + [_site(1, 1, "X")], 2, 2)
    with pytest.raises(ValueError, match="two reference sites"):
        driver.reference_lattice_to_codes(sites + [_site(1, 1, "S")], 2, 2)
    with pytest.raises(ValueError, match="outside"):
        driver.reference_lattice_to_codes(sites + [_site(5, 1, "S")], 2, 2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    named = os.environ.get("BATTGEN_SEI_REFERENCE")
    if named:
        return Path(named)
    if not (MIRROR / "HEAD").is_file():
        pytest.skip("no reference checkout (set BATTGEN_SEI_REFERENCE to a clone of KMC-CIDEMOD)")
    root = tmp_path_factory.mktemp("reference")
    (root / "KMC_SEI").mkdir()
    for name in REFERENCE_FILES:
        text = subprocess.run(["git", "--git-dir", str(MIRROR), "show", f"HEAD:KMC_SEI/{name}"],
                              capture_output=True, text=True, check=True).stdout
        (root / "KMC_SEI" / name).write_text(text)
    return root


def test_half_thickness_porosity_is_the_reference_code_on_the_same_lattice(reference):
    spec = importlib.util.spec_from_file_location("reference_support", reference / "KMC_SEI" / "support.py")
    support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(support)
    rng = np.random.default_rng(1)
    for _ in range(5):
        codes = np.zeros((20, 8), np.uint8)
        heights = rng.integers(3, 15, size=8)
        for x, h in enumerate(heights):
            codes[:h, x] = rng.choice([INORGANIC, ATTACHED, SOLVENT, MONOMER, FREE_CLUSTER], size=h,
                                      p=[0.5, 0.3, 0.1, 0.05, 0.05])
            codes[h - 1, x] = INORGANIC
        thick, porosity = support.thickness(8, _reference_sites(codes))
        obs = compute_observables(codes)
        assert obs["thickness"] == pytest.approx(thick)
        assert obs["porosity_half"] == pytest.approx(porosity)


def _driver_run(reference, tmp_path, mode, max_steps, barriers):
    out = tmp_path / f"{mode}.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "sei_reference_driver.py"), "--reference",
                    str(reference), "--nx", "8", "--ny", "10", "--seed", "1", "--mode", mode, "--max-steps",
                    str(max_steps), "--barriers", barriers, "--out", str(out)],
                   env=env, check=True, capture_output=True, text=True, cwd=tmp_path)
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


SET_A = ("e1=0.5592,e2=0.4245,e3=0.2692,e4=0.5232,e5=0.5518,e6=0.6893,e7=0.4886,e8=0.5783,e9=0.4888,"
         "e10=0.4151,e11=0.6392,e12=0.5608,e13=0.6511,e14=0.5496,e15=0.5023")


def test_reference_runs_to_its_end_in_both_modes_on_a_tiny_lattice(reference, tmp_path):
    for mode in ("published", "repaired"):
        run = _driver_run(reference, tmp_path, mode, 10**9, SET_A)
        assert str(run["status"]) == "complete"
        lattice = run["lattice"]
        assert lattice.shape == (10, 8) and int(lattice.max()) < N_SPECIES
        assert int(run["steps"]) == int(run["event_counts"].sum()) > 0
        assert compute_observables(lattice)["thickness"] > 0
    assert int(run["sites_rebuilt"]) > 0  # the repair found lost events to rebuild


def test_reference_stops_at_the_event_bound(reference, tmp_path):
    run = _driver_run(reference, tmp_path, "published", 300, "")
    assert str(run["status"]) == "max_steps" and int(run["steps"]) == 300


def test_harness_prints_one_table_with_both_codes(reference, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sei_reference.py"), "--reference",
                          str(reference), "--nx", "8", "--ny", "10", "--ref-seeds", "1", "--our-seeds", "2",
                          "--sets", "A", "--draws", "--cache", str(tmp_path / "cache")],
                         env=env, check=True, capture_output=True, text=True).stdout
    table = out.split("All sets:")[1]
    for code in ("reference, published", "reference, repaired", "ours"):
        assert f"| A | {code} |" in table
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_reference_run_still_going_is_compared_at_its_simulated_time(reference, tmp_path):
    harness = _load("sei_reference")
    cache = tmp_path / "cache"
    cache.mkdir()
    barriers = harness.barrier_sets([])["default"]
    final = harness._cache_file(cache, "published", 8, 10, 0, 3_000_000, barriers)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "sei_reference_driver.py"), "--reference",
                    str(reference), "--nx", "8", "--ny", "10", "--seed", "0", "--max-steps", "400",
                    "--snapshot-every", "100", "--barriers", harness._barrier_string(barriers), "--out", str(final)],
                   env=env, check=True, capture_output=True, text=True)
    final.unlink()  # as if the run were still going: only its snapshot at 400 events exists
    with np.load(driver.partial_path(final), allow_pickle=False) as z:
        assert int(z["steps"]) == 400 and float(z["sim_time_s"]) > 0
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sei_reference.py"), "--reference",
                          str(reference), "--nx", "8", "--ny", "10", "--ref-seeds", "1", "--our-seeds", "2",
                          "--sets", "default", "--draws", "--modes", "published", "--use-partial",
                          # one bound whatever ours needs on this tiny lattice: the snapshot's run
                          "--max-steps", "3000000", "--slow-max-steps", "3000000", "--bounded-sets",
                          "--complete-seeds", "1", "--complete-max-steps", "1000", "--cache", str(cache)],
                         env=env, check=True, capture_output=True, text=True).stdout
    assert "| default | reference, published, still running at t = " in out
    assert "| default | ours, stopped at t = " in out


def test_pairs_counted_twice_doubles_exactly_the_symmetric_pair_rates():
    from battgen.sei.barriers import DEFAULT_BARRIERS
    from battgen.sei.kmc import event_rates

    harness = _load("sei_reference")
    ratio = event_rates(harness.pairs_counted_twice(DEFAULT_BARRIERS)) / event_rates(DEFAULT_BARRIERS)
    doubled = [3, 4, 5, 9]  # e4 P+P, e5 O+O, e6 O+OO, e10 OO+OO
    assert np.allclose(ratio[doubled], 2.0)
    assert np.allclose(np.delete(ratio, doubled), 1.0)


def test_dimer_moves_as_reference_raises_only_the_dimer_hop_rate_by_half():
    from battgen.sei.barriers import DEFAULT_BARRIERS
    from battgen.sei.kmc import event_rates

    harness = _load("sei_reference")
    ratio = event_rates(harness.dimer_moves_as_reference(DEFAULT_BARRIERS)) / event_rates(DEFAULT_BARRIERS)
    assert np.isclose(ratio[11], 1.5)  # e12: OO diffuses
    assert np.allclose(np.delete(ratio, 11), 1.0)
