"""The design store: persistence across instances (an app restart), interrupted jobs, cancel, exports."""

from __future__ import annotations

import io
import socket
import sqlite3
import zipfile

import pandas as pd
from pymatgen.core import Lattice, Structure

from battgen.design.export import csv_bytes, design_records, structures_zip
from battgen.design.store import DesignStore

REQUEST = {"working_ion": "Li", "targets": {"average_voltage": 3.5, "capacity_grav": 150.0},
           "properties": {}, "max_candidates": 1, "proposals": 10, "arms": ["guided"], "relax_steps": 5,
           "seed": 0, "extra": {}}


def _structure(ion: bool) -> dict:
    species = ["Li", "Co", "O", "O"] if ion else ["Co", "O", "O"]
    coords = [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.24], [0, 0, 0.76]] if ion else [[0, 0, 0], [0, 0, 0.24], [0, 0, 0.76]]
    return Structure(Lattice.hexagonal(2.8, 14.0), species, coords).as_dict()


def _proposal(key: str) -> dict:
    return {"key": key, "arm": "guided", "source_id": "layered-O3_Co_O_x1_Li1", "structure_type": "layered-O3",
            "substitution": "Co, O", "structure": _structure(True), "weight": 0.1, "prior_overlap": 0.5,
            "estimates": {"average_voltage": 3.6, "capacity_grav": 274.0, "energy_grav": 986.0},
            "score": 0.1, "formula": "LiCoO2"}


def _filled_store(path) -> tuple[DesignStore, str]:
    store = DesignStore(path)
    design_id = store.create(REQUEST)
    store.set_status(design_id, "running", stage="proposing")
    store.record_funnel(design_id, "guided", {"proposed": 10, "distance": 9, "neutral": 7, "unique": 5, "novel": 4,
                                              "selected": 3}, {"charged oxidation states": 2}, 1.5)
    store.add_candidate(design_id, "guided", 0, _proposal("a"))
    store.add_candidate(design_id, "guided", 1, _proposal("b"))
    store.finish_candidate(design_id, "guided", {
        "key": "a", "arm": "guided", "status": "verified", "reason": "", "formula_discharge": "LiCoO2",
        "formula_charge": "CoO2", "properties": {"average_voltage": 4.1, "capacity_grav": 274.0, "capacity_vol": 1400.0,
                                                 "energy_grav": 1100.0, "energy_vol": 5000.0, "max_delta_volume": 0.02},
        "e_hull": 0.01, "e_hull_charge": 0.05, "competing_phases": 6, "novel": False,
        "structure_discharge": _structure(True), "structure_charge": _structure(False), "seconds": 12.0})
    store.finish_candidate(design_id, "guided", {"key": "b", "arm": "guided", "status": "failed",
                                                 "reason": "the charged relaxation did not converge in 5 steps"})
    store.update_counts(design_id, "guided", relaxed=2, verified=1)
    store.set_status(design_id, "done", stage="done", message="1 verified", seconds=20.0)
    return store, design_id


def test_a_design_survives_a_new_store_instance(tmp_path):
    _, design_id = _filled_store(tmp_path / "d.sqlite")
    reopened = DesignStore(tmp_path / "d.sqlite")
    design = reopened.design(design_id)
    assert design["status"] == "done" and design["request"] == REQUEST and design["finished_utc"]
    assert reopened.funnels(design_id)["guided"]["counts"]["verified"] == 1
    assert reopened.funnels(design_id)["guided"]["counts"]["proposed"] == 10
    listed = reopened.list_designs()
    assert [d["id"] for d in listed] == [design_id] and listed[0]["verified"] == 1
    failed = reopened.candidates(design_id, status="failed")
    assert len(failed) == 1 and "did not converge" in failed[0]["reason"]


def test_only_designs_of_dead_processes_are_marked_interrupted(tmp_path):
    store = DesignStore(tmp_path / "d.sqlite")
    mine = store.create(REQUEST)
    gone = store.create(REQUEST)
    elsewhere = store.create(REQUEST)
    with sqlite3.connect(store.path) as conn:
        # pid 2**22 + 1 is above Linux's pid_max default, so no process has it.
        conn.execute("UPDATE designs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:{2**22 + 1}", gone))
        conn.execute("UPDATE designs SET owner = 'another-host:1' WHERE id = ?", (elsewhere,))
    assert store.mark_interrupted() == 1
    assert store.design(gone)["status"] == "interrupted"
    assert store.design(mine)["status"] == "queued" and store.design(elsewhere)["status"] == "queued"


def test_cancel_flag_and_unknown_design(tmp_path):
    store = DesignStore(tmp_path / "d.sqlite")
    design_id = store.create(REQUEST)
    assert not store.cancel_requested(design_id)
    store.request_cancel(design_id)
    assert store.cancel_requested(design_id)
    try:
        store.design("nope")
    except ValueError as err:
        assert "no design 'nope'" in str(err)
    else:
        raise AssertionError("an unknown design id must be refused")


def test_exports_hold_requested_and_computed_columns_and_structures(tmp_path):
    store, design_id = _filled_store(tmp_path / "d.sqlite")
    records = design_records(store, design_id)
    assert {r["status"] for r in records} == {"verified", "failed"}
    frame = pd.read_csv(io.BytesIO(csv_bytes(records)))
    verified = frame[frame["status"] == "verified"].iloc[0]
    assert verified["requested_average_voltage"] == 3.5 and verified["average_voltage"] == 4.1
    assert verified["e_hull"] == 0.01 and verified["competing_phases"] == 6
    names = zipfile.ZipFile(io.BytesIO(structures_zip(store, design_id))).namelist()
    assert sorted(n.rsplit("_", 1)[1] for n in names) == ["charge.cif", "charge.vasp", "discharge.cif", "discharge.vasp"]
