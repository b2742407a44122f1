"""Sensitivity with equal-sized steps: one within-ion standard deviation per property, noise as the yardstick."""

from __future__ import annotations

import numpy as np
import pytest

from battgen.data.properties import PROPERTY_NAMES
from battgen.data.table import load_table
from battgen.eval.sensitivity import PUBLISHED_RANK, condition_sensitivity, within_ion_steps
from battgen.screening.request import ion_medians
from tests.screening_root import build_screening_root

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TABLE = load_table()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from battgen.screening.session import ScreeningSession

    return ScreeningSession.load(build_screening_root(tmp_path_factory.mktemp("sens"))).pipeline


def test_within_ion_steps_are_each_ions_spread():
    steps = within_ion_steps(TABLE, "Mg")
    mg = TABLE[TABLE["working_ion"] == "Mg"]
    assert set(steps) == set(PROPERTY_NAMES)
    assert steps["average_voltage"] == pytest.approx(mg["average_voltage"].std())
    assert steps["capacity_grav"] != pytest.approx(within_ion_steps(TABLE, "Li")["capacity_grav"])
    with pytest.raises(ValueError, match="at least two"):
        within_ion_steps(TABLE.head(0), "Mg")


def test_equal_sized_steps_scale_with_the_step_and_carry_the_noise_yardstick(pipeline):
    request = ion_medians(TABLE, "Li")
    steps = within_ion_steps(TABLE, "Li")
    kw = dict(scaled=False, seeds=(0, 1, 2), num_candidates=1, num_inference_steps=2, guidance_scale=3.0,
              scheduler="ddim")
    df = condition_sensitivity(pipeline, request, "Li", steps=steps, **kw)
    assert df["mean"][:6].sum() == pytest.approx(1.0)
    assert df.attrs["steps"] == pytest.approx(steps) and df.attrs["delta"] is None
    assert df.attrs["noise_distance"] > 0
    assert np.isfinite(df["relative_to_noise"]).all() and (df["relative_to_noise"] > 0).all()
    assert list(df["published_rank"]) == [PUBLISHED_RANK[c] for c in df["condition"]]
    # A larger step moves the output more (same noise): the measurement follows the step, not chance.
    bigger = condition_sensitivity(pipeline, request, "Li", steps={k: 4 * v for k, v in steps.items()}, **kw)
    raw = np.array([np.mean(v) for v in df["raw_distance"][:6]])
    raw_big = np.array([np.mean(v) for v in bigger["raw_distance"][:6]])
    assert (raw_big > raw).sum() >= 5
    with pytest.raises(ValueError, match="physical"):
        condition_sensitivity(pipeline, request, "Li", steps=steps, scaled=True, seeds=(0,))
    with pytest.raises(ValueError, match="positive step"):
        condition_sensitivity(pipeline, request, "Li", steps={**steps, "capacity_grav": 0.0}, scaled=False, seeds=(0,))
