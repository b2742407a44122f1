"""The Design page, driven with Streamlit's AppTest (no browser).

The page is pointed (``BATTGEN_ARTIFACT_ROOT``) at a folder holding the shipped electrode table
and a design store filled by the real pipeline: a real funnel and a real CHGNet verification of
a small table electrode (plus one recorded failure), so the page shows what a finished design
looks like after an app restart.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Structure
from streamlit.testing.v1 import AppTest

from battgen import paths
from battgen.data.table import load_scaler, load_table
from battgen.design.funnel import run_funnel
from battgen.design.proposals import Proposal
from battgen.design.request import build_request
from battgen.design.store import DesignStore
from battgen.design.verify import verify

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "pages" / "electrode_design.py"
TIMEOUT_S = 240
TABLE_DIR = paths.asset_dir(paths.ELECTRODES)


def ok(app: AppTest) -> AppTest:
    assert not app.exception, [e.value for e in app.exception]
    return app


def _root(base: Path) -> Path:
    (base / "assets").mkdir(parents=True)
    (base / "assets" / "electrodes").symlink_to(TABLE_DIR)
    return base


@pytest.fixture(scope="module")
def seeded_root(tmp_path_factory) -> tuple[Path, str]:
    root = _root(tmp_path_factory.mktemp("design_root"))
    table = load_table(TABLE_DIR)
    request = build_request(table, load_scaler(TABLE_DIR), "Li", {"average_voltage": 3.5, "capacity_grav": 150.0},
                            max_candidates=1, proposals=20)
    store = DesignStore(root / "data" / "design" / "designs.sqlite")
    design_id = store.create(request.as_dict())
    funnel = run_funnel(request, "guided", TABLE_DIR)
    store.record_funnel(design_id, "guided", funnel.counts, funnel.rejections, funnel.seconds)
    row = table[(table["formula_discharge"] == "LiCoO2") & (table["structure_type"] == "layered-O3")].iloc[0]
    good = Proposal("table-licoo2", "guided", row["id"], "layered-O3", "none",
                    Structure.from_dict(json.loads(row["structure_discharge"])), 1.0,
                    estimates={"average_voltage": 3.6, "capacity_grav": 273.8, "energy_grav": 985.0})
    bad = funnel.ranked[0]
    for rank, (proposal, steps) in enumerate(((good, 120), (bad, 1))):
        store.add_candidate(design_id, "guided", rank, proposal.as_dict())
        store.finish_candidate(design_id, "guided", verify(proposal, "Li", TABLE_DIR, steps=steps))
    store.update_counts(design_id, "guided", relaxed=2, verified=1)
    store.set_status(design_id, "done", stage="done", message="1 verified", seconds=1.0)
    return root, design_id


def test_an_empty_store_invites_a_first_design(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(_root(tmp_path)))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    assert any("No designs yet" in i.value for i in app.info)
    assert app.session_state["design_ion"] == "Li"
    assert app.multiselect(key="design_targets").value == ["average_voltage", "capacity_grav"]


def test_a_request_without_arms_is_refused_on_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(_root(tmp_path)))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    app.multiselect(key="design_arms").set_value([])
    next(b for b in app.button if b.label == "Design").click()
    ok(app.run())
    assert any("choose at least one design arm" in e.value for e in app.error)
    assert not DesignStore(tmp_path / "data" / "design" / "designs.sqlite").list_designs()


def test_a_stored_design_is_shown_after_a_restart(seeded_root, monkeypatch, downloads):
    root, design_id = seeded_root
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(root))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    assert any(design_id in s.value for s in app.subheader)
    assert len(app.get("plotly_chart")) == 2  # funnel and requested-vs-computed
    shown = app.dataframe[0].value
    assert list(shown["formula_discharge"]) == ["LiCoO2"]
    assert shown["requested_average_voltage"].iloc[0] == 3.5
    assert 3.0 < shown["average_voltage"].iloc[0] < 4.2 and shown["competing_phases"].iloc[0] > 0
    failures = app.dataframe[1].value
    assert "did not converge in 1 steps" in failures["reason"].iloc[0]

    csv_button = next(b for b in app.get("download_button") if b.label == "Candidates (CSV)")
    csv = pd.read_csv(io.BytesIO(downloads.of(csv_button)))
    assert sorted(csv["status"]) == ["failed", "verified"]
    cif_button = next(b for b in app.get("download_button") if b.label == "CIF")
    assert Structure.from_str(downloads.of(cif_button).decode(), fmt="cif").composition.reduced_formula == "LiCoO2"
    app.radio(key=f"state_{design_id}").set_value("charge")
    ok(app.run())
    cif_button = next(b for b in app.get("download_button") if b.label == "CIF")
    assert Structure.from_str(downloads.of(cif_button).decode(), fmt="cif").composition.reduced_formula == "CoO2"


@pytest.mark.slow
def test_a_design_requested_on_the_page_runs_and_is_stored(tmp_path, monkeypatch):
    from dask.distributed import LocalCluster

    # The page's app setting for a real cluster, pointed at a scheduler in this process (over TCP:
    # the design runs in a worker process of the app's job runner).
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                           protocol="tcp://")
    monkeypatch.setenv("BATTGEN_DASK_SCHEDULER", cluster.scheduler_address)
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(_root(tmp_path)))
    try:
        app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
        app.number_input(key="design_k").set_value(1)
        app.number_input(key="design_proposals").set_value(20)
        app.number_input(key="design_steps").set_value(10)
        # The plain guided arm: the pre-relaxed default's six CHGNet relaxations would run in this test's
        # in-process Dask worker thread and starve its scheduler of the GIL (the app's workers are processes).
        app.multiselect(key="design_arms").set_value(["guided"])
        next(b for b in app.button if b.label == "Design").click()
        ok(app.run())
        design_id = app.session_state["design_live"]
        store = DesignStore(tmp_path / "data" / "design" / "designs.sqlite")
        import time

        deadline = time.monotonic() + 600
        while store.design(design_id)["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(2)
        design = store.design(design_id)
        assert design["status"] == "done", (design["message"], design)
        relaxed = store.candidates(design_id)
        assert relaxed and all(c["status"] == "verified" or c["reason"] for c in relaxed)
        ok(app.run())
        assert any(design_id in s.value for s in app.subheader)
    finally:
        cluster.close()


def test_the_evaluation_shows_the_proposal_yield_beside_the_aim(tmp_path, monkeypatch):
    from battgen.design.evaluate import YIELD_COMMAND

    root = _root(tmp_path)
    (root / "assets" / "design").symlink_to(paths.asset_dir(paths.DESIGN))
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(root))
    app = ok(AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S).run())
    assert any("Proposal yield" in m.value for m in app.markdown)
    assert any(YIELD_COMMAND in c.value for c in app.caption)
    shown = [d.value for d in app.dataframe]
    yield_frame = next(f for f in shown if "measure" in f.columns)
    assert "novel verified of proposals (%)" in set(yield_frame["measure"])
