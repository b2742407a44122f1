"""The Structures page, driven widget by widget with Streamlit's AppTest (no browser).

Assertions are computed from the shipped table itself, so they hold for whatever size the
electrode dataset has.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from battgen.data.evaluate import structure_to_text
from battgen.data.table import load_table, row_structure
from tests.app.job_wait import run_until_job_ends
from tests.structure_files import GOOD_POSCAR

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "pages" / "structure_browser.py"
TIMEOUT_S = 240


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_table()


@pytest.fixture()
def page() -> AppTest:
    app = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S)
    return ok(app.run())


def count_line(app: AppTest) -> str:
    return next(m.value for m in app.markdown if "electrodes match the filters" in m.value)


def button(app: AppTest, label: str):
    return next(b for b in app.get("download_button") if b.label == label)


def test_page_lists_the_whole_table_and_shows_the_first_material(page, table):
    assert f"**{len(table):,}** of {len(table):,}" in count_line(page)
    assert page.session_state["material"] in set(table["id"])
    assert len(page.metric) == 6  # the six properties of the selected electrode
    assert not page.warning, [w.value for w in page.warning]  # 3Dmol.js is served locally


def test_filters_by_ion_range_and_formula(page, table, downloads):
    ion = table["working_ion"].value_counts().index[0]
    page.multiselect(key="filter_ions").set_value([ion])
    ok(page.run())
    n_ion = int((table["working_ion"] == ion).sum())
    assert f"**{n_ion:,}** of" in count_line(page)

    voltages = table.loc[table["working_ion"] == ion, "average_voltage"]
    slider = page.slider(key="range_average_voltage")
    cut = float(voltages.median())
    slider.set_value((slider.min, cut))
    ok(page.run())
    low_bound = page.slider(key="range_average_voltage").value[0]
    expected = int(((table["working_ion"] == ion) & table["average_voltage"].between(low_bound, cut)).sum())
    assert f"**{expected:,}** of" in count_line(page)

    csv = pd.read_csv(io.BytesIO(downloads.of(button(page, "Selection as CSV"))))
    assert len(csv) == expected
    assert set(csv["working_ion"]) == {ion}
    assert csv["average_voltage"].max() <= cut + 1e-9
    assert {"capacity_grav", "energy_vol", "max_delta_volume", "formula_discharge"} <= set(csv.columns)

    page.text_input(key="filter_search").set_value("no-such-formula-xyz")
    ok(page.run())
    assert "**0** of" in count_line(page)
    assert any("No electrode matches" in i.value for i in page.info)
    assert button(page, "Selection as CSV").proto.disabled


def test_selecting_a_material_shows_its_structures_and_downloads(page, table, downloads):
    material = table["id"].iloc[len(table) // 2]
    page.selectbox(key="material").set_value(material)
    ok(page.run())
    row = table.loc[table["id"] == material].iloc[0]
    values = {m.label: m.value for m in page.metric}
    assert values["Average voltage (V)"] == f"{row['average_voltage']:,.2f}"
    assert any(row["formula_discharge"] in s.value for s in page.subheader)

    for state, formula_column in (("discharge", "formula_discharge"), ("charge", "formula_charge")):
        page.radio(key="structure_state").set_value(state)
        ok(page.run())
        cif = downloads.of(button(page, "CIF")).decode()
        poscar = downloads.of(button(page, "POSCAR")).decode()
        expected = row_structure(row, state)
        from pymatgen.core import Structure

        for text, fmt in ((cif, "cif"), (poscar, "poscar")):
            got = Structure.from_str(text, fmt=fmt)
            assert got.composition.reduced_formula == row[formula_column]
            assert len(got) == len(expected)
        facts = page.table[0].value
        assert row[formula_column] in facts.to_string()

    for style in ("spheres", "sticks", "ball-and-stick"):
        page.radio(key="structure_style").set_value(style)
        ok(page.run())


def test_distribution_and_pairwise_plots_for_every_property(page):
    for name in page.selectbox(key="distribution_property").options:
        page.selectbox(key="distribution_property").set_value(name)
        ok(page.run())
    page.radio(key="distribution_kind").set_value("box")
    page.selectbox(key="pair_x").set_value("energy_grav")
    page.selectbox(key="pair_y").set_value("max_delta_volume")
    ok(page.run())


@pytest.mark.parametrize("name,data,message", [
    ("notes.txt", b"hello", "upload a CIF"),
    ("broken.cif", b"data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n", "could not be read"),
    ("empty.vasp", b"", "is empty"),
    ("binary.cif", bytes(range(256)), "not a text file"),
])
def test_malformed_uploads_get_a_clear_message_and_no_evaluate_button(page, name, data, message):
    page.file_uploader(key="upload_file").upload(name, data)
    ok(page.run())
    assert any(message in e.value for e in page.error), [e.value for e in page.error]
    assert not [b for b in page.button if b.label == "Evaluate"]


def test_a_structure_without_the_working_ion_is_refused(page, table):
    row = table.iloc[0]
    charged = row_structure(row, "charge")  # the host alone: no working ion in it
    page.selectbox(key="upload_ion").set_value(row["working_ion"])
    page.file_uploader(key="upload_file").upload("host.cif", structure_to_text(charged, "cif").encode())
    ok(page.run())
    assert any(f"contains no {row['working_ion']}" in e.value for e in page.error)


@pytest.mark.slow
def test_uploading_a_discharged_structure_computes_its_electrode(page):
    from pymatgen.core import Lattice, Structure

    # LiTiS2 (1T): four atoms, so the three CHGNet relaxations take seconds.
    lits2 = Structure(Lattice.hexagonal(3.43, 6.19), ["Li", "Ti", "S", "S"],
                      [[0, 0, 0.5], [0, 0, 0], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    page.selectbox(key="upload_ion").set_value("Li")
    page.file_uploader(key="upload_file").upload("LiTiS2.vasp", structure_to_text(lits2, "poscar").encode())
    ok(page.run())
    page.button(key="evaluate").click()
    ok(run_until_job_ends(page.run(), "evaluation_job", timeout=TIMEOUT_S))
    evaluation = page.session_state["evaluation"]["evaluation"]
    assert evaluation.row["formula_discharge"] == "LiTiS2"
    assert evaluation.properties["capacity_grav"] == pytest.approx(225.6, abs=1.0)
    assert 1.0 < evaluation.properties["average_voltage"] < 3.5
    values = {m.label: m.value for m in page.metric}
    assert values["Gravimetric capacity (mAh/g)"].startswith("22")
    assert any("Closest Li electrodes by properties" in m.value for m in page.markdown)
    assert any("Closest electrodes by composition" in m.value for m in page.markdown)


def test_max_e_hull_filters_in_either_state_and_the_stability_tab_plots(page, table):
    slider = page.slider(key="max_e_hull")
    assert slider.value == slider.max  # at its maximum nothing is filtered
    slider.set_value(float(table["stability_discharge"].median()))
    ok(page.run())
    cut = page.slider(key="max_e_hull").value
    assert f"**{int((table['stability_discharge'] <= cut).sum()):,}** of" in count_line(page)
    page.radio(key="hull_state").set_value("both")
    ok(page.run())
    both = int(((table["stability_discharge"] <= cut) & (table["stability_charge"] <= cut)).sum())
    assert f"**{both:,}** of" in count_line(page)
    assert any(c.value.startswith("Energy above hull: discharged ") for c in page.caption)
    page.radio(key="stability_state").set_value("charge")
    ok(page.run())


def test_validation_tab_shows_the_saved_textbook_table(page):
    from battgen.data.validate import TEXTBOOK, load_validation

    saved, about = load_validation(REPO / "assets" / "electrodes")
    frame = next(d.value for d in page.dataframe if "voltage_reference" in d.value.columns)
    assert list(frame["electrode"]) == [r.formula for r in TEXTBOOK] == list(saved["electrode"])
    median = about["median_abs_voltage_error_V"]
    assert any(f"median |voltage error| {median:.2f} V" in m.value for m in page.markdown)


def test_a_table_without_stability_or_validation_says_how_to_make_them(tmp_path, monkeypatch, table):
    directory = tmp_path / "assets" / "electrodes"
    directory.mkdir(parents=True)
    # As main's builder writes it: no competing-phase columns, E_hull empty, no validation.json.
    old = pd.read_parquet(REPO / "assets" / "electrodes" / "electrodes.parquet").head(40)
    old = old.drop(columns=["competing_phases_discharge", "competing_phases_charge"])
    old[["stability_discharge", "stability_charge"]] = float("nan")
    old.to_parquet(directory / "electrodes.parquet", index=False)
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(tmp_path))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    assert "**40** of 40" in count_line(app)
    assert any("python -m battgen data stability" in c.value for c in app.caption)
    assert any("python -m battgen data validate" in i.value for i in app.info)
    assert not [s for s in app.slider if s.key == "max_e_hull"]


def _slow_poscar() -> tuple[str, bytes]:
    """A rattled 2x2x2 LiTiS2 supercell: even with CHGNet already loaded in the worker (an earlier
    test's evaluation), its relaxation takes far longer than one second."""
    import numpy as np
    from pymatgen.core import Structure

    structure = Structure.from_str(GOOD_POSCAR[1].decode(), fmt="poscar")
    structure.make_supercell([2, 2, 2])
    rng = np.random.default_rng(0)
    for i in range(len(structure)):
        structure.translate_sites([i], rng.normal(0, 0.08, 3), frac_coords=False)
    return "LiTiS2-rattled.vasp", structure.to(fmt="poscar").encode()


def test_an_evaluation_past_its_time_limit_ends_with_one_message(page, monkeypatch):
    # The path of a structure that relaxes forever, within a one-second limit.
    monkeypatch.setenv("BATTGEN_JOB_TIMEOUT_EVALUATE", "1")
    page.selectbox(key="upload_ion").set_value("Li")
    page.file_uploader(key="upload_file").upload(*_slow_poscar())
    ok(page.run())
    page.button(key="evaluate").click()
    ok(page.run())
    assert any(e.type == "status" and e.label.startswith("CHGNet evaluation: ") for e in page.main)
    from battgen.ui.jobs import job_runner

    job = job_runner().status(page.session_state["evaluation_job"])  # the page's runner: one per process
    assert job.kind == "evaluate" and job.owner  # owned by the session, so a closed tab frees it
    ok(run_until_job_ends(page, "evaluation_job", timeout=60))
    errors = [e.value for e in page.error]
    assert errors == ["The CHGNet evaluation was stopped after 1 s, its time limit. CHGNet takes too long on this "
                      "structure: try its primitive cell or a structure closer to equilibrium."]
    assert "evaluation" not in page.session_state
    assert [b for b in page.button if b.label == "Evaluate"]  # the session can try again
