"""What the electrode builder computes: working ions, host templates, relaxation settings.

Its own module because both the builder (which relaxes) and the assembly (which turns the
cached relaxations into the table) read it; neither has to import the other for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from battgen.data.frameworks import TEMPLATES, Candidate, plan_candidates
from battgen.data.properties import WORKING_IONS
from battgen.data.relax import DEFAULT_FMAX, DEFAULT_OPTIMIZER, DEFAULT_STEPS
from battgen.plans import Plan


@dataclass
class BuildPlan(Plan):
    ions: tuple[str, ...] = WORKING_IONS
    templates: tuple[str, ...] = tuple(t.name for t in TEMPLATES)
    fmax: float = DEFAULT_FMAX
    steps: int = DEFAULT_STEPS
    optimizer: str = DEFAULT_OPTIMIZER
    limit: int | None = None  # first N candidates in build order (tests, quick looks)
    seed: int = 0

    def candidates(self) -> list[Candidate]:
        chosen = [t for t in TEMPLATES if t.name in self.templates]
        unknown = set(self.templates) - {t.name for t in TEMPLATES}
        if unknown:
            raise ValueError(f"unknown templates {sorted(unknown)}; known: {[t.name for t in TEMPLATES]}")
        cands = plan_candidates(chosen, self.ions)
        # Build order: hosts in a seeded random order, all ions of a host together, so a build
        # stopped early still covers every template and ion evenly.
        frameworks = sorted({c.framework_key for c in cands})
        random.Random(self.seed).shuffle(frameworks)
        rank = {key: i for i, key in enumerate(frameworks)}
        cands.sort(key=lambda c: (rank[c.framework_key], self.ions.index(c.ion)))
        return cands[: self.limit] if self.limit else cands

    @property
    def relax_settings(self) -> dict:
        """What a cached relaxation must have been run with to count for this plan."""
        return {"optimizer": self.optimizer, "fmax": self.fmax, "steps": self.steps}

    def summary(self) -> dict:
        """How many electrodes, host frameworks and relaxations the plan holds, per ion and type."""
        from collections import Counter

        cands = self.candidates()
        per_type = Counter(c.template for c in cands)
        frameworks = {c.framework_key: c.template for c in cands}
        return {
            "electrodes": len(cands),
            "host_frameworks": len(frameworks),
            "structure_types": len(per_type),
            "intermediate_states": sum(len(c.intermediates) for c in cands),
            "relaxations": len(self.ions) + len(frameworks) + len(cands)
                           + sum(len(c.intermediates) for c in cands),
            "per_ion": {ion: n for ion in self.ions if (n := sum(c.ion == ion for c in cands))},
            "per_structure_type": {t: {"electrodes": n,
                                       "frameworks": sum(v == t for v in frameworks.values())}
                                   for t, n in per_type.most_common()},
        }
