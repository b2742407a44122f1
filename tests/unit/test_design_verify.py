"""Verification and the offline hull on real CHGNet relaxations of a tiny table electrode."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Composition, Structure

from battgen import paths
from battgen.data.table import load_table
from battgen.design.hull import chgnet_entry, e_above_hull, mp_parameters
from battgen.design.proposals import Proposal
from battgen.design.verify import verify

pytestmark = pytest.mark.slow
TABLE_DIR = paths.asset_dir(paths.ELECTRODES)


@pytest.fixture(scope="module")
def licoo2_row():
    table = load_table(TABLE_DIR)
    rows = table[(table["formula_discharge"] == "LiCoO2") & (table["structure_type"] == "layered-O3")]
    return rows.iloc[0]


def _proposal(row) -> Proposal:
    structure = Structure.from_dict(json.loads(row["structure_discharge"]))
    return Proposal("table-licoo2", "guided", row["id"], row["structure_type"], "none", structure, 1.0)


def test_hull_flags_gga_u_and_measures_height(licoo2_row):
    assert mp_parameters(Composition("LiCoO2"))["run_type"] == "GGA+U"
    assert mp_parameters(Composition("LiCoS2"))["run_type"] == "GGA"
    comp = Structure.from_dict(json.loads(licoo2_row["structure_discharge"])).composition
    energy = licoo2_row["energy_per_atom_discharge"] * comp.num_atoms
    on = e_above_hull(chgnet_entry(comp, energy, "x"), TABLE_DIR)
    raised = e_above_hull(chgnet_entry(comp, energy + 0.2 * comp.num_atoms, "y"), TABLE_DIR)
    assert on.e_hull is not None and on.e_hull >= -1e-6
    assert raised.e_hull == pytest.approx(on.e_hull + 0.2, abs=1e-6)
    assert on.competing_phases > 0  # Li2O, CoO, Co3O4, … compete with LiCoO2


def test_verifying_a_table_electrode_reproduces_its_numbers(licoo2_row):
    result = verify(_proposal(licoo2_row), "Li", TABLE_DIR, steps=120)
    assert result["status"] == "verified", result.get("reason")
    assert result["formula_discharge"] == "LiCoO2" and result["formula_charge"] == "CoO2"
    assert result["properties"]["average_voltage"] == pytest.approx(licoo2_row["average_voltage"], abs=0.1)
    assert result["properties"]["capacity_grav"] == pytest.approx(licoo2_row["capacity_grav"], rel=1e-6)
    assert result["novel"] is False  # it is the table's own structure
    assert result["e_hull"] is not None and result["competing_phases"] > 0


def test_a_failed_relaxation_is_returned_with_its_reason(licoo2_row):
    proposal = _proposal(licoo2_row)
    proposal.structure.scale_lattice(proposal.structure.volume * 1.6)  # far from equilibrium
    result = verify(proposal, "Li", TABLE_DIR, steps=2)
    assert result["status"] == "failed"
    assert "did not converge in 2 steps" in result["reason"]
