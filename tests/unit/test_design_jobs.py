"""A design as a Dask job end to end (tiny budget), cancellation, and the CLI's JSON contract."""

from __future__ import annotations

import json

import pytest

from battgen import paths
from battgen.cli import main
from battgen.data.table import load_scaler, load_table
from battgen.design.jobs import make_client, run_design
from battgen.design.request import build_request
from battgen.design.store import DesignStore

pytestmark = pytest.mark.slow
TABLE_DIR = paths.asset_dir(paths.ELECTRODES)


@pytest.fixture(scope="module")
def client():
    # Threads in this process: no worker start-up cost, the same code path as a cluster.
    c = make_client(workers=1, processes=False)
    yield c
    c.close()
    c.cluster.close()


def _request(**kw):
    return build_request(load_table(TABLE_DIR), load_scaler(TABLE_DIR), "Li",
                         {"average_voltage": 3.0, "capacity_grav": 150.0}, **kw)


def test_a_tiny_design_records_every_relaxed_candidate(client, tmp_path):
    store = DesignStore(tmp_path / "d.sqlite")
    request = _request(max_candidates=1, proposals=20, relax_steps=3, arms=("guided", "ion-exchange"))
    design_id = run_design(store, request, client=client)
    design = store.design(design_id)
    assert design["status"] == "done" and design["seconds"] > 0
    funnels = store.funnels(design_id)
    assert set(funnels) == {"guided", "ion-exchange"}
    for arm, funnel in funnels.items():
        counts = funnel["counts"]
        candidates = store.candidates(design_id, arm=arm)
        assert counts["proposed"] == 20 and len(candidates) == counts["relaxed"] >= 1
        assert counts["verified"] == sum(c["status"] == "verified" for c in candidates)
        for c in candidates:
            assert c["status"] in ("verified", "failed")
            if c["status"] == "failed":
                assert c["reason"]  # never silently dropped
            else:
                assert c["result"]["properties"]["average_voltage"] > 0


def test_a_cancelled_design_stops_and_says_so(client, tmp_path):
    store = DesignStore(tmp_path / "d.sqlite")
    request = _request(max_candidates=1, proposals=20, relax_steps=3)
    design_id = store.create(request.as_dict())
    store.request_cancel(design_id)
    run_design(store, request, client=client, design_id=design_id)
    design = store.design(design_id)
    assert design["status"] == "cancelled" and design["message"] == "cancelled by the user"
    assert not store.candidates(design_id, status="running")


def test_cli_prints_parseable_json_and_lists_the_design(capfd, tmp_path):
    db = str(tmp_path / "d.sqlite")
    code = main(["design", "--ion", "Li", "--voltage", "3.5", "--capacity-grav", "150", "--max-candidates", "1",
                 "--proposals", "15", "--relax-steps", "3", "--json", "--db", db])
    out = capfd.readouterr().out
    assert code == 0
    summary = json.loads(out)  # nothing else on stdout, not even CHGNet's banner from the worker
    assert summary["status"] == "done" and summary["request"]["targets"] == {"average_voltage": 3.5,
                                                                             "capacity_grav": 150.0}
    relaxed = summary["candidates"] + summary["not_verified"]
    assert len(relaxed) == summary["funnel"]["guided-prerelaxed"]["counts"]["relaxed"]  # the default arm
    for r in summary["candidates"]:
        assert {"id", "formula_discharge", "requested", "computed", "e_hull", "competing_phases", "novel"} <= set(r)
    assert main(["design", "--list", "--db", db]) == 0
    assert summary["design_id"] in capfd.readouterr().out


def test_the_prerelaxed_arm_reranks_by_short_relaxations(client, tmp_path, monkeypatch):
    import battgen.design.jobs as jobs

    monkeypatch.setattr(jobs, "PRERELAX_CANDIDATES", 2)  # two short relaxations keep the test short
    store = DesignStore(tmp_path / "d.sqlite")
    request = _request(max_candidates=1, proposals=20, relax_steps=3, arms=("guided-prerelaxed",))
    design_id = run_design(store, request, client=client)
    assert store.design(design_id)["status"] == "done"
    counts = store.funnels(design_id)["guided-prerelaxed"]["counts"]
    assert 0 <= counts["prerelaxed"] <= 2
    first = store.candidates(design_id, arm="guided-prerelaxed")[0]["proposal"]["estimates"]
    assert "prerelaxed_average_voltage" in first or "prerelax_failed" in first
