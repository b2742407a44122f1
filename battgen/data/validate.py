"""Textbook electrodes computed by the builder's pipeline vs their experimental values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from battgen.data.build_plan import BuildPlan
from battgen.data.builder import RelaxTask, run_task
from battgen.data.electrode import RejectedElectrode
from battgen.data.frameworks import plan_candidates
from battgen.data.relax_cache import load_cached


@dataclass(frozen=True)
class Reference:
    formula: str
    candidate_key: str | None  # the builder's candidate that is this electrode (None: no template)
    voltage: float  # V, experiment
    capacity: float  # mAh/g, theoretical for the ions exchanged, per discharged mass (as MP)
    source: str  # where the experimental voltage comes from
    note: str = ""


# The first six are ../shared/notes/electrodes.md; the rest issue 15's list. Voltages are
# averages over the composition range the candidate spans, vs the ion's metal.
TEXTBOOK: tuple[Reference, ...] = (
    Reference("LiFePO4", "olivine_Fe_O_x1_Li4", 3.45, 170, "Padhi et al., J. Electrochem. Soc. 144, 1188 (1997)"),
    Reference("LiCoO2", "layered-O3_Co_O_x1_Li1", 3.9, 274, "Mizushima et al., Mater. Res. Bull. 15, 783 (1980)",
              "3.9 V is for x≈0.5; x=1 computes 4.0–4.2"),
    Reference("LiMn2O4", "spinel_Mn_O_x1_Li2", 4.0, 148, "Thackeray et al., Mater. Res. Bull. 18, 461 (1983)"),
    Reference("LiTiS2", "layered-1T_Ti_S_x1_Li1", 2.1, 225, "Whittingham, Science 192, 1126 (1976)"),
    Reference("NaFePO4", "olivine-Na_Fe_O_x1_Na4", 2.9, 154, "Moreau et al., Chem. Mater. 22, 4126 (2010)", "olivine"),
    Reference("Li3V2(PO4)3", "nasicon_V_O_x1_Li6", 3.8, 197, "Saidi et al., J. Power Sources 119, 266 (2003)",
              "3 Li per formula"),
    Reference("LiMnPO4", "olivine_Mn_O_x1_Li4", 4.1, 171, "Padhi et al., J. Electrochem. Soc. 144, 1188 (1997)"),
    Reference("LiCoPO4", "olivine_Co_O_x1_Li4", 4.8, 167, "Amine et al., Electrochem. Solid-State Lett. 3, 178 (2000)"),
    Reference("LiNiPO4", "olivine_Ni_O_x1_Li4", 5.1, 167, "Wolfenstine & Allen, J. Power Sources 142, 389 (2005)",
              "near the electrolyte's stability limit; measured on charge"),
    Reference("LiNiO2", "layered-O3_Ni_O_x1_Li1", 3.8, 275, "Dahn et al., Solid State Ionics 44, 87 (1990)",
              "x=1 delithiation is not reached in practice"),
    Reference("Li0.5TiO2 (anatase)", "anatase_Ti_O_x1_Li1", 1.78, 161,
              "Wagemaker et al., J. Am. Chem. Soc. 125, 840 (2003)", "0.5 Li per TiO2"),
    Reference("Na3V2(PO4)3", "nasicon_V_O_x1_Na6", 3.4, 118, "Jian et al., Electrochem. Commun. 14, 86 (2012)",
              "rhombohedral NASICON, 2 Na; the template is monoclinic Li3V2(PO4)3's host with 3 Na"),
    Reference("MgMo6S8 (Chevrel)", "chevrel_Mo_S_x1_Mg1", 1.1, 63, "Aurbach et al., Nature 407, 724 (2000)",
              "first Mg per Mo6S8 (the template has one cavity site)"),
    Reference("LiV2O5", "V2O5_V_O_x1_Li2", 3.3, 142, "Delmas et al., Solid State Ionics 69, 257 (1994)",
              "α→δ, 1 Li per V2O5"),
    Reference("Li4Ti5O12", "Li4Ti5O12_Ti_O_x1_Li12", 1.55, 168, "Ohzuku et al., J. Electrochem. Soc. 142, 1431 (1995)",
              "→ Li7Ti5O12 (175 mAh/g per Li4Ti5O12 mass); one ordering of the 16d Li/Ti, 8a → 16c on discharge"),
)
VOLTAGE_TOLERANCE = 0.5  # V
# Written beside the table by ``battgen data validate``: the Structures page shows it without
# relaxing anything at page load.
VALIDATION_FILENAME = "validation.json"


def validation_table(table: pd.DataFrame | None, plan: BuildPlan | None = None, *,
                     cache_dir: str | Path, compute_missing: bool = True,
                     only: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per textbook electrode: computed vs reference voltage and capacity.

    Electrodes already in ``table`` are read from it; others are relaxed with the builder's
    cache (so a second call is instant) when ``compute_missing``. ``only`` names a subset of
    ``TEXTBOOK`` formulas.
    """
    plan = plan or BuildPlan()
    candidates = {c.key: c for c in plan_candidates()}
    by_id = {} if table is None else {r["id"]: r for _, r in table.iterrows()}
    rows = []
    refs = TEXTBOOK if only is None else tuple(r for r in TEXTBOOK if r.formula in only)
    if only is not None and len(refs) != len(set(only)):
        unknown = sorted(set(only) - {r.formula for r in TEXTBOOK})
        raise ValueError(f"no textbook electrode {unknown}; known: {[r.formula for r in TEXTBOOK]}")
    for ref in refs:
        computed, status = by_id.get(ref.candidate_key), "in dataset"
        if ref.candidate_key is None:
            status = f"not computed: {ref.note}"
        elif computed is None:
            computed, status = _compute(candidates[ref.candidate_key], plan, Path(cache_dir), compute_missing)
        voltage = None if computed is None else float(computed["average_voltage"])
        capacity = None if computed is None else float(computed["capacity_grav"])
        rows.append({
            "electrode": ref.formula,
            "ion": _ion(ref.formula),
            "voltage_computed": voltage,
            "voltage_reference": ref.voltage,
            "voltage_error": None if voltage is None else voltage - ref.voltage,
            "capacity_computed": capacity,
            "capacity_reference": ref.capacity,
            "capacity_error": None if capacity is None else capacity - ref.capacity,
            "within_0.5V": None if voltage is None else abs(voltage - ref.voltage) <= VOLTAGE_TOLERANCE,
            "status": status,
            "source": ref.source,
            "note": ref.note,
        })
    return pd.DataFrame(rows)


def _compute(candidate, plan: BuildPlan, cache: Path, compute_missing: bool) -> tuple[dict | None, str]:
    """The candidate's row through the builder's cache (relaxing what is missing), and a status."""
    from battgen.data.assemble import candidate_row

    settings = plan.relax_settings
    tasks = [RelaxTask("reference", candidate.ion, ion=candidate.ion),
             RelaxTask("charged", candidate.framework_key, candidate=candidate),
             RelaxTask("discharged", candidate.key, candidate=candidate),
             *(RelaxTask("discharged", p.key, candidate=p) for p in candidate.intermediates)]
    results = []
    for task in tasks:
        if load_cached(cache, task.kind, task.key, settings) is None and compute_missing:
            run_task(str(cache), task, plan.fmax, plan.steps, optimizer=plan.optimizer)
        results.append(load_cached(cache, task.kind, task.key, settings))
    ref_r, charged, discharged, *partial = results
    try:
        if any(r is None for r in (ref_r, charged, discharged)):
            raise RejectedElectrode("not computed (computing missing relaxations was switched off)")
        errors = [r for r in (ref_r, charged, discharged) if isinstance(r, str)]
        if errors:
            raise RejectedElectrode(errors[0])
        partial_by_n = {p.n_ions: r for p, r in zip(candidate.intermediates, partial)}
        return candidate_row(candidate, discharged, charged, ref_r, plan, partial_by_n), "computed now"
    except RejectedElectrode as err:
        return None, f"rejected: {err}"


def _ion(formula: str) -> str:
    from pymatgen.core import Composition

    from battgen.data.properties import WORKING_IONS

    elements = {el.symbol for el in Composition(formula.split(" ")[0]).elements}
    return next(ion for ion in WORKING_IONS if ion in elements)


def median_voltage_error(textbook: pd.DataFrame) -> tuple[float | None, int]:
    """Median |computed − experiment| voltage over the rows that computed, and how many did."""
    errors = textbook["voltage_error"].dropna().abs()
    return (float(errors.median()) if len(errors) else None), int(len(errors))


def per_ion_table(table: pd.DataFrame) -> pd.DataFrame:
    from battgen.data.properties import WORKING_IONS

    grouped = table.groupby("working_ion")
    out = pd.DataFrame({
        "count": grouped.size(),
        "median_voltage_V": grouped["average_voltage"].median(),
        "median_capacity_mAh_g": grouped["capacity_grav"].median(),
        "distinct_formulas": grouped["formula_discharge"].nunique(),
    }).reindex(list(WORKING_IONS))
    out["count"] = out["count"].fillna(0).astype(int)
    return out


def save_validation(textbook: pd.DataFrame, table_dir: str | Path, *, plan: BuildPlan,
                    command: str, seconds: float) -> Path:
    """Write the validation table and how it was made to ``table_dir/validation.json``."""
    import importlib.metadata
    import json

    from battgen import atomic
    from battgen.artifacts import git_revision, to_json_safe

    median, n = median_voltage_error(textbook)
    within = textbook["within_0.5V"].fillna(False).astype(bool)
    payload = {
        "references": int(len(textbook)),
        "computed": n,
        "median_abs_voltage_error_V": median,
        "within_0.5V": int(within.sum()),
        "rows": json.loads(textbook.to_json(orient="records")),
        "provenance": {
            "command": command,
            "created_utc": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            "wall_time_s": round(float(seconds), 1),
            "relax_settings": plan.relax_settings,
            "chgnet_version": importlib.metadata.version("chgnet"),
            "git": git_revision(),
        },
    }
    path = Path(table_dir) / VALIDATION_FILENAME
    atomic.write_text(path, json.dumps(to_json_safe(payload), indent=2) + "\n")
    return path


def load_validation(table_dir: str | Path) -> tuple[pd.DataFrame, dict] | None:
    """The saved validation table and its summary (counts, median error, provenance), or None
    when the table has none."""
    import json

    path = Path(table_dir) / VALIDATION_FILENAME
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows = pd.DataFrame(payload["rows"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a validation result: {exc}") from None
    return rows, {k: v for k, v in payload.items() if k != "rows"}
