"""Dataset plans: dict round trips and the one check of a build directory's saved plan."""

from __future__ import annotations

import json

import pytest

from battgen.afm.dataset import CampaignPlan
from battgen.data.build_plan import BuildPlan
from battgen.plans import PLAN_FILE, check_saved_plan, plan_differences
from battgen.sei.dataset import DatasetPlan


@pytest.mark.parametrize("plan", [
    DatasetPlan(n=12, size=20, seed=3, max_steps=5000),
    CampaignPlan(candidates=10, keep=2, grid=32, target_atoms=30),
    BuildPlan(ions=("Li", "Zn"), templates=("layered-1T",), limit=2, steps=60),
])
def test_plans_round_trip_through_json(plan):
    saved = json.loads(json.dumps(plan.as_dict()))
    assert type(plan).from_dict(saved) == plan
    assert type(plan).from_dict(saved).as_dict() == plan.as_dict()


def test_derived_settings_are_saved_but_not_read_back():
    plan = CampaignPlan(candidates=10, keep=2, grid=32)
    assert plan.as_dict()["simulation"]["grid"] == 32
    assert CampaignPlan.from_dict({"keep": 2, "candidates": 10, "grid": 32, "simulation": {}}) == plan
    with pytest.raises(ValueError, match="views kept must be between 1 and the number of candidate rotations"):
        CampaignPlan.from_dict({**plan.as_dict(), "keep": 11})


def test_saved_plan_check_names_every_changed_setting(tmp_path):
    plan = CampaignPlan(candidates=10, keep=2, grid=32)
    path = check_saved_plan(tmp_path, plan)
    assert path == tmp_path / PLAN_FILE and json.loads(path.read_text()) == plan.as_dict()
    check_saved_plan(tmp_path, plan)  # the same settings again: fine

    with pytest.raises(ValueError) as err:
        check_saved_plan(tmp_path, CampaignPlan(candidates=12, keep=2, grid=64))
    message = str(err.value)
    assert "candidates: 10 → 12" in message and "grid: 32 → 64" in message
    assert "simulation.grid: 32 → 64" in message and "keep" not in message
    assert "--" not in message  # library messages name settings, not command-line flags
    assert json.loads(path.read_text()) == plan.as_dict()  # a refused plan is not saved


def test_settings_that_may_change_are_not_compared(tmp_path):
    check_saved_plan(tmp_path, DatasetPlan(n=8, size=12))
    check_saved_plan(tmp_path, DatasetPlan(n=9, size=12), may_change=("n",))
    assert json.loads((tmp_path / PLAN_FILE).read_text())["n"] == 9
    with pytest.raises(ValueError, match=r"size: 12 → 14"):
        check_saved_plan(tmp_path, DatasetPlan(n=9, size=14), may_change=("n",))
    assert plan_differences({"a": 1, "b": [1]}, {"b": [1, 2], "c": None}) == [
        "a: 1 → null", "b: [1] → [1, 2]"]


def test_an_unreadable_plan_file_is_a_clear_error(tmp_path):
    (tmp_path / PLAN_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not a readable plan"):
        check_saved_plan(tmp_path, DatasetPlan(n=1))
