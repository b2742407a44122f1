"""The electrode data layer: composition vectors, scaling, one-hot, splits, weights, table I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data.composition import N_ELEMENTS, composition_vector, formula_guess, top_elements
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS, PropertyScaler, ion_one_hot
from battgen.data.splits import SPLITS, grouped_split, inverse_frequency_weights


def test_composition_vector_counts_atoms_by_atomic_number():
    v = composition_vector("Li4Fe4P4O16")
    assert v.shape == (N_ELEMENTS,)
    assert v[2] == 4 and v[25] == 4 and v[14] == 4 and v[7] == 16  # Li, Fe, P, O
    assert v.sum() == 28
    assert formula_guess(v) == "LiFePO4"
    assert top_elements(v, k=1) == [("O", 16.0)]
    assert {sym for sym, _ in top_elements(v, k=4)} == {"O", "Li", "Fe", "P"}


def test_composition_vector_rejects_wrong_length_predictions():
    with pytest.raises(ValueError, match="112"):
        top_elements(np.zeros(50))


def test_property_scaler_round_trip_and_out_of_range_stays_visible():
    values = np.array([[1.0, 100, 300, 200, 800, 0.01], [4.0, 300, 900, 900, 3000, 0.3]])
    scaler = PropertyScaler.fit(values)
    scaled = scaler.transform(values)
    assert np.allclose(scaled, [[0] * 6, [1] * 6])
    assert np.allclose(scaler.inverse_transform(scaled), values)
    beyond = scaler.transform([[5.0, 100, 300, 200, 800, 0.01]])
    assert beyond[0, 0] > 1  # not clipped
    again = PropertyScaler.from_dict(scaler.as_dict())
    assert again == scaler


def test_property_scaler_rejects_nan_and_survives_constant_columns():
    with pytest.raises(ValueError, match="NaN"):
        PropertyScaler.fit(np.array([[np.nan] * 6]))
    scaler = PropertyScaler.fit(np.ones((3, 6)))
    assert np.isfinite(scaler.transform(np.ones((1, 6)))).all()


def test_ion_one_hot_follows_the_fixed_ion_order():
    assert ion_one_hot("Li").tolist() == [1] + [0] * 9
    hot = ion_one_hot(["Cs", "Mg"])
    assert hot.shape == (2, 10)
    assert hot[0, WORKING_IONS.index("Cs")] == 1 and hot[1, WORKING_IONS.index("Mg")] == 1
    with pytest.raises(ValueError, match="unknown working ion"):
        ion_one_hot("Xx")


def _synthetic_groups(seed=0):
    rng = np.random.default_rng(seed)
    groups, ions = [], []
    for ion in WORKING_IONS:
        n_groups = int(rng.integers(3, 40))
        for g in range(n_groups):
            for _ in range(int(rng.integers(1, 5))):
                groups.append(f"{ion}-{g}")
                ions.append(ion)
    return np.array(groups), np.array(ions)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_split_keeps_groups_whole_and_every_ion_in_every_split(seed):
    groups, ions = _synthetic_groups(seed)
    split = grouped_split(groups, ions, seed=seed)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    for ion in WORKING_IONS:
        assert set(split[ions == ion]) == set(SPLITS)
    share = np.mean(split == "train")
    assert 0.55 < share < 0.85


def test_a_grown_table_keeps_the_old_splits_and_deals_only_the_new_groups():
    groups, ions = _synthetic_groups(1)
    old = grouped_split(groups, ions, seed=0)
    keep = dict(zip(groups, old))
    # The same groups plus new ones: 30 % more rows, new formulas for every ion.
    extra = np.array([f"new{i}" for i in range(len(groups) // 3)], dtype=object)
    extra_ions = ions[: len(extra)]
    grown_groups, grown_ions = np.concatenate([groups, extra]), np.concatenate([ions, extra_ions])
    grown = grouped_split(grown_groups, grown_ions, seed=0, keep=keep)
    assert (grown[: len(groups)] == old).all()
    assert set(grown[len(groups):]) == set(SPLITS)  # the new groups are dealt too, not all to train
    drawn_afresh = grouped_split(grown_groups, grown_ions, seed=0)
    assert (drawn_afresh[: len(groups)] != old).any()  # what keep prevents
    # Without keep nothing changes: the shipped table's splits stay reproducible.
    assert (grouped_split(groups, ions, seed=0, keep=None) == old).all()
    with pytest.raises(ValueError, match="unknown splits"):
        grouped_split(groups, ions, keep={groups[0]: "holdout"})


def test_a_tables_splits_are_read_by_discharged_formula():
    from battgen.data.table import table_splits

    df = pd.DataFrame({"formula_discharge": ["LiCoO2", "LiCoO2", "NaFePO4"], "split": ["test", "test", "train"]})
    assert table_splits(df) == {"LiCoO2": "test", "NaFePO4": "train"}
    df.loc[1, "split"] = "train"
    with pytest.raises(ValueError, match="LiCoO2.*two splits"):
        table_splits(df)


def test_grouped_split_is_deterministic_and_refuses_ions_with_too_few_groups():
    groups, ions = _synthetic_groups(3)
    assert (grouped_split(groups, ions, seed=7) == grouped_split(groups, ions, seed=7)).all()
    with pytest.raises(ValueError, match="at least 3"):
        grouped_split(np.array(["a", "a", "b"]), np.array(["Li"] * 3))
    lenient = grouped_split(np.array(["a", "a", "b"]), np.array(["Li"] * 3), strict=False)
    assert set(lenient) == {"train"}


def test_inverse_frequency_weights_give_each_ion_equal_total_weight():
    ions = np.array(["Li"] * 90 + ["Cs"] * 10)
    w = inverse_frequency_weights(ions)
    assert np.isclose(w.mean(), 1.0)
    assert np.isclose(w[ions == "Li"].sum(), w[ions == "Cs"].sum())
    with pytest.raises(ValueError):
        inverse_frequency_weights([])


def test_table_round_trip(tmp_path):
    from battgen.data.table import COLUMNS, load_scaler, load_table, save_table

    shipped = load_table()
    save_table(shipped.head(5), tmp_path)
    again = load_table(tmp_path)
    assert list(again.columns) == list(COLUMNS)
    assert again["id"].tolist() == shipped["id"].head(5).tolist()
    assert np.allclose(np.stack(again["composition"]), np.stack(shipped["composition"].head(5)))
    scaler = load_scaler(tmp_path)
    assert scaler.names == PROPERTY_NAMES
    with pytest.raises(ValueError, match="no electrode table"):
        load_table(tmp_path / "missing")


def test_rows_give_back_structures_and_a_voltage_profile():
    from battgen.data.table import load_table, row_electrode, row_structure

    row = load_table().iloc[0]
    discharged, charged = row_structure(row, "discharge"), row_structure(row, "charge")
    assert discharged.composition.reduced_formula == row["formula_discharge"]
    assert row["working_ion"] in {el.symbol for el in discharged.composition}
    electrode = row_electrode(row)
    assert np.isclose(electrode.get_average_voltage(), row["average_voltage"], atol=1e-6)
    with pytest.raises(ValueError, match="state"):
        row_structure(row, "half")


def test_nearest_neighbours_find_an_exact_row_at_distance_zero():
    from battgen.data.neighbors import nearest_by_composition, nearest_by_properties
    from battgen.data.table import load_scaler, load_table

    df, scaler = load_table(), load_scaler()
    row = df.iloc[len(df) // 2]
    hits = nearest_by_properties(df, {k: row[k] for k in PROPERTY_NAMES}, scaler, k=3)
    assert hits.iloc[0]["id"] == row["id"] and hits.iloc[0]["property_distance"] == pytest.approx(0)
    assert hits["property_distance"].is_monotonic_increasing
    same = nearest_by_composition(df, np.asarray(row["composition"]), k=3)
    assert same.iloc[0]["composition_distance"] == pytest.approx(0)
    only_ion = nearest_by_properties(df, {"average_voltage": 3.0}, scaler, ion=row["working_ion"])
    assert set(only_ion["working_ion"]) == {row["working_ion"]}


def test_row_provenance_reads_the_json_column_and_refuses_garbage():
    from battgen.data.table import load_table, row_provenance

    row = load_table().iloc[0]
    assert isinstance(row_provenance(row), dict) and row_provenance(row)
    assert row_provenance({"provenance": ""}) == {}
    with pytest.raises(ValueError, match="unreadable provenance"):
        row_provenance({"id": "x", "provenance": "{not json"})
