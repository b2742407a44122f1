"""Whether a KMC run passivated, and why it stopped when it did not."""

from __future__ import annotations

import numpy as np

from battgen.sei.kmc import simulate
from battgen.sei.run_status import describe_result, describe_run


def counts(**by_event) -> np.ndarray:
    out = np.zeros(19)
    for name, value in by_event.items():
        out[int(name[1:]) - 1] = value
    return out


def test_a_finished_run_is_passivated():
    status = describe_run("complete", counts(e1=10), 12.3, 1000, 2.5)
    assert status.passivated and "Passivated" in status.headline and "12.3 nm" in status.detail


def test_a_run_stopped_while_diffusing_says_the_bound_was_too_low():
    status = describe_run("max_steps", counts(e13=950, e14=30, e1=20), 1.0, 1000, 1e-6)
    assert not status.passivated and "event bound" in status.headline
    assert "98 %" in status.detail and "larger bound" in status.detail


def test_a_run_stopped_while_reacting_says_so():
    status = describe_run("max_time", counts(e13=300, e4=500, e16=200), 5.0, 1000, 3.0)
    assert not status.passivated and "simulated-time bound" in status.headline
    assert "reactions were still running" in status.detail and "20.0 %" in status.detail


def test_real_runs_end_to_end():
    finished = simulate(nx=12, ny=12, seed=1)
    assert describe_result(finished).passivated == (finished.status == "complete")
    cut = simulate(nx=30, ny=30, seed=0, max_steps=2000)
    summary = cut.summary()
    assert summary["passivated"] is False and summary["status_reason"] == describe_result(cut).detail
