"""A design request: the Screening request (ion + six properties) plus the verification budget.

Unlike Screening, Design refuses values outside the table's range: the surrogate and the prior
that target the proposals are fitted on the table and cannot aim beyond it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from battgen.data.properties import PROPERTY_BY_NAME, PROPERTY_NAMES, PropertyScaler, check_ion
from battgen.screening.request import ScreeningRequest

ARMS = ("guided", "guided-prerelaxed", "ion-exchange")
# Arms that draw proposals by the composition prior and pre-rank them by the surrogate.
GUIDED_ARMS = ("guided", "guided-prerelaxed")
# Arms that give their best surrogate-ranked survivors a short CHGNet relaxation and re-rank them by
# its voltage before choosing what to verify (battgen/design/prerelax.py).
PRERELAXED_ARMS = ("guided-prerelaxed",)
# The arm a request uses unless told otherwise: the one the evaluation (assets/design/metrics.json)
# found closest to the requested voltage.
DEFAULT_ARMS = ("guided-prerelaxed",)
DEFAULT_PROPOSALS = 300  # proposals drawn per arm before the funnel
MAX_CANDIDATES = 10  # verified candidates per arm; each costs a CHGNet pair relaxation
DEFAULT_RELAX_STEPS = 120


@dataclass(frozen=True)
class DesignRequest:
    working_ion: str
    targets: dict[str, float]  # the properties the person set (what the pre-rank aims at)
    properties: dict[str, float]  # all six: targets + the ion's medians for the rest
    max_candidates: int = 2
    proposals: int = DEFAULT_PROPOSALS
    arms: tuple[str, ...] = DEFAULT_ARMS
    relax_steps: int = DEFAULT_RELAX_STEPS
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def novelty_tables(self) -> tuple[str, ...]:
        """Tables (directories) besides the design's own that a novel candidate must be absent from."""
        return tuple(self.extra.get("novelty_tables", ()))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["arms"] = list(self.arms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DesignRequest":
        return cls(**{**d, "arms": tuple(d["arms"])})


def describe_range(scaler: PropertyScaler, name: str) -> str:
    i = scaler.names.index(name)
    p = PROPERTY_BY_NAME[name]
    return f"{scaler.low[i]:.3g}–{scaler.high[i]:.3g} {p.unit}"


def build_request(table: pd.DataFrame, scaler: PropertyScaler, ion: str, given: dict[str, float | None],
                  *, max_candidates: int = 2, proposals: int = DEFAULT_PROPOSALS,
                  arms=DEFAULT_ARMS, relax_steps: int = DEFAULT_RELAX_STEPS, seed: int = 0,
                  novelty_tables=()) -> DesignRequest:
    """A checked request; ``ValueError`` with one plain sentence for anything unusable."""
    check_ion(ion)
    if max_candidates < 1:
        raise ValueError("the budget is zero: ask for at least one verified candidate")
    if max_candidates > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} verified candidates per request "
                         "(each is a CHGNet relaxation of two structures)")
    if proposals < 1:
        raise ValueError("the proposal budget is zero: draw at least one proposal")
    if relax_steps < 1:
        raise ValueError("relaxations need at least one step")
    unknown_arms = sorted(set(arms) - set(ARMS))
    if unknown_arms:
        raise ValueError(f"unknown design arms {unknown_arms}; choose from {', '.join(ARMS)}")
    if not arms:
        raise ValueError(f"choose at least one design arm ({', '.join(ARMS)})")
    from battgen.design.proposals import hostable_rows

    if not hostable_rows(table, ion):
        raise ValueError(f"no framework in the electrode table can host {ion} "
                         "(no electrode of an ion with the same or a lower charge)")
    screening = ScreeningRequest.build(table, scaler, ion, given)
    if screening.outside_range:
        parts = [f"{PROPERTY_BY_NAME[n].label.lower()} {screening.properties[n]:g} "
                 f"(table: {describe_range(scaler, n)})" for n in screening.outside_range]
        raise ValueError("requested outside the electrode table's range, where nothing targets "
                         "the design: " + "; ".join(parts))
    targets = {k: float(v) for k, v in given.items() if v is not None and k in PROPERTY_NAMES}
    extra = {}
    if novelty_tables:
        from battgen.data.table import load_table

        for directory in novelty_tables:
            try:
                load_table(directory)
            except ValueError as err:
                raise ValueError(f"the table to check novelty against, {directory}, cannot be read: {err}") from None
        extra["novelty_tables"] = [str(d) for d in novelty_tables]
    return DesignRequest(ion, targets, screening.properties, int(max_candidates), int(proposals),
                         tuple(arms), int(relax_steps), int(seed), extra)
