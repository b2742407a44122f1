"""The builder's plan: structure types, their geometry, partial fillings, settings-aware cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from battgen.data.frameworks import (
    ANION_CHARGE,
    ROLE_SPECIES,
    SPECTATOR_CHARGE,
    TEMPLATES,
    aflow_prototype,
    discharged_structure,
    framework_structure,
    plan_candidates,
)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_every_template_has_bond_lengths_of_a_crystal(template):
    """Hand-typed Wyckoff positions are checked here, before any relaxation sees them."""
    s = template.structure()
    anion_like = {ROLE_SPECIES["X"], *ANION_CHARGE, *SPECTATOR_CHARGE}
    for site in s:
        neighbors = s.get_neighbors(site, 2.7)
        assert all(n.nn_distance > 1.05 for n in neighbors)  # C≡N (1.12 Å) is the shortest bond
        if site.specie.symbol == ROLE_SPECIES["M"]:
            # a coordination polyhedron: four or more anions within 2.7 Å (tetrahedra upwards)
            assert sum(n.specie.symbol in anion_like for n in neighbors) >= 4, template.name
        if site.specie.symbol == ROLE_SPECIES["A"]:
            # Room for an ion among the host atoms; A sites may crowd each other (rutile's
            # channel sites are c/2 apart) since partial fillings take far-apart ones.
            host = [n.nn_distance for n in s.get_neighbors(site, 4.0)
                    if n.specie.symbol != ROLE_SPECIES["A"]]
            assert min(host) > 1.6, template.name


def test_the_plan_reaches_the_breadth_of_issue_15():
    from battgen.data.build_plan import BuildPlan

    summary = BuildPlan().summary()
    assert summary["structure_types"] >= 25
    assert summary["host_frameworks"] >= 120
    assert summary["electrodes"] >= 3000
    assert min(summary["per_ion"].values()) >= 150 and len(summary["per_ion"]) == 10
    for name in ("olivine", "layered-P2", "anatase", "hollandite", "prussian-blue", "V2O5",
                 "chevrel", "nasicon", "spinel", "layered-O3"):
        assert summary["per_structure_type"][name]["electrodes"] > 0, name
    assert summary["relaxations"] == (10 + summary["host_frameworks"] + summary["electrodes"]
                                      + summary["intermediate_states"])


def test_one_aflow_label_names_two_compounds_and_the_elements_pick_one():
    assert aflow_prototype("ABC3_hR10_167_a_b_e", ("Li", "Nb", "O")).composition.reduced_formula == "LiNbO3"
    assert aflow_prototype("ABC3_hR10_167_a_b_e", ("C", "Ca", "O")).composition.reduced_formula == "CaCO3"


def test_half_filled_states_sit_between_the_end_members():
    cands = plan_candidates()
    with_partial = [c for c in cands if c.intermediates]
    assert all(c.n_ions >= 2 for c in with_partial)
    assert not any(c.intermediates for c in cands if c.n_ions < 2)
    c = next(c for c in cands if c.key == "olivine_Fe_O_x1_Li4")
    (half,) = c.intermediates
    assert half.n_ions == 2 and half.framework_key == c.framework_key
    assert c.metal_ox_discharged < half.metal_ox_discharged < c.metal_ox_charged
    assert discharged_structure(half).composition.reduced_formula == "LiFe2(PO4)2"
    assert len(discharged_structure(c)) - len(discharged_structure(half)) == 2
    assert np.allclose(discharged_structure(half).lattice.matrix, framework_structure(c).lattice.matrix)


def test_prussian_blue_balances_cyanide_as_one_minus_per_cn():
    c = next(c for c in plan_candidates() if c.key == "prussian-blue_Fe_N_x1_Na2")
    assert (c.metal_ox_charged, c.metal_ox_discharged) == (3.0, 2.0)
    assert discharged_structure(c).composition.reduced_formula == "NaFe(CN)3"


def test_builder_plans_the_half_filled_states_and_redoes_a_cache_made_with_other_settings(tmp_path):
    from battgen.data.build_plan import BuildPlan
    from battgen.data.builder import needs_work, relax_tasks
    from battgen.data.relax_cache import cache_file, load_cached

    plan = BuildPlan(ions=("Li",), templates=("olivine",))
    keys = {(t.kind, t.key) for t in relax_tasks(plan)}
    assert ("discharged", "olivine_Fe_O_x1_Li4") in keys and ("discharged", "olivine_Fe_O_x1_Li2") in keys
    assert ("charged", "olivine_Fe_O_x1") in keys

    path = cache_file(tmp_path, "charged", "olivine_Fe_O_x1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"error": "RuntimeError: from an older build"}))  # no settings
    assert needs_work(path, plan.relax_settings)
    assert load_cached(tmp_path, "charged", "olivine_Fe_O_x1") == "RuntimeError: from an older build"
    assert load_cached(tmp_path, "charged", "olivine_Fe_O_x1", plan.relax_settings) is None
    path.write_text(json.dumps({"error": "RuntimeError: x", "settings": plan.relax_settings}))
    assert not needs_work(path, plan.relax_settings)
    assert needs_work(path, {**plan.relax_settings, "optimizer": "FIRE"})


@pytest.mark.slow
def test_a_half_filled_p2_host_gives_the_voltage_profile_two_steps(tmp_path):
    from battgen.data.assemble import candidate_row
    from battgen.data.build_plan import BuildPlan
    from battgen.data.builder import RelaxTask, run_task
    from battgen.data.relax_cache import load_cached
    from battgen.data.table import row_provenance

    plan = BuildPlan()
    c = next(c for c in plan_candidates() if c.key == "layered-P2_Co_O_x1_Na2")
    (half,) = c.intermediates
    tasks = [RelaxTask("reference", "Na", ion="Na"), RelaxTask("charged", c.framework_key, candidate=c),
             RelaxTask("discharged", c.key, candidate=c), RelaxTask("discharged", half.key, candidate=half)]
    for t in tasks:
        run_task(str(tmp_path), t, plan.fmax, plan.steps, optimizer=plan.optimizer)
    ref, charged, full, partial = (load_cached(tmp_path, t.kind, t.key, plan.relax_settings) for t in tasks)
    row = row_provenance(candidate_row(c, full, charged, ref, plan, {half.n_ions: partial}))
    assert row["intermediate_ions_per_cell"] == [1]
    assert row["voltage_steps"] == 2
    without = candidate_row(c, full, charged, ref, plan)
    assert row_provenance(without)["voltage_steps"] == 1


def test_li4ti5o12_keeps_its_16d_lithium_and_moves_8a_to_16c_on_discharge():
    c = next(c for c in plan_candidates() if c.template == "Li4Ti5O12" and c.metal == "Ti")
    assert {x.ion for x in plan_candidates() if x.template == "Li4Ti5O12"} == {"Li"}
    charged, discharged = framework_structure(c), discharged_structure(c)
    assert charged.composition.reduced_formula == "Li4Ti5O12"
    assert discharged.composition.reduced_formula == "Li7Ti5O12"
    assert (c.metal_ox_charged, c.metal_ox_discharged) == (4.0, 3.4)
    assert c.n_ions - c.n_vacated == 6 and not c.intermediates  # 3 Li per Li4Ti5O12, two formulas
    assert np.allclose(charged.lattice.matrix, discharged.lattice.matrix)

    def li_sites(s, coordination):
        out = []
        for site in s:
            if site.specie.symbol == "Li":
                oxygens = [n for n in s.get_neighbors(site, 2.3) if n.specie.symbol == "O"]
                out.append(len(oxygens))
        return sorted(out).count(coordination)

    # Charged: 6 tetrahedral (8a) + 2 octahedral (16d) Li; discharged: all 14 octahedral, and
    # no two Li face-sharing (8a and 16c are 1.81 Å apart).
    assert li_sites(charged, 4) == 6 and li_sites(charged, 6) == 2
    assert li_sites(discharged, 6) == 14
    li = [i for i, site in enumerate(discharged) if site.specie.symbol == "Li"]
    d = discharged.distance_matrix[np.ix_(li, li)]
    assert d[np.triu_indices(len(li), 1)].min() > 2.5


def test_li2mno3_keeps_its_transition_metal_layer_lithium_whatever_the_ion():
    cands = {c.key: c for c in plan_candidates() if c.template == "Li2MnO3"}
    li, na = cands["Li2MnO3_Mn_O_x1_Li3"], cands["Li2MnO3_Mn_O_x1_Na3"]
    assert discharged_structure(li).composition.reduced_formula == "Li2MnO3"
    assert discharged_structure(na).composition.reduced_formula == "Na3LiMn2O6"
    assert framework_structure(na).composition.reduced_formula == "LiMn2O6"
    assert (li.metal_ox_charged, li.metal_ox_discharged) == (5.5, 4.0)
    assert not any(c.metal in ("Ti", "Ni", "Co", "Fe") for c in cands.values())  # no M(5.5+) there
