"""Why a KMC run ended, in words a person can act on.

A run is *passivated* when no event is possible any more: the SEI covers the electrode and
everything mobile has attached or left. A run stopped by its event or time bound is not
"non-passivating" by itself: with slow O/P diffusion (high e13/e14) most events are hops of mobile
species and the bound is simply too low. The counts of executed events tell which it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Event numbers (1-based, as in battgen.sei.barriers): diffusion hops and leaving through the top.
HOP_EVENTS = (12, 13, 14, 15)
LEAVE_EVENTS = (16, 17, 18, 19)
# Above this share of hops a stopped run was still diffusing, not stuck in a growth loop.
DIFFUSING_SHARE = 0.9


@dataclass(frozen=True)
class RunStatus:
    passivated: bool
    headline: str
    detail: str


def describe_run(status: str, event_counts, thickness: float, steps: int, sim_time_s: float) -> RunStatus:
    """Passivated or not, and when not, why it stopped: from the run's status and executed events."""
    if status == "complete":
        return RunStatus(True, "Passivated: no event is possible any more.",
                         f"The SEI reached {thickness:.1f} nm after {steps:,} events and {sim_time_s:.3g} s "
                         "of simulated time; everything mobile has attached or left.")
    counts = np.asarray(event_counts, np.float64)
    total = max(counts.sum(), 1.0)
    hops = counts[[e - 1 for e in HOP_EVENTS]].sum() / total
    leaving = counts[[e - 1 for e in LEAVE_EVENTS]].sum() / total
    bound = "event bound" if status == "max_steps" else "simulated-time bound"
    if hops >= DIFFUSING_SHARE:
        reason = (f"{100 * hops:.0f} % of its events were diffusion hops of mobile species: they were still "
                  "wandering, not reacting, so a larger bound would most likely let it finish.")
    else:
        reason = (f"{100 * hops:.0f} % of its events were diffusion hops and {100 * leaving:.1f} % species leaving "
                  "through the top: reactions were still running when it stopped.")
    return RunStatus(False, f"Not passivated: stopped at the {bound} ({steps:,} events).",
                     f"The SEI was {thickness:.1f} nm thick at {sim_time_s:.3g} s simulated. {reason}")


def describe_result(result) -> RunStatus:
    """:func:`describe_run` for a :class:`battgen.sei.kmc.KMCResult`."""
    return describe_run(result.status, result.event_counts, result.observables["thickness"], result.steps,
                        result.sim_time_s)
