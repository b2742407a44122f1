"""``python -m battgen design ...`` (request, list, show, export, cancel) and ``python -m battgen eval design``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from battgen import atomic
from battgen.data.properties import PROPERTY_BY_NAME, PROPERTY_NAMES, WORKING_IONS
from battgen.design.request import ARMS, DEFAULT_ARMS, DEFAULT_PROPOSALS, DEFAULT_RELAX_STEPS
from battgen.screening.commands import PROPERTY_FLAGS


HELP = "property request -> new electrode structures, filtered and verified with CHGNet"


def register(subparsers) -> None:
    """Add ``battgen design`` to the top-level sub-parsers (from ``battgen.cli``)."""
    configure(subparsers.add_parser("design", help=HELP, description=HELP))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ion", help=f"working ion ({', '.join(WORKING_IONS)}); starts a new design")
    for name in PROPERTY_NAMES:
        p = PROPERTY_BY_NAME[name]
        parser.add_argument(PROPERTY_FLAGS[name], dest=name, type=float, default=None,
                            help=f"{p.label} ({p.unit}); default: the ion's median (not targeted)")
    parser.add_argument("--max-candidates", type=int, default=2, help="verified candidates wanted per arm")
    parser.add_argument("--proposals", type=int, default=DEFAULT_PROPOSALS, help="proposals drawn per arm")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(DEFAULT_ARMS),
                        help="guided-prerelaxed (prior + surrogate, best 6 re-ranked by a short CHGNet relaxation), "
                             "guided (without that step), ion-exchange (baseline)")
    parser.add_argument("--relax-steps", type=int, default=DEFAULT_RELAX_STEPS, help="optimiser steps per relaxation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="local Dask worker processes (1 torch thread each)")
    parser.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                        help="run on this Dask scheduler instead of a local cluster")
    parser.add_argument("--db", default=None, help="SQLite file (default: data/design/designs.sqlite)")
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument("--list", action="store_true", help="list stored designs")
    actions.add_argument("--show", metavar="DESIGN_ID", help="print a stored design's candidates")
    actions.add_argument("--export", metavar="DESIGN_ID", help="write CSV + CIF/POSCAR of a design to --out")
    actions.add_argument("--cancel", metavar="DESIGN_ID", help="ask a running design to stop")
    parser.add_argument("--out", default=None, help="folder for --export")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def _summary(store, design_id: str) -> dict:
    from battgen.design.export import design_records

    design = store.design(design_id)
    records = design_records(store, design_id)
    return {
        "design_id": design_id, "status": design["status"], "message": design["message"],
        "request": design["request"], "funnel": store.funnels(design_id),
        "candidates": [r for r in records if r["status"] == "verified"],
        "not_verified": [{k: r[k] for k in ("id", "arm", "formula_discharge", "status", "reason")}
                         for r in records if r["status"] != "verified"],
    }


def _print_summary(summary: dict) -> None:
    print(f"design {summary['design_id']}: {summary['status']} {summary['message']}")
    for arm, funnel in summary["funnel"].items():
        print(f"  {arm}: " + " → ".join(f"{k} {v}" for k, v in funnel["counts"].items()))
    for r in summary["candidates"]:
        c = r["computed"]
        hull = "n/a" if r["e_hull"] is None else f"{r['e_hull']:.3f} eV/atom"
        print(f"  {r['id']}  {r['formula_discharge']:<16} V {c['average_voltage']:.2f} "
              f"(asked {r['requested'].get('average_voltage', '-')})  Q {c['capacity_grav']:.0f} mAh/g "
              f"(asked {r['requested'].get('capacity_grav', '-')})  E_hull {hull} "
              f"vs {r['competing_phases']} competing  {'novel' if r['novel'] else 'in table'}")
    for r in summary["not_verified"]:
        print(f"  {r['id']}  {r['formula_discharge']:<16} {r['status']}: {r['reason']}")


def run(args: argparse.Namespace) -> int:
    from battgen.design.store import DesignStore

    store = DesignStore(args.db)
    if args.list:
        designs = store.list_designs()
        if args.json:
            print(json.dumps(designs, indent=2))
        for d in designs if not args.json else []:
            r = d["request"]
            print(f"{d['id']}  {d['status']:<11} {r['working_ion']} {r['targets']}  {d['verified']} verified")
        return 0
    if args.show:
        summary = _summary(store, args.show)
        print(json.dumps(summary, indent=2)) if args.json else _print_summary(summary)
        return 0
    if args.export:
        return _export(store, args.export, args.out)
    if args.cancel:
        store.design(args.cancel)
        store.request_cancel(args.cancel)
        print(f"asked design {args.cancel} to stop")
        return 0
    if not args.ion:
        raise ValueError("give a working ion to start a design, or one of list/show/export/cancel")
    return _design(args, store)


def _design(args, store) -> int:
    from battgen.data.table import load_scaler, load_table
    from battgen.design.jobs import make_client, run_design, table_directory
    from battgen.design.request import build_request

    table_dir = table_directory()
    request = build_request(load_table(table_dir), load_scaler(table_dir), args.ion,
                            {n: getattr(args, n) for n in PROPERTY_NAMES}, max_candidates=args.max_candidates,
                            proposals=args.proposals, arms=tuple(args.arms), relax_steps=args.relax_steps,
                            seed=args.seed)
    client = make_client(args.dask_scheduler, args.workers)
    try:
        design_id = run_design(store, request, client=client, log=lambda m: print(m, file=sys.stderr))
    finally:
        client.close()
        if not args.dask_scheduler and client.cluster is not None:
            client.cluster.close()
    summary = _summary(store, design_id)
    print(json.dumps(summary, indent=2)) if args.json else _print_summary(summary)
    if not summary["candidates"]:
        print("no candidate was verified; see the reasons above", file=sys.stderr)
    return 0


def _export(store, design_id: str, out: str | None) -> int:
    from battgen.design.export import csv_bytes, design_records, structures
    from battgen.data.evaluate import structure_to_text

    if not out:
        raise ValueError("export needs an output folder")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(folder / f"{design_id}.csv", csv_bytes(design_records(store, design_id)))
    written = 1
    for name, structure in structures(store, design_id).items():
        atomic.write_bytes(folder / f"{name}.cif", structure_to_text(structure, "cif").encode())
        atomic.write_bytes(folder / f"{name}.vasp", structure_to_text(structure, "poscar").encode())
        written += 2
    print(f"wrote {written} files to {folder}")
    return 0


def register_eval(commands) -> None:
    """``python -m battgen eval design``: registered by battgen.eval.commands."""
    p = commands.add_parser("design", help="design loop over fixed requests, guided vs ion-exchange arm")
    p.add_argument("--requests", type=int, default=20, help="fixed requests to run (at least 20 for the metrics)")
    p.add_argument("--max-candidates", type=int, default=2, help="verified candidates per request and arm")
    p.add_argument("--proposals", type=int, default=DEFAULT_PROPOSALS)
    p.add_argument("--relax-steps", type=int, default=DEFAULT_RELAX_STEPS)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--dask-scheduler", default=None, metavar="ADDRESS")
    p.add_argument("--db", default=None, help="SQLite file of the evaluation's designs (default: data/design/eval.sqlite)")
    p.add_argument("--out", default=None, help="metrics file (default: assets/design/metrics.json)")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                   help="arms to compare (finished arms of the same settings are reused from --db)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from battgen.design.evaluate import evaluate_design

    metrics = evaluate_design(n_requests=args.requests, max_candidates=args.max_candidates,
                              proposals=args.proposals, relax_steps=args.relax_steps, workers=args.workers,
                              scheduler=args.dask_scheduler, db=args.db, out=args.out, arms=args.arms,
                              log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({arm: m.get("median_abs_delta_voltage") for arm, m in metrics["arms"].items()}, indent=2))
    return 0
