"""Energy above hull on every row: the offline hull's energy scale, the table step and its CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from battgen import paths
from battgen.data.stability import stability_columns
from battgen.data.table import load_table, save_table
from battgen.design.hull import chgnet_entry, correct, e_above_hull, hull_pool, reference_entries

SHIPPED = paths.asset_dir(paths.ELECTRODES)
REPO = SHIPPED.parents[1]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_table(SHIPPED)


@pytest.fixture(scope="module")
def co_o_rows(table) -> pd.DataFrame:
    """Every computed row in the Li–Co–O and Na–Co–O systems, and a few Ti–S ones."""
    keep = table["formula_discharge"].isin(["LiCoO2", "NaCoO2", "LiTiS2"])
    return table[keep].reset_index(drop=True)


def test_chgnet_energies_sit_on_the_corrected_mp_scale_and_are_not_corrected_again(table):
    # CHGNet learnt MPtrj's MP2020-corrected energies: the compounds the table shares with
    # pymatgen's references must land near the references' *corrected* energies. Correcting
    # the CHGNet side a second time moved the GGA+U oxides and fluorides ~0.9 eV/atom below.
    pool = hull_pool(table)
    references = {e.composition.reduced_formula: e.energy_per_atom for e in correct(reference_entries())}
    ours: dict[str, float] = {}
    for e in pool:
        if e.entry_id.endswith((":discharge", ":charge")) and len(e.composition.elements) > 1:
            f = e.composition.reduced_formula
            ours[f] = min(ours.get(f, np.inf), e.energy_per_atom)
            assert e.correction == 0
    shared = sorted(set(ours) & set(references))
    assert len(shared) >= 5, shared
    differences = np.array([ours[f] - references[f] for f in shared])
    assert abs(np.median(differences)) < 0.15, dict(zip(shared, differences.round(3)))


def test_every_computed_row_gets_a_height_and_its_competing_phases(co_o_rows, tmp_path):
    out, report = stability_columns(co_o_rows)
    for state in ("discharge", "charge"):
        values = out[f"stability_{state}"].astype(float)
        assert values.notna().all()
        assert (values > -1e-6).all()  # the row's own entry is part of the hull
        assert out[f"competing_phases_{state}"].notna().all()
    assert report["rows_computed"] == len(co_o_rows) and report["reference_entries"] == 423
    licoo2 = out[out["id"] == "layered-O3_Co_O_x1_Li1"].iloc[0]
    assert licoo2["competing_phases_discharge"] >= 3  # Li2O, CoO, Co3O4, …
    assert out[out["formula_discharge"] == "LiCoO2"]["stability_discharge"].min() < 1e-6
    # The same number the design loop's single-entry path gives for one row.
    comp = load_row_composition(licoo2)
    single_table = co_o_rows.drop(co_o_rows.index[co_o_rows["id"] == licoo2["id"]])
    single_dir = _saved(single_table, tmp_path)
    one = e_above_hull(chgnet_entry(comp, licoo2["energy_per_atom_discharge"] * comp.num_atoms, "x"), single_dir)
    assert one.e_hull == pytest.approx(licoo2["stability_discharge"], abs=1e-6)


def test_a_raised_energy_raises_the_height_and_mp_rows_keep_their_own(co_o_rows):
    rows = co_o_rows.copy()
    # Above the hull already (delafossite LiCoO2), so raising it does not move the hull.
    target = rows.index[rows["id"] == "delafossite_Co_O_x1_Li1"][0]
    base, _ = stability_columns(rows)
    assert base.loc[target, "stability_discharge"] > 0.05
    rows.loc[target, "energy_per_atom_discharge"] += 0.3
    # An MP row with an absurd energy must neither enter our hull nor lose MP's own value.
    mp = rows.loc[[target]].copy()
    mp["id"], mp["source"], mp["stability_discharge"] = "mp-1_Li", "mp", 0.123
    mp["competing_phases_discharge"] = pd.NA
    mp["energy_per_atom_discharge"] -= 50
    raised, report = stability_columns(pd.concat([rows, mp], ignore_index=True))
    assert raised.loc[target, "stability_discharge"] == pytest.approx(
        base.loc[target, "stability_discharge"] + 0.3, abs=1e-6)
    others = raised.index[:len(rows)].difference([target])
    assert np.allclose(raised.loc[others, "stability_charge"].astype(float),
                       base.loc[others, "stability_charge"].astype(float))
    kept = raised[raised["source"] == "mp"].iloc[0]
    assert kept["stability_discharge"] == 0.123 and pd.isna(kept["competing_phases_discharge"])
    assert report["rows_kept_from_mp"] == 1


def test_shipped_table_has_stability_on_every_row_and_known_electrodes_near_the_hull(table):
    assert table["stability_discharge"].notna().all() and table["stability_charge"].notna().all()
    assert table["competing_phases_discharge"].notna().all()
    for key in ("layered-O3_Co_O_x1_Li1", "spinel_Mn_O_x1_Li2", "olivine-Na_Fe_O_x1_Li4"):
        row = table[table["id"] == key].iloc[0]
        assert row["stability_discharge"] < 0.05, (key, row["stability_discharge"])
    assert "stability" in json.loads((SHIPPED / "metadata.json").read_text())


def test_cli_fills_a_table_written_without_the_new_columns(tmp_path, co_o_rows):
    directory = _saved(co_o_rows, tmp_path / "old")
    old = pd.read_parquet(directory / "electrodes.parquet").drop(
        columns=["competing_phases_discharge", "competing_phases_charge"])
    old.to_parquet(directory / "electrodes.parquet", index=False)  # as main's builder writes it
    shutil.copy(SHIPPED / "metadata.json", directory / "metadata.json")
    assert load_table(directory)["competing_phases_discharge"].isna().all()
    run = subprocess.run([sys.executable, "-m", "battgen", "data", "stability", "--table", str(directory)],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    filled = load_table(directory)
    assert filled["competing_phases_discharge"].notna().all()
    assert filled["stability_discharge"].notna().all()
    assert json.loads((directory / "metadata.json").read_text())["stability"]["rows_computed"] == len(co_o_rows)
    summary = subprocess.run([sys.executable, "-m", "battgen", "data", "summary", "--json", "--table",
                              str(directory)], capture_output=True, text=True, cwd=REPO, timeout=300)
    counted = json.loads(summary.stdout)
    assert counted["structure_types"] == co_o_rows["structure_type"].nunique() >= 1
    assert sum(counted["per_structure_type"].values()) == len(co_o_rows) and counted["host_frameworks"] >= 1
    coverage = counted["stability"]
    assert coverage["discharge"]["coverage"] == 1.0 and coverage["charge"]["with_e_hull"] == len(co_o_rows)


def load_row_composition(row):
    from pymatgen.core import Structure

    return Structure.from_dict(json.loads(row["structure_discharge"])).composition


def _saved(rows: pd.DataFrame, directory):
    save_table(rows, directory)
    return directory
