"""Proposals and the funnel on the shipped table: counts, novelty, and the guided arm's aim."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Structure

from battgen import paths
from battgen.data.properties import ION_CHARGE
from battgen.data.table import load_scaler, load_table
from battgen.design.funnel import STAGES, run_funnel
from battgen.design.novelty import NoveltyChecker, unique_indices
from battgen.design.proposals import build_structure, draw_proposals, enumerate_specs, framework_sources
from battgen.design.request import build_request

pytestmark = pytest.mark.slow
TABLE_DIR = paths.asset_dir(paths.ELECTRODES)


@pytest.fixture(scope="module")
def request_li():
    return build_request(load_table(TABLE_DIR), load_scaler(TABLE_DIR), "Li",
                         {"average_voltage": 3.5, "capacity_grav": 150.0}, proposals=60)


def test_sources_hold_the_ion_and_frameworks_of_both_kinds():
    sources = framework_sources(TABLE_DIR, "Mg")
    assert any(s.id.startswith("aflow:") for s in sources) and any(not s.id.startswith("aflow:") for s in sources)
    for s in sources:
        assert "Mg" in s.structure.composition and s.anion in s.structure.composition
        if not s.id.startswith("aflow:"):
            # Mg carries two charges: hosts of Al or Y electrodes (three) cannot be exchanged.
            assert ION_CHARGE[s.original_ion] <= 2


def test_half_decoration_keeps_sites_and_mixes_metals():
    sources = framework_sources(TABLE_DIR, "Li")
    spec = next(s for s in enumerate_specs(sources) if s.half and sources[s.source].n_metal_sites == 2)
    source = sources[spec.source]
    structure = build_structure(source, spec)
    assert len(structure) == len(source.structure)
    amounts = structure.composition.element_composition
    assert amounts[spec.metal] == 1 and amounts[source.metals[0]] == 1


def test_funnel_counts_only_shrink_and_survivors_are_novel(request_li):
    result = run_funnel(request_li, "guided", TABLE_DIR)
    counts = [result.counts[s] for s in STAGES]
    assert counts[0] == 60 and all(a >= b for a, b in zip(counts, counts[1:]))
    assert len(result.ranked) == result.counts["novel"]
    scores = [p.score for p in result.ranked]
    assert scores == sorted(scores)
    checker = NoveltyChecker.for_table(TABLE_DIR)
    assert all(checker.is_novel(p.structure) for p in result.ranked[:5])


def test_a_table_structure_is_not_novel_and_duplicates_collapse():
    table = load_table(TABLE_DIR)
    row = table[table["formula_discharge"] == "LiCoO2"].iloc[0]
    structure = Structure.from_dict(json.loads(row["structure_discharge"]))
    assert not NoveltyChecker.for_table(TABLE_DIR).is_novel(structure)
    shifted = structure.copy()
    shifted.translate_sites(range(len(shifted)), [0.1, 0.2, 0.3])
    assert unique_indices([structure, shifted, structure.copy()]) == [0]


def test_guided_arm_aims_closer_than_the_baseline(request_li):
    from battgen.design.funnel import ranking_targets

    guided = run_funnel(request_li, "guided", TABLE_DIR)
    baseline = run_funnel(request_li, "ion-exchange", TABLE_DIR)
    target = ranking_targets(request_li)["average_voltage"]

    def top_gap(result):
        return np.median([abs(p.estimates["average_voltage"] - target) for p in result.ranked[:5]])

    assert top_gap(guided) < top_gap(baseline)


def test_draws_are_seeded():
    sources = framework_sources(TABLE_DIR, "Na")
    a = [p.key for p in draw_proposals(sources, "Na", "ion-exchange", 25, seed=3)]
    b = [p.key for p in draw_proposals(sources, "Na", "ion-exchange", 25, seed=3)]
    c = [p.key for p in draw_proposals(sources, "Na", "ion-exchange", 25, seed=4)]
    assert a == b and a != c
