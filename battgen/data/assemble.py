"""Cached relaxations → the electrode table, with every discarded candidate and its reason."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from battgen import atomic
from battgen.data.build_plan import BuildPlan
from battgen.data.electrode import RejectedElectrode, computed_entry, evaluate_electrode, ion_entry
from battgen.data.frameworks import TEMPLATE_BY_NAME, Candidate
from battgen.data.relax import RELAX_METHOD, RelaxResult
from battgen.data.relax_cache import load_cached
from battgen.data.splits import grouped_split
from battgen.data.stability import stability_columns
from battgen.data.table import electrode_row, save_table

REJECTED_FILENAME = "rejected.csv"


def candidate_row(candidate: Candidate, discharged: RelaxResult, charged: RelaxResult,
                  reference: RelaxResult, plan: BuildPlan,
                  intermediates: dict[int, RelaxResult | str | None] | None = None) -> dict:
    """Table row of one candidate; raises ``RejectedElectrode`` with the reason if unusable.

    ``intermediates`` maps the ion count of a partial filling to its relaxation; those that
    converged without climbing become extra entries (more voltage steps), the others are left
    out and the electrode is computed from its end states.
    """
    for state, result in (("discharged", discharged), ("charged", charged), ("ion metal", reference)):
        if not result.converged:
            raise RejectedElectrode(f"{state} relaxation not converged in {plan.steps} steps "
                                    f"(max force {result.max_force:.2f} eV/Å)")
        if result.climbed:
            raise RejectedElectrode(f"{state} relaxation ended {result.energy_change:.3f} eV/atom "
                                    "above its start (energy rose)")
    entries = [computed_entry(discharged.structure, discharged.energy, f"{candidate.key}:discharge"),
               computed_entry(charged.structure, charged.energy, f"{candidate.framework_key}:charge")]
    used = []
    for n, r in sorted((intermediates or {}).items()):
        if isinstance(r, RelaxResult) and r.converged and not r.climbed:
            entries.append(computed_entry(r.structure, r.energy,
                                          f"{candidate.framework_key}_{candidate.ion}{n}:partial"))
            used.append(n)
    result = evaluate_electrode(entries, ion_entry(candidate.ion, reference.energy_per_atom))
    return electrode_row(
        id=candidate.key,
        source="computed",
        electrode=result.electrode,
        discharged=discharged.structure,
        charged=charged.structure,
        structure_type=candidate.template,
        ion_energy_per_atom=reference.energy_per_atom,
        properties=result.properties,
        provenance={
            "method": RELAX_METHOD + " + pymatgen InsertionElectrode",
            "template": TEMPLATE_BY_NAME[candidate.template].description,
            "substitution": {"ion": candidate.ion, "metal": candidate.metal, "anion": candidate.anion,
                             "ions_per_cell": candidate.n_ions, "ion_sites": candidate.n_sites,
                             "ions_leaving_V_sites": candidate.n_vacated,
                             "supercell": candidate.supercell},
            "metal_oxidation": {"discharge": candidate.metal_ox_discharged,
                                "charge": candidate.metal_ox_charged},
            "fmax_eV_per_A": plan.fmax,
            "relax_steps": {"discharge": discharged.steps, "charge": charged.steps},
            "optimizer": plan.optimizer,
            "intermediate_ions_per_cell": used,
            "voltage_steps": len(result.electrode.voltage_pairs),
        },
    )


def assemble_table(out_dir: str | Path, plan: BuildPlan, *, cache_dir: str | Path,
                   build_seconds: float = 0.0, allow_missing: bool = True,
                   keep_splits: dict[str, str] | None = None) -> Path:
    """Write ``electrodes.parquet`` (E_hull filled), ``rejected.csv``, metadata and metrics into
    ``out_dir``; ``keep_splits`` (discharged formula -> split) fixes those formulas' splits."""
    from tqdm.auto import tqdm

    from battgen.artifacts import write_metadata, write_metrics
    from battgen.data.summary import table_summary

    cache = Path(cache_dir)
    rows, rejected, missing = [], [], 0
    settings = plan.relax_settings
    refs = {ion: load_cached(cache, "reference", ion, settings) for ion in plan.ions}
    relax_seconds = sum(r.seconds for r in refs.values() if isinstance(r, RelaxResult))
    charged_seen = set()
    for c in tqdm(plan.candidates(), desc="assembling", unit="electrode", leave=False):
        d = load_cached(cache, "discharged", c.key, settings)
        ch = load_cached(cache, "charged", c.framework_key, settings)
        partial = {p.n_ions: load_cached(cache, "discharged", p.key, settings) for p in c.intermediates}
        ref = refs[c.ion]
        if d is None or ch is None or ref is None:
            missing += 1
            continue
        for r in (d, *partial.values()) + ((ch,) if c.framework_key not in charged_seen else ()):
            if isinstance(r, RelaxResult):
                relax_seconds += r.seconds
        charged_seen.add(c.framework_key)
        errors = [r for r in (d, ch, ref) if isinstance(r, str)]
        try:
            if errors:
                raise RejectedElectrode(f"relaxation failed: {errors[0]}")
            rows.append(candidate_row(c, d, ch, ref, plan, partial))
        except RejectedElectrode as err:
            rejected.append({"id": c.key, "working_ion": c.ion, "template": c.template,
                             "metal": c.metal, "anion": c.anion, "reason": str(err)})
    if missing and not allow_missing:
        raise ValueError(f"{missing} candidates have not been relaxed yet; run the build again")
    if not rows:
        raise ValueError("no electrode survived; nothing to write")
    df = pd.DataFrame(rows)
    df["split"] = grouped_split(df["formula_discharge"], df["working_ion"], seed=plan.seed,
                                 strict=False, keep=keep_splits)
    df, stability = stability_columns(df)
    out = Path(out_dir)
    save_table(df, out)
    atomic.write_bytes(out / REJECTED_FILENAME, pd.DataFrame(
        rejected, columns=["id", "working_ion", "template", "metal", "anion", "reason"]).to_csv(index=False).encode())
    summary = table_summary(df)
    summary["candidates"] = {"planned": len(plan.candidates()), "not_relaxed_yet": missing,
                             "rejected": len(rejected), "kept": len(df),
                             "rejected_by_reason": _reason_counts(rejected)}
    write_metrics(out, summary)
    from battgen.data.relax import load_chgnet  # noqa: F401 (version recorded below)
    import importlib.metadata

    write_metadata(
        out,
        command="python -m battgen data build-electrodes",
        config=plan.as_dict(),
        seed=plan.seed,
        inputs=None,
        wall_time_s=build_seconds,
        extra={"relaxation_cpu_seconds": relax_seconds, "stability": stability,
               "chgnet_version": importlib.metadata.version("chgnet"),
               "cache_dir": str(cache)},
    )
    return out / "electrodes.parquet"


def _reason_counts(rejected: list[dict]) -> dict[str, int]:
    def kind(reason: str) -> str:
        # "volume change 107% above 100%" and "... 141% above 100%" are one reason.
        text = re.sub(r"-?\d[\d.]*\s*(%|V\b)?", " ", reason.split(" (")[0].split(":")[0])
        return " ".join(text.split())

    return dict(Counter(kind(r["reason"]) for r in rejected).most_common())
