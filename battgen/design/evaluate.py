"""``python -m battgen eval design``: fixed requests, both arms side by side → assets/design/metrics.json.

The requests are the voltage and gravimetric capacity of held-out (test-split) electrodes and
midpoints between two test electrodes of the same ion, chosen deterministically. Each request
runs as one design in the evaluation's SQLite file; a rerun reuses each finished (request, arm) of
the same budget, so an arm added later runs alone beside the stored ones; the
metrics file is rewritten after every request with ``n_requests`` saying how many it covers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from battgen import atomic, paths
from battgen.design.funnel import STAGES
from battgen.design.request import ARMS, build_request

METRICS_FILENAME = "metrics.json"
EVAL_DB_FILENAME = "eval.sqlite"
VOLTAGE_TOLERANCE = 0.3  # V
CAPACITY_TOLERANCE = 0.10  # fraction of the requested capacity
# Test electrodes per ion, then midpoints per ion: 14 + 6 = 20 requests over eight ions.
TEST_PICKS = {"Li": 4, "Na": 3, "Mg": 2, "K": 1, "Ca": 1, "Zn": 1, "Al": 1, "Y": 1}
MIDPOINT_PICKS = {"Li": 2, "Na": 2, "Mg": 1, "Ca": 1}
TARGETS = ("average_voltage", "capacity_grav")


def fixed_requests(table: pd.DataFrame) -> list[dict]:
    """[{name, ion, targets}] — the same list on every run for the same table."""
    test = table[table["split"] == "test"].sort_values("id")
    out = []
    for ion, n in TEST_PICKS.items():
        rows = test[test["working_ion"] == ion]
        # Evenly spaced voltage quantiles (the median for one pick), not the first ids.
        rows = rows.sort_values("average_voltage")
        for i in ((np.arange(n) + 0.5) / n * (len(rows) - 1)).round().astype(int) if len(rows) else []:
            r = rows.iloc[int(i)]
            out.append({"name": f"test:{r['id']}", "ion": ion, "targets": {k: float(r[k]) for k in TARGETS}})
    for ion, n in MIDPOINT_PICKS.items():
        rows = test[test["working_ion"] == ion].sort_values("average_voltage")
        for j in range(n):
            if len(rows) < 2:
                break
            a, b = rows.iloc[j], rows.iloc[len(rows) - 1 - j]
            out.append({"name": f"mid:{a['id']}+{b['id']}", "ion": ion,
                        "targets": {k: float((a[k] + b[k]) / 2) for k in TARGETS}})
    # Round-robin over ions (tests before midpoints), so a run stopped early still spans the ions.
    seen: dict[str, int] = {}
    order = []
    for i, item in enumerate(out):
        kind = item["name"].split(":")[0]
        seen[(kind, item["ion"])] = seen.get((kind, item["ion"]), -1) + 1
        order.append((kind != "test", seen[(kind, item["ion"])], i))
    return [out[i] for *_, i in sorted(order)]


def _arm_metrics(per_request: list[dict], arm: str) -> dict:
    counts = {s: 0 for s in (*STAGES, "selected", "relaxed", "verified")}
    dv, dc, within_v, within_c, ehull, seconds, novel_verified = [], [], [], [], [], 0.0, 0
    failures: dict[str, int] = {}
    for item in per_request:
        funnel = item["funnels"].get(arm)
        if not funnel:
            continue
        for k in counts:
            counts[k] += int(funnel["counts"].get(k, 0))
        seconds += float(funnel.get("seconds") or 0)
        for c in item["candidates"]:
            if c["arm"] != arm:
                continue
            result = c["result"] or {}
            seconds += float(result.get("seconds") or 0)
            if c["status"] != "verified":
                reason = (c["reason"] or "unknown").split(":")[0][:80]
                failures[reason] = failures.get(reason, 0) + 1
                continue
            v, q = result["properties"]["average_voltage"], result["properties"]["capacity_grav"]
            tv, tq = item["targets"]["average_voltage"], item["targets"]["capacity_grav"]
            dv.append(abs(v - tv))
            dc.append(abs(q - tq))
            within_v.append(abs(v - tv) <= VOLTAGE_TOLERANCE)
            within_c.append(abs(q - tq) <= CAPACITY_TOLERANCE * tq)
            if result.get("e_hull") is not None:
                ehull.append((result["e_hull"], result.get("competing_phases", 0)))
            novel_verified += bool(result.get("novel"))
    proposed = counts["proposed"] or 1

    def pct(a, b):
        return 100.0 * a / b if b else None

    return {
        "proposals": counts["proposed"],
        "survival_per_stage": {k: counts[k] for k in counts},
        "survival_per_stage_pct": {k: pct(counts[k], proposed) for k in counts},
        "validity_pct": pct(counts["neutral"], counts["proposed"]),
        "uniqueness_pct": pct(counts["unique"], counts["neutral"]),
        "novelty_pct": pct(counts["novel"], counts["unique"]),
        "verified": len(dv),
        "verified_pct_of_relaxed": pct(len(dv), counts["relaxed"]),
        "novel_verified": novel_verified,
        "novel_verified_pct_of_proposals": pct(novel_verified, counts["proposed"]),
        "novel_verified_pct_of_relaxed": pct(novel_verified, counts["relaxed"]),
        "median_abs_delta_voltage": float(np.median(dv)) if dv else None,
        "pct_within_0.3V": pct(sum(within_v), len(within_v)),
        "median_abs_delta_capacity_grav": float(np.median(dc)) if dc else None,
        "pct_capacity_within_10pct": pct(sum(within_c), len(within_c)),
        "median_e_hull": float(np.median([e for e, _ in ehull])) if ehull else None,
        "pct_e_hull_below_0.1_with_competition": pct(sum(e < 0.1 and n > 0 for e, n in ehull), len(ehull)),
        "median_competing_phases": float(np.median([n for _, n in ehull])) if ehull else None,
        "seconds_per_verified_candidate": seconds / len(dv) if dv else None,
        "failure_reasons": failures,
    }


def _diagnostics(table: pd.DataFrame, table_dir) -> dict:
    from battgen.data.table import load_scaler
    from battgen.design.prior import CompositionPrior
    from battgen.design.surrogate import VoltageSurrogate

    test = table[table["split"] == "test"]
    return {"voltage_surrogate_test": VoltageSurrogate.fit(table).score(test),
            "composition_prior_test_r2": CompositionPrior.fit(table, load_scaler(table_dir)).score(test)}


SUMMARY_ROWS = {
    "proposals": "proposals",
    "validity_pct": "valid (%)",
    "uniqueness_pct": "unique of valid (%)",
    "novelty_pct": "novel of unique (%)",
    "verified": "verified candidates",
    "verified_pct_of_relaxed": "verified of relaxed (%)",
    "novel_verified_pct_of_proposals": "novel verified of proposals (%)",
    "median_abs_delta_voltage": "median |ΔV| (V)",
    "pct_within_0.3V": "within 0.3 V (%)",
    "median_abs_delta_capacity_grav": "median |ΔQ| (mAh/g)",
    "pct_capacity_within_10pct": "Q within 10 % (%)",
    "median_e_hull": "median E_hull (eV/atom)",
    "median_competing_phases": "median competing phases",
    "seconds_per_verified_candidate": "seconds per verified (1 thread)",
}


# The yield run: small batches with every survivor relaxed, so "novel verified of proposals" is
# measured rather than capped by the verification budget (the main evaluation relaxes the top k
# of 300). Same format as metrics.json.
YIELD_FILENAME = "yield.json"
YIELD_COMMAND = ("python -m battgen eval design --requests 6 --proposals 12 --max-candidates 10 --workers 2 "
                 "--arms guided ion-exchange --db data/design/yield.sqlite --out assets/design/yield.json")
YIELD_ROWS = {
    "proposals": "proposals",
    "validity_pct": "valid (%)",
    "uniqueness_pct": "unique of valid (%)",
    "novelty_pct": "novel of unique (%)",
    "relaxed": "relaxed (every novel survivor)",
    "novel_verified": "novel verified",
    "novel_verified_pct_of_proposals": "novel verified of proposals (%)",
    "median_abs_delta_voltage": "median |ΔV| (V)",
}


def yield_table(metrics: dict) -> pd.DataFrame:
    """The yield run, one row per measure and one column per arm."""
    arms = metrics["arms"]

    def value(arm: str, key: str):
        v = arms[arm]["survival_per_stage"].get("relaxed") if key == "relaxed" else arms[arm].get(key)
        return round(v, 3) if isinstance(v, float) else v

    return pd.DataFrame({"measure": list(YIELD_ROWS.values()),
                         **{arm: [value(arm, k) for k in YIELD_ROWS] for arm in arms}})


def load_metrics(path=None, filename: str = METRICS_FILENAME) -> dict | None:
    """The stored evaluation (``assets/design/metrics.json``), or None before the first run."""
    path = Path(path or paths.asset_dir(paths.DESIGN) / filename)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def metrics_table(metrics: dict) -> pd.DataFrame:
    """One row per summary metric, one column per arm, for the page (three decimals: 94.2833 % says
    nothing 94.283 does not)."""
    arms = metrics["arms"]

    def shown(value):
        return round(value, 3) if isinstance(value, float) else value

    return pd.DataFrame({"metric": list(SUMMARY_ROWS.values()),
                         **{arm: [shown(arms[arm].get(k)) for k in SUMMARY_ROWS] for arm in arms}})


def _write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")


def evaluate_design(*, n_requests: int = 20, max_candidates: int = 2, proposals: int = 300, relax_steps: int = 120,
                    workers: int = 1, scheduler: str | None = None, db=None, out=None, log=None,
                    arms=ARMS) -> dict:
    from battgen.data.table import load_scaler, load_table
    from battgen.design.jobs import make_client, run_design, table_directory
    from battgen.design.store import DesignStore

    say = log or (lambda m: None)
    if n_requests < 1:
        raise ValueError("the evaluation needs at least one request")
    arms = tuple(arms)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not arms:
        raise ValueError(f"choose arms from {', '.join(ARMS)}")
    table_dir = table_directory()
    table, scaler = load_table(table_dir), load_scaler(table_dir)
    requests = fixed_requests(table)[:n_requests]
    store = DesignStore(db or paths.data_dir(paths.DESIGN) / EVAL_DB_FILENAME)
    out_path = Path(out or paths.asset_dir(paths.DESIGN) / METRICS_FILENAME)
    # Finished designs per (request, arm): an arm added later runs alone, the others are reused.
    finished: dict[tuple[str, str], str] = {}
    budget = {"max_candidates": max_candidates, "proposals": proposals, "relax_steps": relax_steps}
    for d in store.list_designs(limit=10_000):
        name = d["request"].get("extra", {}).get("eval")
        same_budget = all(d["request"].get(k) == v for k, v in budget.items())
        if d["status"] == "done" and name and same_budget:
            for arm in d["request"]["arms"]:
                finished.setdefault((name, arm), d["id"])
    diagnostics = _diagnostics(table, table_dir)
    settings = {"requests": len(requests), "max_candidates": max_candidates, "proposals": proposals,
                "relax_steps": relax_steps, "workers": workers, "arms": list(arms)}
    client = make_client(scheduler, workers)
    per_request: list[dict] = []
    start = time.perf_counter()
    try:
        for i, item in enumerate(requests):
            missing = tuple(a for a in arms if (item["name"], a) not in finished)
            if missing:
                request = build_request(table, scaler, item["ion"], item["targets"], max_candidates=max_candidates,
                                        proposals=proposals, arms=missing, relax_steps=relax_steps, seed=i)
                request = type(request).from_dict({**request.as_dict(), "extra": {"eval": item["name"]}})
                say(f"[{i + 1}/{len(requests)}] {item['name']} {item['ion']} {item['targets']} ({', '.join(missing)})")
                design_id = run_design(store, request, client=client, table_dir=table_dir, log=say)
                finished.update({(item["name"], a): design_id for a in missing})
            ids = {a: finished[(item["name"], a)] for a in arms}
            per_request.append({**item, "design_id": ids[arms[0]], "design_ids": ids,
                                "funnels": {a: store.funnels(ids[a]).get(a) for a in arms},
                                "candidates": [c for a in arms for c in store.candidates(ids[a]) if c["arm"] == a]})
            metrics = {
                "n_requests": len(per_request), "n_requests_planned": len(requests),
                "complete": len(per_request) == len(requests) and len(requests) >= 20,
                "arms": {arm: _arm_metrics(per_request, arm) for arm in arms},
                "definitions": {
                    "validity_pct": "proposals passing min distance and charge neutrality (SMACT and pymatgen, "
                                    "discharged and charged)",
                    "uniqueness_pct": "valid proposals unique in the batch (StructureMatcher)",
                    "novelty_pct": "unique proposals not matching any table structure (StructureMatcher)",
                    "pct_capacity_within_10pct": f"|Q_computed - Q_requested| <= {CAPACITY_TOLERANCE:.0%} of Q_requested",
                    "seconds_per_verified_candidate": "funnel + relaxation seconds of the arm (one thread) / verified",
                    "guided": "composition-prior weighted proposals, pre-ranked by surrogate voltage + exact capacity",
                    "guided-prerelaxed": "the guided arm's survivors, the best 6 re-ranked by a 30-step CHGNet "
                                         "relaxation's voltage + exact capacity; its seconds include those relaxations",
                    "ion-exchange": "ion exchange + lambda.json substitution, ranked by substitution probability only",
                },
                "requests": [{k: r[k] for k in ("name", "ion", "targets", "design_ids")} for r in per_request],
                "diagnostics": diagnostics, "settings": settings,
                "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                "wall_time_s": time.perf_counter() - start,
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": "python -m battgen eval design",
            }
            _write_atomic(out_path, metrics)
    finally:
        client.close()
        if not scheduler and client.cluster is not None:
            client.cluster.close()
    return metrics
