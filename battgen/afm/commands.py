"""``python -m battgen afm ...``: simulate one structure's AFM stacks, build the campaign dataset."""

from __future__ import annotations

import argparse

import numpy as np

from battgen.afm.cluster import DEFAULT_TARGET_ATOMS
from battgen.parallel import add_parallel_options

DEFAULT_TABLE = "assets/electrodes"
DEFAULT_OUT = "data/afm"


def _working_ion(text: str) -> str:
    from battgen.data.properties import check_ion

    try:
        return check_ion(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_simulation_options(parser: argparse.ArgumentParser) -> None:
    from battgen.afm.simulate import SUPPORTED_GRIDS

    parser.add_argument("--grid", type=int, choices=SUPPORTED_GRIDS, default=64,
                        help="scan pixels per side (64 ships; 128 is the published grid)")
    parser.add_argument("--rotations-candidates", type=int, default=100,
                        help="Fibonacci viewing directions to rank by depth entropy")
    parser.add_argument("--atoms", type=int, default=DEFAULT_TARGET_ATOMS,
                        help="target atoms in the cluster cut from the crystal")


def register(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser("simulate", help="AFM stacks and descriptors of one structure file")
    sim.add_argument("--structure", required=True, help="CIF, POSCAR or pymatgen JSON file")
    sim.add_argument("--out", required=True, help="write the views to this .npz")
    sim.add_argument("--views", type=int, default=4, help="views kept (highest depth entropy)")
    sim.add_argument("--ion", type=_working_ion, default=None,
                     help="working ion (default: the one working-ion element in the structure)")
    _add_simulation_options(sim)
    sim.set_defaults(func=_simulate)

    build = commands.add_parser("build-dataset", help="AFM campaign over an electrode table")
    build.add_argument("--table", default=DEFAULT_TABLE, help="electrode table directory")
    build.add_argument("--out", default=DEFAULT_OUT)
    build.add_argument("--views", type=int, default=8, help="views kept per material (highest depth entropy)")
    build.add_argument("--limit", type=int, default=None, help="only the first N materials")
    build.add_argument("--split", choices=("train", "val", "test"), default=None,
                       help="only the materials of this split of the table (before --limit)")
    add_parallel_options(build)
    build.add_argument("--no-progress", action="store_true")
    _add_simulation_options(build)
    instrument = build.add_argument_group(
        "instrument", "another microscope than the training campaign's (robustness: 'afm robustness --simulated')")
    instrument.add_argument("--probe", choices=("CO", "Xe"), default="CO",
                            help="probe particle on the tip's spring (default CO)")
    instrument.add_argument("--tip-closer", type=float, default=0.0, metavar="ANGSTROM",
                            help="record every height this much closer to the sample (negative: farther)")
    instrument.add_argument("--df-steps", type=int, default=10,
                            help="oscillation: z steps of 0.1 Å in the Δf convolution (default 10 = 1 Å)")
    build.set_defaults(func=_build)

    examples = commands.add_parser("export-examples",
                                   help="test-split views with ground truth for the app (assets/afm/examples.npz)")
    examples.add_argument("--data", default=DEFAULT_OUT, help="directory or file of the campaign's dataset.npz")
    examples.add_argument("--out", default=None, help="default: assets/afm/examples.npz")
    examples.add_argument("--per-ion", type=int, default=1)
    examples.add_argument("--translator", default="checkpoints/translator",
                          help="skip views above this translator's OOD caution level (when it has a calibration)")
    examples.set_defaults(func=_export_examples)

    ood = commands.add_parser("calibrate-ood", help="fit the out-of-distribution score on the translator's "
                                                    "training latents, calibrate it on held-out ones")
    ood.add_argument("--translator", default="checkpoints/translator", help="checkpoint with latents.npz")
    ood.add_argument("--components", type=int, default=None, help="principal components kept (default 128)")
    ood.add_argument("--percentile", type=float, default=None,
                     help="held-out percentile above which the page warns (default 99)")
    ood.add_argument("--split", choices=("val", "test"), default="val", help="held-out split to calibrate on")
    ood.set_defaults(func=_calibrate_ood)

    encode = commands.add_parser("encode-latents",
                                 help="rewrite a translator's latents.npz from an AFM dataset (e.g. one grown "
                                      "since the translator was trained), weights unchanged")
    encode.add_argument("--data", default=DEFAULT_OUT, help="directory or file of the campaign's dataset.npz")
    encode.add_argument("--translator", default="checkpoints/translator")
    encode.add_argument("--out", default=None, help="default: TRANSLATOR/latents.npz")
    encode.add_argument("--threads", type=int, default=1, help="torch threads")
    encode.add_argument("--no-progress", action="store_true")
    encode.set_defaults(func=_encode_latents)

    robust = commands.add_parser("robustness", help="SSIM, composition R² and OOD warnings of the shipped "
                                                    "models on held-out stacks, clean vs distorted")
    robust.add_argument("--data", default=DEFAULT_OUT, help="directory or file of an AFM dataset.npz "
                                                            "(e.g. one built with build-dataset --split test)")
    robust.add_argument("--translator", default="checkpoints/translator")
    robust.add_argument("--regressor", default="checkpoints/atom_regressor")
    robust.add_argument("--split", choices=("train", "val", "test"), default="test")
    robust.add_argument("--max-views", type=int, default=None)
    robust.add_argument("--seed", type=int, default=0)
    robust.add_argument("--threads", type=int, default=1, help="torch threads")
    robust.add_argument("--no-write", action="store_true", help="print, do not write robustness.json")
    robust.add_argument("--simulated", nargs="+", default=(), metavar="DATA",
                        help="campaigns of the same views imaged with another instrument (build-dataset --probe, "
                             "--tip-closer, --df-steps): one row each")
    robust.add_argument("--before", default=None,
                        help="the robustness.json of the models these replace (default: the one in the "
                             "translator's folder); its numbers become the table's 'before' columns")
    robust.set_defaults(func=_robustness)


def _check_views(args) -> None:
    # The library says the same without flag names; here the user learns which flags to change.
    if not 1 <= args.views <= args.rotations_candidates:
        raise ValueError(f"--views must be between 1 and --rotations-candidates "
                         f"({args.rotations_candidates}), got {args.views}")


def _simulate(args) -> int:
    from pathlib import Path

    from battgen.afm.cluster import load_structure
    from battgen import atomic
    from battgen.afm.dataset import simulate_structure
    from battgen.afm.simulate import AFMSimulator, SimulationConfig

    _check_views(args)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must name a .npz file, got {out}")
    structure = load_structure(args.structure)
    simulator = AFMSimulator(SimulationConfig(grid=args.grid))
    views = simulate_structure(structure, simulator, ion=args.ion, candidates=args.rotations_candidates,
                               keep=args.views, target_atoms=args.atoms)
    views.extra.update({"device": simulator.device, "source": str(args.structure)})
    atomic.save_npz(out, **views.arrays())

    cluster = views.cluster
    print(f"{cluster.formula}: {len(cluster)}-atom cluster (radius {cluster.radius:.2f} Å, "
          f"elements {' '.join(cluster.elements)}), working ion {views.ion}")
    print(f"device: {simulator.device} (set-up {simulator.setup_time_s:.1f} s)")
    print(f"{'view':>4} {'candidate':>9} {'entropy':>7} {'valid':>5} {'s':>6}  reason")
    for k in range(len(views.valid)):
        print(f"{k:>4} {views.candidate_index[k]:>9} {views.entropy[k]:>7.3f} "
              f"{'yes' if views.valid[k] else 'no':>5} {views.seconds[k]:>6.2f}  {views.reasons[k]}")
    print(f"wrote {out}: stacks {views.stacks.shape} (height index 0 = farthest), "
          f"descriptors {views.descriptors.shape}")
    return 0


def _build(args) -> int:
    from battgen.afm.dataset import CampaignPlan, build_dataset

    _check_views(args)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    plan = CampaignPlan(candidates=args.rotations_candidates, keep=args.views, grid=args.grid,
                        target_atoms=args.atoms, probe=args.probe, tip_closer=args.tip_closer,
                        df_steps=args.df_steps)
    path = build_dataset(args.table, args.out, plan, workers=args.workers, dask_scheduler=args.dask_scheduler,
                         limit=args.limit, split=args.split, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def _export_examples(args) -> int:
    from pathlib import Path

    from battgen.afm.examples import EXAMPLES_FILE, write_examples
    from battgen.afm.ood import OOD_FILENAME, LatentDensity

    calibration = Path(args.translator) / OOD_FILENAME
    check = _typical_views(args.translator, LatentDensity.load(calibration)) if calibration.is_file() else None
    path = write_examples(args.data, args.out or EXAMPLES_FILE, per_ion=args.per_ion, typical=check)
    print(f"wrote {path}")
    return 0


def _typical_views(translator_dir, density):
    """stacks -> True where the translator's latent lies within the OOD score's caution level."""
    from battgen.models.translator import AFMTranslator

    translator = AFMTranslator.from_pretrained(translator_dir).eval()
    return lambda stacks: density.distance(translator.translate(stacks)[1]) <= density.caution


def _calibrate_ood(args) -> int:
    from pathlib import Path

    from battgen.afm.ood import DEFAULT_COMPONENTS, DEFAULT_THRESHOLD_PERCENTILE, OOD_FILENAME, calibrate_from_latents

    density = calibrate_from_latents(
        args.translator, components=args.components or DEFAULT_COMPONENTS,
        threshold_percentile=args.percentile or DEFAULT_THRESHOLD_PERCENTILE, calibration_split=args.split)
    density.provenance["command"] = "python -m battgen afm calibrate-ood " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in ("translator", "components",
                                                                                  "percentile", "split") and v)
    path = density.save(Path(args.translator) / OOD_FILENAME)
    print(f"{density.provenance['fitted_on']}; {density.provenance['calibrated_on']}")
    print(f"threshold (the {density.threshold_percentile:g}th percentile of held-out distances): "
          f"{density.threshold:.3f}; median held-out distance {float(np.median(density.calibration)):.3f}")
    print(f"wrote {path}")
    return 0


def _robustness(args) -> int:
    import json

    import torch

    from battgen import atomic
    from battgen.afm.dataset import campaign_instrument
    from battgen.afm.loader import load_afm_dataset
    from battgen.afm.ood import LatentDensity
    from battgen.afm.robustness import ROBUSTNESS_FILENAME, carry_over_before, model_record, robustness_table
    from pathlib import Path

    from battgen.afm.translate import LATENTS_FILENAME
    from battgen.artifacts import hash_inputs, read_metadata
    from battgen.models.atom_regressor import AtomRegressor
    from battgen.models.translator import AFMTranslator

    torch.set_num_threads(args.threads)
    translator = AFMTranslator.from_pretrained(args.translator).eval()
    regressor = AtomRegressor.from_pretrained(args.regressor).eval() if args.regressor else None
    density = LatentDensity.load(args.translator)
    data = load_afm_dataset(args.data, required_splits=(args.split,))
    simulated = [(campaign_instrument(path), load_afm_dataset(path, required_splits=(args.split,)))
                 for path in args.simulated]
    result = robustness_table(translator, regressor, density, data, split=args.split, max_views=args.max_views,
                              seed=args.seed, stored_latents=Path(args.translator) / LATENTS_FILENAME,
                              simulated=simulated, progress=lambda name: print(f"… {name}", flush=True))
    digest, files = hash_inputs([data.path])
    made = read_metadata(data.path.parent) or {}
    result["data"] = {"path": str(data.path), "sha256": files[0]["sha256"], "input_sha256": digest,
                      "made_by": made.get("command"), "plan": made.get("config"), "session": made.get("session")}
    result["command"] = "python -m battgen afm robustness " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k in ("data", "translator", "regressor", "split", "max_views", "seed") and v is not None) + (
        " --simulated " + " ".join(map(str, args.simulated)) if args.simulated else "")
    for row in result["rows"]:
        r2, r2_drop = row.get("composition_r2", float("nan")), row.get("composition_r2_drop", float("nan"))
        print(f"{row['condition']:<28} SSIM {row['ssim_mean']:.3f} (drop {row['ssim_drop']:.3f})  "
              f"R² {r2:.3f} (drop {r2_drop:.3f})  OOD warned {100 * row['ood_detection_rate']:.0f} %")
    if "reproduces_stored_latents" in result:
        check = result["reproduces_stored_latents"]
        print(f"clean stacks vs the translator's stored latents: {check['views_matched']} views matched, "
              f"max |Δ| {check.get('max_abs_latent_difference', float('nan')):.4f}")
    result["translator"] = model_record(args.translator)
    if args.regressor:
        result["regressor"] = model_record(args.regressor)
    old = Path(args.before) if args.before else Path(args.translator) / ROBUSTNESS_FILENAME
    if args.before and not old.is_file():
        raise ValueError(f"no robustness table at {old}")
    result = carry_over_before(result, json.loads(old.read_text()) if old.is_file() else None)
    if not args.no_write:
        path = atomic.write_text(Path(args.translator) / ROBUSTNESS_FILENAME, json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def _encode_latents(args) -> int:
    from pathlib import Path

    from battgen import atomic
    from battgen.device import get_device
    from battgen.train.afm_latents import encode_dataset
    from battgen.train.common import set_threads
    from battgen.train.configs import LATENTS_FILENAME

    set_threads(args.threads)
    out = Path(args.out) if args.out else Path(args.translator) / LATENTS_FILENAME
    if out.suffix != ".npz":
        raise ValueError(f"--out must name a .npz file, got {out}")
    previous = set()
    if out.is_file():
        with np.load(out, allow_pickle=False) as old:
            if "material_id" in old.files:
                previous = set(old["material_id"].astype(str))
    arrays, data = encode_dataset(args.translator, args.data, device=get_device(),
                                  progress=not args.no_progress)
    atomic.save_npz(out, **arrays)
    ids = set(arrays["material_id"].astype(str)) if "material_id" in arrays else set()
    splits = {s: int(np.sum(arrays["split"] == s)) for s in ("train", "val", "test")}
    print(f"wrote {out}: {len(data)} views of {len(np.unique(arrays['material']))} materials "
          f"({', '.join(f'{k} {v}' for k, v in splits.items())} views)")
    if previous:
        print(f"materials: {len(ids - previous)} new, {len(previous - ids)} dropped, "
              f"{len(ids & previous)} kept since the file it replaces")
    return 0
