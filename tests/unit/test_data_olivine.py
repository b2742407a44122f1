"""The olivine relaxation of issue 15: left-handed lattices, CHGNet's stress, LiFePO4/FePO4.

pymatgen's bundled LiFePO4.json has a left-handed lattice; CHGNet divides by the signed volume,
so there its stress had the wrong sign and FePO4 expanded uphill to 750 Å³.
"""

from __future__ import annotations

import numpy as np
import pytest

from battgen.data.frameworks import TEMPLATE_BY_NAME, framework_structure, plan_candidates
from battgen.data.relax import right_handed

GPA = 0.006241509  # eV/Å³


def _fepo4():
    c = next(c for c in plan_candidates() if c.key == "olivine_Fe_O_x1_Li4")
    return framework_structure(c)


def test_right_handed_keeps_the_crystal_and_flips_only_the_handedness():
    s = _fepo4()
    assert np.linalg.det(s.lattice.matrix) < 0  # the bundled file, as shipped
    r = right_handed(s)
    assert np.linalg.det(r.lattice.matrix) > 0
    assert np.allclose(r.cart_coords, s.cart_coords)
    assert np.allclose(r.lattice.abc, s.lattice.abc)
    assert np.allclose(r.distance_matrix, s.distance_matrix)
    assert r.composition == s.composition
    assert right_handed(r) is not r and np.allclose(right_handed(r).lattice.matrix, r.lattice.matrix)


def test_chgnet_stress_on_the_right_handed_cell_is_the_strain_derivative_of_its_energy():
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from battgen.data.relax import load_chgnet

    calc = CHGNetCalculator(model=load_chgnet("cpu"), use_device="cpu")
    atoms = AseAtomsAdaptor.get_atoms(right_handed(_fepo4()))
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    cell, volume, h = atoms.get_cell().copy(), atoms.get_volume(), 0.004
    energies = []
    for sign in (-1, 1):
        strained = atoms.copy()
        strained.calc = calc
        strained.set_cell(cell @ np.diag([1 + sign * h, 1, 1]), scale_atoms=True)
        energies.append(strained.get_potential_energy())
    finite_difference = (energies[1] - energies[0]) / (2 * h) / volume
    # FePO4 at LiFePO4's geometry is under tension of about +11.7 GPa along a.
    assert finite_difference / GPA > 5
    assert stress[0, 0] == pytest.approx(finite_difference, rel=0.05)


@pytest.mark.slow
def test_olivine_template_gives_lifepo4_voltage_and_heterosite_volume(tmp_path):
    from battgen.data.build_plan import BuildPlan
    from battgen.data.validate import validation_table

    assert set(TEMPLATE_BY_NAME["olivine"].metals) >= {"Fe", "Mn", "Co", "Ni"}
    table = validation_table(None, BuildPlan(), cache_dir=tmp_path, only=("LiFePO4",))
    row = table.iloc[0]
    assert row["status"] == "computed now"
    assert abs(row["voltage_computed"] - 3.45) < 0.4
    from battgen.data.relax_cache import load_cached

    charged = load_cached(tmp_path, "charged", "olivine_Fe_O_x1")
    assert charged.converged and not charged.climbed
    # Heterosite FePO4: 272 Å³ per 4 formula units (experiment).
    assert abs(charged.structure.volume / 272 - 1) < 0.05
