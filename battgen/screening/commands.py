"""``battgen screen``: the Screening page's request from the command line, one or many at a time."""

from __future__ import annotations

import argparse
import json
import sys

from battgen.data.properties import PROPERTY_BY_NAME, PROPERTY_NAMES, WORKING_IONS
from battgen.screening.defaults import (DEFAULT_CANDIDATES, DEFAULT_GUIDANCE, DEFAULT_RANKING, DEFAULT_SAMPLER,
                                        DEFAULT_SEED, DEFAULT_STEPS, RANKINGS, SAMPLERS)

HELP = "property request -> generated samples and ranked candidate materials"
# CLI flag for each property (the MP field names are not what a person types)
PROPERTY_FLAGS = {
    "average_voltage": "--voltage",
    "capacity_grav": "--capacity-grav",
    "capacity_vol": "--capacity-vol",
    "energy_grav": "--energy-grav",
    "energy_vol": "--energy-vol",
    "max_delta_volume": "--volume-change",
}


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser("screen", help=HELP, description=HELP)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ion", choices=WORKING_IONS, help="working ion of a single request")
    source.add_argument("--requests", metavar="FILE.csv",
                        help="many requests, one per row: working_ion and the six properties under the "
                             f"table's column names ({', '.join(PROPERTY_NAMES)})")
    for name in PROPERTY_NAMES:
        p = PROPERTY_BY_NAME[name]
        parser.add_argument(PROPERTY_FLAGS[name], dest=name, type=float, default=None,
                            help=f"{p.label} ({p.unit}); default: the ion's median")
    parser.add_argument("--num-candidates", type=_at_least_one, default=DEFAULT_CANDIDATES, help="generated samples")
    parser.add_argument("--steps", type=_at_least_one, default=DEFAULT_STEPS, help="denoising steps")
    parser.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER, help="diffusion sampler")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--rank-by", choices=RANKINGS, default=DEFAULT_RANKING,
                        help="candidate order (default %(default)s: the real properties' match to the request)")
    parser.add_argument("--top", type=_at_least_one, default=10, help="candidates to print per request")
    parser.add_argument("--root", default=None,
                        help="artifact root holding checkpoints/ and assets/ (default: $BATTGEN_ARTIFACT_ROOT "
                             "or the checkout)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: each sample with its full predicted composition, the ranked candidates")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for --requests")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict:
    return dict(num_candidates=args.num_candidates, num_inference_steps=args.steps, guidance_scale=args.guidance,
                seed=args.seed, scheduler=args.sampler, rank_by=args.rank_by)


def run(args: argparse.Namespace) -> int:
    from battgen import paths
    from battgen.device import get_device
    from battgen.screening.session import ScreeningSession

    given = {n: getattr(args, n) for n in PROPERTY_NAMES}
    if args.requests and any(v is not None for v in given.values()):
        raise ValueError("property values come from the request file; give either a file or one request's values")
    root = args.root or paths.artifact_root()
    if args.requests:
        from battgen.data.table import load_scaler, load_table
        from battgen.screening.batch import read_requests

        # Checked before the model loads: a bad file costs nothing.
        table_dir = paths.asset_dir(paths.ELECTRODES, root)
        requests = read_requests(args.requests, load_table(table_dir), load_scaler(table_dir))
        session = ScreeningSession.load(root, device=get_device(args.device))
        return _run_batch(session, requests, args)
    session = ScreeningSession.load(root, device=get_device(args.device))
    request = session.request(args.ion, given)
    result = session.screen(request, **_settings(args))
    if args.json:
        print(result.to_json(top=args.top))
        return 0
    warning = request.describe_outside(session.scaler)
    if warning:
        print(warning, file=sys.stderr)
    print(f"request: {args.ion}, " + ", ".join(
        f"{PROPERTY_BY_NAME[n].label} {v:.3g} {PROPERTY_BY_NAME[n].unit}" for n, v in request.properties.items()))
    print(f"generated {args.num_candidates} samples in {result.wall_time_s:.2f} s "
          f"({args.sampler}, {args.steps} steps, guidance {args.guidance}); candidates ranked by {args.rank_by}")
    print(result.samples.to_string(index=False))
    print()
    print(result.candidate_table().head(args.top).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


def _run_batch(session, requests, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    results = []
    for number, request in enumerate(tqdm(requests, desc="screening", unit="request", file=sys.stderr,
                                          disable=args.no_progress), start=1):
        result = session.screen(request, **_settings(args))
        results.append({"row": number, **result.to_dict(top=args.top)})
        if not args.json:
            best = result.candidate_table().iloc[0]
            print(f"row {number}: {request.working_ion} {request.properties['average_voltage']:.3g} V -> "
                  f"{best['formula_discharge']} ({best['id']}), {best['average_voltage']:.3g} V, "
                  f"property match {best['property_match']:.3f}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
