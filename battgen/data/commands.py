"""``python -m battgen data ...``: build, fetch, validate, summarise and export electrode tables."""

from __future__ import annotations

import argparse
import json
import sys

from battgen.parallel import add_parallel_options

DEFAULT_TABLE = "assets/electrodes"
DEFAULT_CACHE = "data/electrodes/cache"
DEFAULT_MP_OUT = "data/electrodes/mp"


def _ion_list(text: str) -> tuple[str, ...]:
    from battgen.data.properties import check_ion

    try:
        return tuple(check_ion(ion.strip()) for ion in text.split(",") if ion.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(commands: argparse._SubParsersAction) -> None:
    from battgen.data.properties import WORKING_IONS
    from battgen.data.relax import DEFAULT_FMAX, DEFAULT_OPTIMIZER, DEFAULT_STEPS, OPTIMIZERS

    build = commands.add_parser("build-electrodes", help="compute the electrode dataset with CHGNet")
    build.add_argument("--out", default=DEFAULT_TABLE, help="where the table goes (default: shipped)")
    build.add_argument("--cache", default=DEFAULT_CACHE, help="relaxation cache (resumable)")
    build.add_argument("--ions", type=_ion_list, default=WORKING_IONS, help="comma-separated")
    build.add_argument("--templates", default=None, help="comma-separated template names")
    build.add_argument("--limit", type=int, default=None, help="only the first N candidates")
    build.add_argument("--fmax", type=float, default=None, help=f"eV/Å (default {DEFAULT_FMAX})")
    build.add_argument("--steps", type=int, default=None, help=f"optimiser step bound (default {DEFAULT_STEPS})")
    build.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                       help=f"ASE optimiser (default {DEFAULT_OPTIMIZER})")
    add_parallel_options(build)
    build.add_argument("--device", choices=("cpu", "cuda"), default=None)
    build.add_argument("--keep-splits-from", default=None,
                       help="a table being grown (e.g. assets/electrodes): its materials keep their split, "
                            "only new formulas are dealt (otherwise every split is drawn afresh)")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=_build)

    validate = commands.add_parser("validate", help="textbook electrodes vs reference values")
    validate.add_argument("--table", default=DEFAULT_TABLE)
    validate.add_argument("--cache", default=DEFAULT_CACHE)
    validate.add_argument("--no-compute", action="store_true",
                          help="only report electrodes already in the table or cache")
    validate.add_argument("--json", action="store_true")
    validate.add_argument("--no-save", action="store_true",
                          help="do not write validation.json beside the table (the Structures page reads it)")
    validate.set_defaults(func=_validate)

    stability = commands.add_parser("stability", help="energy above hull and competing phases of "
                                    "every computed row (offline hull), written into the table")
    stability.add_argument("--table", default=DEFAULT_TABLE)
    stability.add_argument("--json", action="store_true")
    stability.set_defaults(func=_stability)

    fetch = commands.add_parser("fetch-mp", help="download insertion electrodes from Materials "
                                "Project (needs MP_API_KEY and network)")
    fetch.add_argument("--out", default=DEFAULT_MP_OUT)
    fetch.add_argument("--ions", type=_ion_list, default=WORKING_IONS)
    fetch.add_argument("--no-progress", action="store_true")
    fetch.set_defaults(func=_fetch_mp)

    summary = commands.add_parser("summary", help="counts per ion and source, ranges, provenance")
    summary.add_argument("--table", default=DEFAULT_TABLE)
    summary.add_argument("--plan", action="store_true",
                         help="count what the builder would compute instead (per ion and structure type)")
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(func=_summary)

    export = commands.add_parser("export", help="write the table (ion, formula, six properties)")
    export.add_argument("--table", default=DEFAULT_TABLE)
    export.add_argument("--format", choices=("csv",), default="csv")
    export.add_argument("--out", required=True)
    export.set_defaults(func=_export)


def _build(args) -> int:
    from battgen.data.build_plan import BuildPlan
    from battgen.data.builder import build_electrodes

    plan = BuildPlan(ions=args.ions, limit=args.limit)
    if args.templates:
        plan.templates = tuple(t.strip() for t in args.templates.split(",") if t.strip())
    if args.fmax is not None:
        plan.fmax = args.fmax
    if args.steps is not None:
        plan.steps = args.steps
    if args.optimizer is not None:
        plan.optimizer = args.optimizer
    from battgen.data.table import load_table, table_splits

    keep = table_splits(load_table(args.keep_splits_from)) if args.keep_splits_from else None
    path = build_electrodes(args.out, plan, cache_dir=args.cache, workers=args.workers,
                            dask_scheduler=args.dask_scheduler, device=args.device,
                            progress=not args.no_progress, keep_splits=keep)

    print(f"wrote {path} ({len(load_table(args.out))} electrodes)")
    return 0


def _validate(args) -> int:
    import time

    from battgen.data.build_plan import BuildPlan
    from battgen.data.table import load_table
    from battgen.data.validate import median_voltage_error, per_ion_table, save_validation, validation_table

    started = time.perf_counter()
    table, plan = load_table(args.table), BuildPlan()
    textbook = validation_table(table, plan, cache_dir=args.cache, compute_missing=not args.no_compute)
    per_ion = per_ion_table(table)
    if not args.no_save:
        command = (f"python -m battgen data validate --table {args.table} --cache {args.cache}"
                   + (" --no-compute" if args.no_compute else ""))
        path = save_validation(textbook, args.table, plan=plan, command=command,
                               seconds=time.perf_counter() - started)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({"textbook": json.loads(textbook.to_json(orient="records")),
                          "per_ion": json.loads(per_ion.to_json(orient="index"))}, indent=2))
        return 0
    print("Textbook electrodes: computed (CHGNet + pymatgen) vs reference (experiment)\n")
    print(textbook.drop(columns=["note", "source"]).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    notes = textbook[textbook["note"] != ""]
    for _, r in notes.iterrows():
        print(f"  {r['electrode']}: {r['note']}")
    print("\nSources of the experimental voltages:")
    for _, r in textbook.iterrows():
        print(f"  {r['electrode']}: {r['source']}")
    ok = textbook["within_0.5V"].fillna(False).astype(bool)
    median, n = median_voltage_error(textbook)
    print(f"\n{int(ok.sum())}/{len(textbook)} within ±0.5 V of the reference voltage; median "
          f"|error| {'n/a' if median is None else f'{median:.2f} V'} over the n = {n} that computed")
    print("\nPer working ion:\n")
    print(per_ion.to_string(float_format=lambda x: f"{x:.2f}"))
    return 0


def _stability(args) -> int:
    from battgen.data.stability import add_stability

    report = add_stability(args.table)
    lines = [f"E_hull of {report['rows_computed']} computed rows against {report['hull_entries']} entries "
             f"({report['reference_entries']} references) in {report['chemical_systems']} chemical systems, "
             f"{report['seconds']:.1f} s; {report['rows_kept_from_mp']} MP rows keep MP's values",
             *_e_hull_lines(report["summary"]),
             *(f"  left empty: {n} ({reason})" for reason, n in report["missing_by_reason"].items())]
    print(json.dumps(report, indent=2) if args.json else "\n".join(lines))
    return 0


def _e_hull_lines(stability: dict) -> list[str]:
    return [f"  E_hull {state:>9}: {s['with_e_hull']} of {stability['rows']} rows, median "
            f"{s['median_e_hull_eV_per_atom']} eV/atom, {s['on_hull_below_1meV']} on the hull, "
            f"{s['below_0.1_eV']} below 0.1 eV/atom" for state in ("discharge", "charge")
            if (s := stability[state])]


def _fetch_mp(args) -> int:
    from battgen.data.mp_fetch import fetch_mp

    path = fetch_mp(args.out, ions=args.ions, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def _summary(args) -> int:
    if args.plan:
        return _plan_summary(args)
    from battgen.artifacts import read_metadata
    from battgen.data.summary import table_summary
    from battgen.data.table import load_table

    summary = table_summary(load_table(args.table))
    summary["provenance"] = read_metadata(args.table)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"{summary['electrodes']} electrodes, {summary['distinct_discharged_formulas']} distinct "
          f"discharged formulas; sources {summary['per_source']}; splits {summary['per_split']}")
    if "structure_types" in summary:
        print(f"{summary['structure_types']} structure types, {summary.get('host_frameworks', '?')} host frameworks")
    for ion, stats in summary["per_ion"].items():
        print(f"  {ion:>2}: {stats['count']:5d}  median {stats['median_average_voltage']} V, "
              f"{stats['median_capacity_grav']} mAh/g")
    for name, r in summary["property_ranges"].items():
        print(f"  {name:>17}: {r['min']} … {r['max']} (median {r['median']})")
    print("\n".join(_e_hull_lines(summary["stability"])))
    return 0


def _plan_summary(args) -> int:
    from battgen.data.build_plan import BuildPlan

    summary = BuildPlan().summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['electrodes']} electrodes in {summary['host_frameworks']} host frameworks of "
          f"{summary['structure_types']} structure types; {summary['intermediate_states']} "
          f"half-filled states; {summary['relaxations']} relaxations in all")
    for ion, n in summary["per_ion"].items():
        print(f"  {ion:>2}: {n:5d}")
    for name, counts in summary["per_structure_type"].items():
        print(f"  {name:>20}: {counts['electrodes']:4d} electrodes, {counts['frameworks']:3d} frameworks")
    return 0


def _export(args) -> int:
    from battgen.data.export import export_table

    rows = export_table(args.table, args.out, fmt=args.format)
    print(f"wrote {rows} rows to {args.out}", file=sys.stderr)
    return 0
