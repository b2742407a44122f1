"""The Structures page's stability filter, histogram and sentence (battgen.viz.electrodes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.viz import electrodes as viz


@pytest.fixture()
def rows() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "working_ion": ["Li", "Li", "Na", "Mg"],
        "formula_discharge": ["LiCoO2", "LiNiO2", "NaCoO2", "MgMo6S8"],
        "formula_charge": ["CoO2", "NiO2", "CoO2", "Mo6S8"],
        "framework_formula": ["CoO2", "NiO2", "CoO2", "Mo6S8"],
        "average_voltage": [3.5, 4.0, 2.8, 1.1],
        "stability_discharge": [0.0, 0.02, 0.3, np.nan],
        "stability_charge": [0.007, 0.18, 0.007, np.nan],
        "competing_phases_discharge": pd.array([6, 5, 7, pd.NA], dtype="Int64"),
        "competing_phases_charge": pd.array([2, 1, 2, pd.NA], dtype="Int64"),
    })


def test_max_e_hull_keeps_rows_at_or_below_it_in_the_chosen_state(rows):
    assert list(viz.filter_electrodes(rows)["id"]) == ["a", "b", "c", "d"]
    assert list(viz.filter_electrodes(rows, max_e_hull=0.02)["id"]) == ["a", "b"]
    assert list(viz.filter_electrodes(rows, max_e_hull=0.02, hull_state="charge")["id"]) == ["a", "c"]
    assert list(viz.filter_electrodes(rows, max_e_hull=0.02, hull_state="both")["id"]) == ["a"]
    # A row without E_hull cannot be shown to pass a maximum, however generous.
    assert "d" not in set(viz.filter_electrodes(rows, max_e_hull=10.0)["id"])
    with pytest.raises(ValueError, match="hull_state"):
        viz.filter_electrodes(rows, max_e_hull=0.1, hull_state="discharged")


def test_histogram_stacks_every_finite_value_by_ion(rows):
    fig = viz.histogram_figure(rows, "stability_discharge")
    assert sum(len(t.x) for t in fig.data) == 3  # the NaN row is left out
    assert [t.name for t in fig.data] == ["Li (2)", "Na (1)"]
    assert fig.layout.xaxis.title.text == "E_hull discharged (eV/atom)"
    empty = viz.histogram_figure(rows[rows["id"] == "d"], "stability_discharge")
    assert not empty.data and empty.layout.annotations[0].text == "No electrode has a value here"


def test_voltage_against_e_hull_uses_the_shared_scatter(rows):
    fig = viz.pairwise_figure(rows.dropna(subset=["stability_charge"]), "average_voltage", "stability_charge")
    assert fig.layout.yaxis.title.text == "E_hull charged (eV/atom)"
    assert sorted(float(y) for t in fig.data for y in t.y) == [0.007, 0.007, 0.18]


def test_stability_sentence_names_both_phases_and_their_competition(rows):
    assert viz.stability_sentence(rows.iloc[0]) == (
        "Energy above hull: discharged 0.000 eV/atom (6 competing phases); "
        "charged 0.007 eV/atom (2 competing phases).")
    assert "charged 0.180 eV/atom (1 competing phase)." in viz.stability_sentence(rows.iloc[1])
    assert viz.stability_sentence(rows.iloc[3]) == "Energy above hull: discharged: no E_hull; charged: no E_hull."
