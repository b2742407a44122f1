"""Every page that reads the electrode table can read a fetched Materials Project table instead.

The MP table is written by the real fetch (``fetch_mp``) from real emmet-core documents built
offline (tests/unit/test_mp_fetch.py); only MP's search call is replaced. The screening model is
the toy one of tests/screening_root.py: these tests check which table a page reads, not a
model's quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from battgen.data.table import load_table
from battgen.ui.tables import CHOICE_KEY, TABLE_SOURCES
from tests.screening_root import build_screening_root
from tests.unit.test_mp_fetch import _searcher, docs  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
MP = TABLE_SOURCES[1]


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def root(tmp_path_factory, docs):  # noqa: F811
    from battgen.data.mp_fetch import fetch_mp

    root = build_screening_root(tmp_path_factory.mktemp("table_choice"))
    fetch_mp(root / "data" / "electrodes" / "mp", ions=("Li", "Na"), progress=False, search=_searcher(docs),
             api_key="TESTkey-not-a-real-one")
    return root


@pytest.fixture()
def mp_ids(root) -> set[str]:
    return set(load_table(root / "data" / "electrodes" / "mp")["id"])


def page(name: str, root: Path, monkeypatch, choice: str | None = None) -> AppTest:
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(root))
    app = AppTest.from_file(str(REPO / "pages" / name), default_timeout=TIMEOUT_S)
    if choice is not None:
        app.session_state[CHOICE_KEY] = choice  # as another page of the same session left it
    return ok(app.run())


def test_screening_ranks_the_materials_project_electrodes_when_chosen(root, mp_ids, monkeypatch):
    app = page("candidate_screening.py", root, monkeypatch)
    assert app.radio(key="screen_table_source").value == TABLE_SOURCES[0]
    app.radio(key="screen_table_source").set_value(MP)
    ok(app.run())
    assert app.session_state[CHOICE_KEY] == MP  # held for the other pages
    assert any("Materials Project table" in c.value for c in app.caption)
    app.selectbox(key="screen_ion").set_value("Li")
    ok(app.run())
    app.number_input(key="screen_steps").set_value(2)
    app.button(key="screen_generate").click()
    ok(app.run())
    assert not app.error, [e.value for e in app.error]
    candidates = app.session_state["screen_result"].candidates
    assert len(candidates) == 2 and set(candidates["id"]) <= mp_ids

    app.radio(key="screen_table_source").set_value(TABLE_SOURCES[0])  # back: the old result is dropped
    ok(app.run())
    assert "screen_result" not in app.session_state


def test_screening_an_ion_the_mp_table_lacks_is_one_clear_error(root, monkeypatch):
    app = page("candidate_screening.py", root, monkeypatch, choice=MP)
    app.selectbox(key="screen_ion").set_value("Mg")
    ok(app.run())
    app.number_input(key="screen_steps").set_value(2)
    app.button(key="screen_generate").click()
    ok(app.run())
    assert len(app.error) == 1 and "no Mg electrodes" in app.error[0].value


def test_the_choice_made_on_one_page_holds_on_the_others(root, mp_ids, monkeypatch):
    structures = page("structure_browser.py", root, monkeypatch, choice=MP)
    assert structures.radio(key="table_source").value == MP
    assert any("**3** of 3 electrodes" in m.value for m in structures.markdown)

    afm = page("afm_translation.py", root, monkeypatch, choice=MP)
    assert afm.radio(key="afm_table_source").value == MP
    afm.radio(key="afm_source").set_value("Simulate from a structure")
    ok(afm.run())
    assert set(afm.selectbox(key="afm_material").options) <= {f"{f} · {i}" for i, f in _formulas(root).items()}
    assert {o.split(" · ")[1] for o in afm.selectbox(key="afm_material").options} == mp_ids


def test_without_a_fetched_table_the_pages_say_so_and_keep_battgens(tmp_path, monkeypatch):
    bare = build_screening_root(tmp_path / "bare")
    ours = len(load_table(bare / "assets" / "electrodes"))
    for name, key in (("candidate_screening.py", "screen_table_source"), ("afm_translation.py", "afm_table_source")):
        app = page(name, bare, monkeypatch, choice=MP)
        assert app.radio(key=key).value == MP
        assert any("No Materials Project table here yet" in i.value for i in app.info), name
    screening = page("candidate_screening.py", bare, monkeypatch, choice=MP)
    counts = screening.selectbox(key="screen_ion").options
    assert sum(int(o.split("(")[1].split()[0]) for o in counts) == ours  # BattGen's table, every ion


def _formulas(root: Path) -> dict[str, str]:
    table = load_table(root / "data" / "electrodes" / "mp")
    return dict(zip(table["id"], table["formula_discharge"]))


def test_design_checks_novelty_against_the_mp_table_when_chosen(root, monkeypatch):
    from battgen.design.store import DesignStore, default_path

    app = page("electrode_design.py", root, monkeypatch, choice=MP)
    assert app.radio(key="design_table_source").value == MP
    assert any("**and** the Materials Project table" in c.value for c in app.caption)
    app.multiselect(key="design_arms").set_value(["guided"])
    app.number_input(key="design_k").set_value(1)
    app.number_input(key="design_proposals").set_value(10)
    next(b for b in app.button if b.label == "Design").click()
    ok(app.run())
    assert not app.error, [e.value for e in app.error]
    design_id = app.session_state["design_live"]
    store = DesignStore(default_path())
    request = store.design(design_id)["request"]
    assert request["extra"]["novelty_tables"] == [str(root / "data" / "electrodes" / "mp")]
    # Only the request is under test here (the design loop has its own end-to-end test): stop it.
    cancel = [b for b in app.button if b.key == f"cancel_{design_id}"]
    assert cancel, "the live design shows no Cancel button"
    cancel[0].click()
    ok(app.run())
