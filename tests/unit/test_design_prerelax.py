"""The pre-relaxed arm: re-ranking by short-relaxation estimates, and the evaluation reusing stored arms."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from battgen.data.table import load_scaler, load_table
from battgen.design.evaluate import evaluate_design, fixed_requests
from battgen.design.prerelax import rerank
from battgen.design.proposals import Proposal
from battgen.design.request import build_request
from battgen.design.store import DesignStore


def _proposal(key: str, a: float = 4.0) -> Proposal:
    structure = Structure(Lattice.cubic(a), ["Li", "Co", "O", "O"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])
    return Proposal(key, "guided-prerelaxed", "src", "rocksalt", "Co", structure, 1.0,
                    estimates={"average_voltage": 3.0, "capacity_grav": 150.0}, score=0.0)


def _estimate(key: str, voltage: float, capacity: float = 150.0, a: float = 4.2) -> dict:
    relaxed = _proposal(key, a).structure
    return {"key": key, "status": "estimated", "average_voltage": voltage, "capacity_grav": capacity,
            "energy_grav": voltage * capacity, "structure": relaxed.as_dict(), "seconds": 1.0}


def test_rerank_orders_by_the_short_relaxation_and_puts_failures_last():
    scaler = load_scaler()
    proposals = [_proposal(k) for k in ("a", "b", "c", "d")]
    estimates = {"a": _estimate("a", 2.0), "b": {"key": "b", "status": "failed", "reason": "energy rose"},
                 "c": _estimate("c", 3.55)}  # d: no estimate (beyond the pre-relaxed head)
    ranked = rerank(proposals, estimates, {"average_voltage": 3.5, "capacity_grav": 150.0}, scaler)
    assert [p.key for p in ranked] == ["c", "a", "b", "d"]
    best = ranked[0]
    assert best.estimates["prerelaxed_average_voltage"] == 3.55
    assert best.estimates["average_voltage"] == 3.0  # the surrogate's estimate is kept beside it
    assert best.structure.lattice.a == pytest.approx(4.2)  # verification starts where the short one stopped
    assert ranked[2].estimates["prerelax_failed"] == "energy rose"
    assert ranked[3].structure.lattice.a == pytest.approx(4.0)


@pytest.mark.slow
def test_evaluation_reuses_stored_arms_of_the_same_budget(tmp_path):
    table, scaler = load_table(), load_scaler()
    item = fixed_requests(table)[0]
    store = DesignStore(tmp_path / "eval.sqlite")
    request = build_request(table, scaler, item["ion"], item["targets"], max_candidates=1, proposals=300,
                            arms=("guided",), relax_steps=120)
    design_id = store.create({**request.as_dict(), "extra": {"eval": item["name"]}})
    store.record_funnel(design_id, "guided", {"proposed": 10, "distance": 10, "neutral": 8, "unique": 6,
                                              "novel": 5, "selected": 3, "relaxed": 1, "verified": 1}, {}, 4.0)
    store.add_candidate(design_id, "guided", 0, _proposal("x").as_dict())
    store.finish_candidate(design_id, "guided", {
        "key": "x", "status": "verified", "seconds": 6.0, "e_hull": 0.0, "competing_phases": 2, "novel": True,
        "properties": {"average_voltage": item["targets"]["average_voltage"] + 0.2,
                       "capacity_grav": item["targets"]["capacity_grav"]}})
    store.set_status(design_id, "done", stage="done")
    metrics = evaluate_design(n_requests=1, max_candidates=1, proposals=300, relax_steps=120, arms=("guided",),
                              db=tmp_path / "eval.sqlite", out=tmp_path / "metrics.json", workers=1)
    assert len(store.list_designs()) == 1  # nothing ran again
    guided = metrics["arms"]["guided"]
    assert guided["verified"] == 1 and guided["median_abs_delta_voltage"] == pytest.approx(0.2)
    assert metrics["requests"][0]["design_ids"] == {"guided": design_id}
    with pytest.raises(ValueError, match="choose arms"):
        evaluate_design(n_requests=1, arms=("nonsense",), db=tmp_path / "eval.sqlite", out=tmp_path / "m.json")
