"""``python -m battgen screen``: the Screening page's request from the command line."""

from __future__ import annotations

import argparse
import sys

from battgen.data.properties import PROPERTY_BY_NAME, PROPERTY_NAMES, WORKING_IONS

from battgen.screening.candidates import RANKINGS
from battgen.screening.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

# CLI flag for each property (the MP field names are not what a person types)
PROPERTY_FLAGS = {
    "average_voltage": "--voltage",
    "capacity_grav": "--capacity-grav",
    "capacity_vol": "--capacity-vol",
    "energy_grav": "--energy-grav",
    "energy_vol": "--energy-vol",
    "max_delta_volume": "--volume-change",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ion", required=True, choices=WORKING_IONS, help="working ion")
    for name in PROPERTY_NAMES:
        p = PROPERTY_BY_NAME[name]
        parser.add_argument(PROPERTY_FLAGS[name], dest=name, type=float, default=None,
                            help=f"{p.label} ({p.unit}); default: the ion's median")
    parser.add_argument("--num-candidates", type=int, default=4, help="generated samples")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="denoising steps")
    parser.add_argument("--scheduler", choices=SAMPLERS, default=DEFAULT_SAMPLER)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rank-by", choices=RANKINGS, default="score")
    parser.add_argument("--top", type=int, default=10, help="candidates to print")
    parser.add_argument("--root", default=".", help="artifact root holding checkpoints/ and assets/")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when present)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from battgen.device import get_device
    from battgen.screening.session import ScreeningSession

    if args.num_candidates < 1 or args.steps < 1:
        raise ValueError("--num-candidates and --steps must be at least 1")
    session = ScreeningSession.load(args.root, device=get_device(args.device))
    request = session.request(args.ion, {n: getattr(args, n) for n in PROPERTY_NAMES})
    result = session.screen(request, num_candidates=args.num_candidates, num_inference_steps=args.steps,
                            guidance_scale=args.guidance, seed=args.seed, scheduler=args.scheduler,
                            rank_by=args.rank_by)
    if args.json:
        print(result.to_json(top=args.top))
        return 0
    warning = request.describe_outside(session.scaler)
    if warning:
        print(warning, file=sys.stderr)
    print(f"request: {args.ion}, " + ", ".join(
        f"{PROPERTY_BY_NAME[n].label} {v:.3g} {PROPERTY_BY_NAME[n].unit}" for n, v in request.properties.items()))
    print(f"generated {args.num_candidates} samples in {result.wall_time_s:.2f} s "
          f"({args.scheduler}, {args.steps} steps, guidance {args.guidance})")
    print(result.samples.to_string(index=False))
    print()
    print(result.candidate_table().head(args.top).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0
