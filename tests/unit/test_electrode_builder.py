"""Candidate frameworks, the CHGNet + pymatgen electrode pipeline, and the resumable builder.

These run real CHGNet relaxations on 3–4 atom cells (a few seconds each on a laptop CPU).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from battgen.data.frameworks import (
    TEMPLATE_BY_NAME,
    discharged_structure,
    framework_structure,
    plan_candidate,
    plan_candidates,
)


def _candidate(key):
    return next(c for c in plan_candidates() if c.key == key)


def test_charge_balance_decides_how_many_ions_go_in():
    lco = plan_candidate(TEMPLATE_BY_NAME["layered-O3"], "Li", "Co", "O")
    assert (lco.n_ions, lco.metal_ox_discharged, lco.metal_ox_charged) == (1, 3.0, 4.0)
    # Mg2+ into spinel Mn2O4: two ions per primitive cell take Mn from 4+ to 3+.
    mg = plan_candidate(TEMPLATE_BY_NAME["spinel"], "Mg", "Mn", "O")
    assert mg.n_ions == 2 and mg.metal_ox_discharged == 3.0
    # FeO2 would need Fe4+, which ICSD has not seen: no layered Fe oxide host.
    assert plan_candidate(TEMPLATE_BY_NAME["layered-O3"], "Li", "Fe", "O") is None
    # Y3+ into LiFePO4's host would need Fe below 2+ unless only some sites fill.
    y = plan_candidate(TEMPLATE_BY_NAME["olivine"], "Y", "Fe", "O")
    assert y is not None and y.n_ions < y.n_sites and y.metal_ox_discharged >= 2


def test_every_candidate_is_charge_balanced_and_covers_every_ion():
    cands = plan_candidates()
    assert len({c.key for c in cands}) == len(cands)
    assert len({c.ion for c in cands}) == 10
    for c in cands:
        assert c.metal_ox_discharged < c.metal_ox_charged
        assert c.metal_ox_discharged >= 1


def test_discharged_and_charged_structures_differ_only_by_the_ions():
    c = _candidate("olivine_Mn_O_x1_Li4")
    d, ch = discharged_structure(c), framework_structure(c)
    assert d.composition.reduced_formula == "LiMnPO4"
    assert ch.composition.reduced_formula == "MnPO4"
    assert len(d) - len(ch) == c.n_ions
    assert np.allclose(d.lattice.matrix, ch.lattice.matrix)
    # The ion must not collide with a placeholder (Li replaced Li, Co→Li would clash).
    k = _candidate("layered-O3_Co_O_x1_K1")
    assert discharged_structure(k).composition.reduced_formula == "KCoO2"


@pytest.fixture(scope="module")
def lits2_row():
    from battgen.data.evaluate import evaluate_structure

    return evaluate_structure(discharged_structure(_candidate("layered-1T_Ti_S_x1_Li1")), "Li",
                              name="LiTiS2")


def test_pipeline_gives_textbook_capacity_and_a_sane_voltage_for_LiTiS2(lits2_row):
    props = lits2_row.properties
    # Capacity is pure stoichiometry: 1 e- per LiTiS2 formula unit.
    assert props["capacity_grav"] == pytest.approx(225.3, abs=0.5)
    assert 1.3 < props["average_voltage"] < 2.6  # experiment 2.1 V
    assert 0 <= props["max_delta_volume"] < 0.2
    assert lits2_row.discharged.converged and lits2_row.charged.converged
    assert lits2_row.row["formula_charge"] == "TiS2"


def test_unphysical_electrodes_are_rejected_with_a_reason():
    from battgen.data.electrode import RejectedElectrode, check_physical

    good = {"average_voltage": 3.0, "capacity_grav": 1, "capacity_vol": 1, "energy_grav": 1,
            "energy_vol": 1, "max_delta_volume": 0.1}
    check_physical(good)
    with pytest.raises(RejectedElectrode, match="negative"):
        check_physical({**good, "average_voltage": -0.2})
    with pytest.raises(RejectedElectrode, match="volume change"):
        check_physical({**good, "max_delta_volume": 1.7})
    with pytest.raises(RejectedElectrode, match="non-finite"):
        check_physical({**good, "capacity_vol": float("nan")})


@pytest.mark.slow
def test_builder_writes_a_table_resumes_from_its_cache_and_records_rejects(tmp_path):
    from battgen.data.build_plan import BuildPlan
    from battgen.data.builder import build_electrodes
    from battgen.data.relax_cache import cache_file
    from battgen.data.table import COLUMNS, load_table

    plan = BuildPlan(ions=("Li", "Zn"), templates=("layered-1T",), limit=2, steps=60)
    out, cache = tmp_path / "table", tmp_path / "cache"
    build_electrodes(out, plan, cache_dir=cache, workers=1, progress=False)
    df = load_table(out)
    rejected = pd.read_csv(out / "rejected.csv")
    assert len(df) + len(rejected) == 2
    assert list(df.columns) == list(COLUMNS)
    assert set(df["source"]) == {"computed"}
    assert (df["average_voltage"] > 0).all()
    assert all(len(c) == 112 for c in df["composition"])
    assert rejected["reason"].str.len().gt(0).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["candidates"]["planned"] == 2
    assert json.loads((out / "metadata.json").read_text())["command"].endswith("build-electrodes")

    cached = sorted(cache.rglob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    build_electrodes(out, plan, cache_dir=cache, workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")} == stamps  # nothing re-run
    first = plan.candidates()[0]
    assert cache_file(cache, "discharged", first.key).exists()
    # A table grown from this one keeps its materials' splits (here: one moved to test by hand).
    formula = df["formula_discharge"].iloc[0]
    build_electrodes(out, plan, cache_dir=cache, workers=1, progress=False, keep_splits={formula: "test"})
    again = load_table(out)
    assert set(again.loc[again["formula_discharge"] == formula, "split"]) == {"test"}


@pytest.mark.parametrize("data,name,message", [
    (b"", "x.cif", "empty"),
    (b"\x00\xff\xfe garbage", "x.cif", "not a text file"),
    (b"Li 0 0 0", "notes.txt", "upload a CIF"),
    (b"data_broken\n_cell_length_a 3.0\n", "broken.cif", "could not be read"),
    (b"POSCAR\n1.0\nnot a lattice\n", "POSCAR", "could not be read"),
    (b"x" * (3 * 1024 * 1024), "big.cif", "MB"),
])
def test_malformed_structure_files_get_clear_messages(data, name, message):
    from battgen.data.evaluate import read_structure

    with pytest.raises(ValueError, match=message):
        read_structure(data, name)


def test_structures_that_cannot_be_electrodes_are_refused_before_relaxing():
    from pymatgen.core import Lattice, Structure

    from battgen.data.evaluate import MAX_ATOMS, check_structure

    lco = discharged_structure(_candidate("layered-O3_Co_O_x1_Li1"))
    with pytest.raises(ValueError, match="contains no Na"):
        check_structure(lco, "Na")
    with pytest.raises(ValueError, match="at most"):
        check_structure(lco * (3, 3, 2), "Li")
    assert len(lco * (3, 3, 2)) > MAX_ATOMS
    metal = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="needs a host"):
        check_structure(metal, "Li")
    disordered = lco.copy()
    disordered.replace(1, {"Co": 0.5, "Ni": 0.5})
    with pytest.raises(ValueError, match="partial occupancies"):
        check_structure(disordered, "Li")
    heavy = Structure(Lattice.cubic(5), ["Li", "Am"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="no training data for Am"):
        check_structure(heavy, "Li")
    with pytest.raises(ValueError, match="unknown working ion"):
        check_structure(lco, "Fe")


def test_structure_text_round_trips_through_the_reader():
    from battgen.data.evaluate import read_structure, structure_to_text

    lco = discharged_structure(_candidate("layered-O3_Co_O_x1_Li1"))
    for fmt, name in (("cif", "a.cif"), ("poscar", "POSCAR")):
        again = read_structure(structure_to_text(lco, fmt).encode(), name)
        assert again.composition == lco.composition
        assert np.allclose(again.lattice.abc, lco.lattice.abc, atol=1e-4)


@pytest.mark.slow
def test_builder_runs_on_a_dask_cluster(tmp_path):
    from dask.distributed import LocalCluster

    from battgen.data.build_plan import BuildPlan
    from battgen.data.builder import build_electrodes
    from battgen.data.table import load_table

    plan = BuildPlan(ions=("Li",), templates=("layered-1T",), limit=1, steps=60)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        build_electrodes(tmp_path / "t", plan, cache_dir=tmp_path / "c",
                         dask_scheduler=cluster.scheduler_address, progress=False)
    assert len(load_table(tmp_path / "t")) + len(pd.read_csv(tmp_path / "t" / "rejected.csv")) == 1
    assert len(list((tmp_path / "c").rglob("*.json"))) == 3  # metal, host, discharged


def test_nearly_converged_relaxations_are_continued_once_and_far_ones_are_not():
    from battgen.data.builder import CONTINUE_BELOW, continue_relaxation, needs_continuation
    from battgen.data.relax import relax

    near = {"converged": False, "max_force": CONTINUE_BELOW / 2}
    assert needs_continuation(near)
    assert not needs_continuation({**near, "continued": True})
    assert not needs_continuation({**near, "max_force": 5 * CONTINUE_BELOW})
    assert not needs_continuation({**near, "converged": True})
    assert not needs_continuation({"error": "RuntimeError: boom"})

    structure = framework_structure(_candidate("layered-1T_Ti_S_x1_Li1"))
    structure.scale_lattice(structure.volume * 1.3)  # start off the minimum so it needs work
    first = relax(structure, steps=1).as_dict()  # a line-search BFGS needs only a few steps
    assert not first["converged"]
    merged = continue_relaxation(first, fmax=0.1, steps=120)
    assert merged["continued"] and merged["converged"]
    assert merged["steps"] > first["steps"] and merged["seconds"] >= first["seconds"]
    assert merged["energy"] < first["energy"]
