"""The funnel: proposals → distance → charge neutrality → unique → novel → pre-ranked top k.

Every stage keeps a count, so a person sees where proposals are lost. The pre-rank differs by
arm: the guided arm ranks by the distance of the pre-relaxation estimates (``surrogate.py``) to
the requested properties; the ion-exchange baseline ranks by substitution probability alone,
knowing nothing of the request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from battgen.data.properties import PropertyScaler
from battgen.design.proposals import Proposal, charged_structure, draw_proposals, framework_sources
from battgen.design.request import GUIDED_ARMS, DesignRequest
from battgen.design.surrogate import PRERANKED, estimate
from battgen.design.validity import MIN_DISTANCE, min_distance, neutral_pair

STAGES = ("proposed", "distance", "neutral", "unique", "novel")
STAGE_LABELS = {
    "proposed": "proposed",
    "distance": f"atoms ≥ {MIN_DISTANCE} Å apart",
    "neutral": "charge neutral (SMACT + pymatgen, both states)",
    "unique": "unique in the batch",
    "novel": "novel vs the table",
    "prerelaxed": "pre-relaxed (short CHGNet, best 6)",
    "selected": "pre-ranked top k (+ reserve)",
    "relaxed": "relaxed (CHGNet pair)",
    "verified": "verified electrode",
}
# Weight of the surrogate's tree spread (in fractions of the voltage range) in the guided pre-rank:
# a proposal the forest disagrees about is an extrapolation, and its estimate is not worth aiming by.
SPREAD_WEIGHT = 1.0
# Relaxations allowed beyond k, to replace candidates whose relaxation fails.
RESERVE = 2


@dataclass
class FunnelResult:
    arm: str
    counts: dict[str, int]
    ranked: list[Proposal]  # novel survivors, best first (all of them)
    seconds: float
    rejections: dict[str, int] = field(default_factory=dict)  # reason → count (neutrality)

    def as_dict(self) -> dict:
        return {"arm": self.arm, "counts": self.counts, "ranked": [p.as_dict() for p in self.ranked],
                "seconds": self.seconds, "rejections": self.rejections}

    @classmethod
    def from_dict(cls, d: dict) -> "FunnelResult":
        return cls(d["arm"], d["counts"], [Proposal.from_dict(p) for p in d["ranked"]], d["seconds"],
                   d.get("rejections", {}))


def ranking_targets(request: DesignRequest) -> dict[str, float]:
    """The requested values the pre-rank can aim at (voltage and capacity at least)."""
    targets = {k: v for k, v in request.targets.items() if k in PRERANKED}
    if not targets:
        targets = {k: request.properties[k] for k in ("average_voltage", "capacity_grav")}
    return targets


def prerank_score(estimates: dict, targets: dict[str, float], scaler: PropertyScaler) -> float:
    """Mean |estimate − request| in fractions of the table's range (0 = on target), plus the
    surrogate's spread penalty."""
    parts = []
    for name, value in targets.items():
        i = scaler.names.index(name)
        parts.append(abs(estimates[name] - value) / (scaler.high[i] - scaler.low[i]))
    i = scaler.names.index("average_voltage")
    spread = estimates.get("average_voltage_spread", 0.0) / (scaler.high[i] - scaler.low[i])
    return float(sum(parts) / len(parts) + SPREAD_WEIGHT * spread)


def run_funnel(request: DesignRequest, arm: str, table_dir, *, progress=None) -> FunnelResult:
    """Draw the arm's proposals and pass them through every stage (no relaxation)."""
    from battgen.data.table import load_scaler
    from battgen.design.novelty import NoveltyChecker, unique_indices
    from battgen.design.prior import prior_for
    from battgen.design.surrogate import surrogate_for

    report = progress or (lambda stage: None)
    start = time.perf_counter()
    ion = request.working_ion
    report("proposing")
    sources = framework_sources(table_dir, ion)
    scaler = load_scaler(table_dir)
    targets = ranking_targets(request)
    surrogate = surrogate_for(table_dir)
    def guided_score(compositions):
        return [prerank_score(e, targets, scaler) for e in estimate(surrogate, compositions, ion)]

    guided = arm in GUIDED_ARMS
    prior = prior_for(table_dir).predict(ion, request.properties) if guided else None
    target_score = guided_score if guided else None

    proposals = draw_proposals(sources, ion, arm, request.proposals, prior=prior, target_score=target_score,
                               seed=request.seed)
    counts = {"proposed": len(proposals)}

    report("filtering")
    alive = [p for p in proposals if min_distance(p.structure) >= MIN_DISTANCE]
    counts["distance"] = len(alive)
    rejections: dict[str, int] = {}
    neutral = []
    for p in alive:
        ok, reason = neutral_pair(p.formula, charged_structure(p.structure, ion).composition.reduced_formula)
        if ok:
            neutral.append(p)
        else:
            kind = reason.split(" ", 1)[0] + (" SMACT" if "SMACT" in reason else " oxidation states")
            rejections[kind] = rejections.get(kind, 0) + 1
    counts["neutral"] = len(neutral)
    unique = [neutral[i] for i in unique_indices([p.structure for p in neutral])]
    counts["unique"] = len(unique)
    checker = NoveltyChecker.for_tables(table_dir, *request.novelty_tables)
    novel = [p for p in unique if checker.is_novel(p.structure)]
    counts["novel"] = len(novel)

    report("ranking")
    for p, est in zip(novel, estimate(surrogate, [p.structure.composition for p in novel], ion)):
        p.estimates = est
        p.score = (prerank_score(est, targets, scaler) if guided
                   else -math.log(max(p.weight, 1e-300)))
    novel.sort(key=lambda p: (p.score, p.key))
    counts["selected"] = min(len(novel), request.max_candidates + RESERVE)
    return FunnelResult(arm, counts, novel, time.perf_counter() - start, rejections)
