"""Aiming with CHGNet before verifying: a short relaxation of the best surrogate-ranked survivors.

The voltage surrogate misses novel substitutions by a median 0.49 V (verified guided candidates of
the design evaluation, against 0.24 V on the table's own test rows): it extrapolates. A CHGNet
pair relaxation of a few dozen steps costs a fraction of the full one and already carries most of
the voltage, so the ``guided-prerelaxed`` arm relaxes its ``PRERELAX_CANDIDATES`` best survivors
that far, re-ranks them by that voltage and the exact capacity, and verifies the best from where
the short relaxation left them.
"""

from __future__ import annotations

import time

from battgen.data.properties import PropertyScaler
from battgen.design.proposals import Proposal

PRERELAX_CANDIDATES = 6  # survivors given a short relaxation (each ~1/4 of a full verification)
PRERELAX_STEPS = 30  # optimiser steps per structure
PRERELAX_FMAX = 0.1  # eV/Å: looser than verification; the estimate needs the voltage, not the last meV


def prerelax(proposal: Proposal, ion: str, *, steps: int = PRERELAX_STEPS, fmax: float = PRERELAX_FMAX) -> dict:
    """The short relaxation's voltage and capacity, and the discharged structure it reached.

    ``status`` is ``estimated`` or ``failed`` (with the reason); a failure here ranks last but is not
    final: the full verification may still succeed where a short one climbed.
    """
    from battgen.data.evaluate import evaluate_structure
    from battgen.design.verify import load_model_quietly, one_thread

    one_thread()
    load_model_quietly()
    start = time.perf_counter()
    try:
        evaluation = evaluate_structure(proposal.structure, ion, name=proposal.key, fmax=fmax, steps=steps,
                                        require_converged=False)
    except Exception as err:  # a refused or crashed estimate only costs this proposal its place
        return {"key": proposal.key, "status": "failed", "reason": f"{err}", "seconds": time.perf_counter() - start}
    props = evaluation.properties
    return {"key": proposal.key, "status": "estimated", "average_voltage": float(props["average_voltage"]),
            "capacity_grav": float(props["capacity_grav"]), "energy_grav": float(props["energy_grav"]),
            "structure": evaluation.discharged.structure.as_dict(), "seconds": time.perf_counter() - start}


def rerank(proposals: list[Proposal], estimates: dict[str, dict], targets: dict[str, float],
           scaler: PropertyScaler) -> list[Proposal]:
    """``proposals`` re-ranked by their pre-relaxation estimates (failed or missing ones last, in their
    previous order); each estimated proposal starts its verification from the pre-relaxed structure."""
    from pymatgen.core import Structure

    from battgen.design.funnel import prerank_score

    scored, rest = [], []
    for p in proposals:
        e = estimates.get(p.key)
        if e is None or e["status"] != "estimated":
            if e is not None:
                p.estimates = {**(p.estimates or {}), "prerelax_failed": e["reason"]}
            rest.append(p)
            continue
        quick = {k: e[k] for k in ("average_voltage", "capacity_grav", "energy_grav")}
        p.estimates = {**(p.estimates or {}), **{f"prerelaxed_{k}": v for k, v in quick.items()}}
        p.score = prerank_score(quick, targets, scaler)
        p.structure = Structure.from_dict(e["structure"])
        scored.append(p)
    scored.sort(key=lambda p: (p.score, p.key))
    return scored + rest
