"""The funnel's cheap judges: distances, charge neutrality, and the capacity computed before relaxing."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from battgen.data.composition import element_symbols
from battgen.data.table import load_table
from battgen.design.descriptors import descriptor, gravimetric_capacity, metal_oxidation
from battgen.design.validity import MIN_DISTANCE, min_distance, neutral_pair, pymatgen_neutral, smact_neutral


def test_min_distance_sees_close_atoms_and_periodic_images():
    ok = Structure(Lattice.cubic(3.0), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert min_distance(ok) == pytest.approx(3.0 * np.sqrt(3) / 2)
    broken = Structure(Lattice.cubic(3.0), ["Li", "O"], [[0, 0, 0], [0.1, 0, 0]])
    assert min_distance(broken) == pytest.approx(0.3) and min_distance(broken) < MIN_DISTANCE
    single = Structure(Lattice.cubic(2.5), ["Li"], [[0, 0, 0]])
    assert min_distance(single) == pytest.approx(2.5)


def test_neutrality_needs_both_judges_and_both_states():
    assert neutral_pair("LiCoO2", "CoO2") == (True, "")
    # SMACT alone accepts LiCoO3 (Co5+ is in its table); pymatgen's ICSD states do not.
    assert smact_neutral("LiCoO3") and not pymatgen_neutral("LiCoO3")
    ok, reason = neutral_pair("LiCoO3", "CoO3")
    assert not ok and reason.startswith("discharged LiCoO3")
    ok, reason = neutral_pair("LiTiO2", "TiO2")
    assert ok
    ok, reason = neutral_pair("Li2ZnO2", "ZnO2")  # Zn4+ does not exist: the charged state fails
    assert not ok and reason.startswith("charged ZnO2")


def test_capacity_before_relaxing_equals_the_tables():
    table = load_table()
    symbols = element_symbols()
    for _, row in table.sample(60, random_state=0).iterrows():
        counts = np.asarray(row["composition"])
        comp = Composition({symbols[i]: float(counts[i]) for i in np.flatnonzero(counts)})
        assert gravimetric_capacity(comp, row["working_ion"]) == pytest.approx(row["capacity_grav"], rel=1e-6)


def test_descriptor_reads_oxidation_states():
    assert metal_oxidation(Composition("LiFePO4"), "Li") == pytest.approx(2.0)
    assert metal_oxidation(Composition("LiFePO4"), "Li", with_ions=False) == pytest.approx(3.0)
    d = descriptor("LiCoO2", "Li")
    assert d.shape == descriptor("Mg(NiS2)2", "Mg").shape and np.isfinite(d).all()
