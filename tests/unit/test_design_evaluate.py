"""The design evaluation: its fixed requests and the per-arm arithmetic of metrics.json."""

from __future__ import annotations

import pytest

from battgen.data.table import load_scaler, load_table
from battgen.design.evaluate import _arm_metrics, fixed_requests, metrics_table
from battgen.design.request import build_request


def test_twenty_fixed_requests_inside_the_table_range():
    table, scaler = load_table(), load_scaler()
    requests = fixed_requests(table)
    assert len(requests) == 20 and requests == fixed_requests(table)
    assert len({r["name"] for r in requests}) == 20
    assert len({r["ion"] for r in requests[:8]}) == 8  # round-robin: a partial run spans the ions
    test_ids = set(table.loc[table["split"] == "test", "id"])
    assert all(r["name"].removeprefix("test:") in test_ids for r in requests if r["name"].startswith("test:"))
    for r in requests:
        build_request(table, scaler, r["ion"], r["targets"])  # raises if outside the range


def _candidate(arm, status, v=None, q=None, reason=""):
    result = {"status": status, "seconds": 10.0}
    if status == "verified":
        result.update(properties={"average_voltage": v, "capacity_grav": q}, e_hull=0.05, competing_phases=3,
                      novel=True)
    return {"arm": arm, "status": status, "reason": reason, "result": result}


def test_arm_metrics_arithmetic():
    counts = {"proposed": 100, "distance": 90, "neutral": 80, "unique": 40, "novel": 20, "selected": 4,
              "relaxed": 3, "verified": 2}
    per_request = [{"targets": {"average_voltage": 3.0, "capacity_grav": 100.0},
                    "funnels": {"guided": {"counts": counts, "seconds": 5.0}},
                    "candidates": [_candidate("guided", "verified", 3.2, 105.0),
                                   _candidate("guided", "verified", 3.8, 150.0),
                                   _candidate("guided", "failed", reason="the charged relaxation did not converge"),
                                   _candidate("ion-exchange", "verified", 0.0, 0.0)]}]
    m = _arm_metrics(per_request, "guided")
    assert m["validity_pct"] == 80.0 and m["uniqueness_pct"] == 50.0 and m["novelty_pct"] == 50.0
    assert m["verified"] == 2 and m["verified_pct_of_relaxed"] == pytest.approx(200 / 3)
    assert m["median_abs_delta_voltage"] == pytest.approx(0.5) and m["pct_within_0.3V"] == 50.0
    assert m["median_abs_delta_capacity_grav"] == pytest.approx(27.5) and m["pct_capacity_within_10pct"] == 50.0
    assert m["seconds_per_verified_candidate"] == pytest.approx((5.0 + 30.0) / 2)
    assert m["failure_reasons"] == {"the charged relaxation did not converge": 1}
    table = metrics_table({"arms": {"guided": m}})
    assert table.loc[table["metric"] == "median |ΔV| (V)", "guided"].item() == pytest.approx(0.5)


def test_the_shipped_yield_run_relaxed_every_novel_survivor_and_its_table_says_so():
    from battgen.design.evaluate import YIELD_FILENAME, YIELD_ROWS, load_metrics, yield_table

    yields = load_metrics(filename=YIELD_FILENAME)
    assert yields is not None and yields["n_requests"] == yields["n_requests_planned"]
    frame = yield_table(yields).set_index("measure")
    for arm, m in yields["arms"].items():
        stages = m["survival_per_stage"]
        assert stages["relaxed"] == stages["novel"]  # nothing left unrelaxed: the yield is measured
        assert m["novel_verified_pct_of_proposals"] == pytest.approx(100 * m["novel_verified"] / m["proposals"])
        assert frame.loc[YIELD_ROWS["novel_verified_pct_of_proposals"], arm] == pytest.approx(
            m["novel_verified_pct_of_proposals"], abs=1e-3)
        assert frame.loc[YIELD_ROWS["relaxed"], arm] == stages["relaxed"]
