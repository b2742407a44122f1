"""``python -m battgen eval ...``: score checkpoints (screening, guidance sweep, SEI runs) into their metrics.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from battgen.screening.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS


def _evaluation_parser(commands, name: str, help: str) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help)
    p.add_argument("--root", default=".", help="artifact root holding checkpoints/ and assets/")
    p.add_argument("--afm-data", default=None, help="AFM dataset (dataset.npz or its folder) for descriptor SSIM")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--samples", type=int, default=4, help="samples per material")
    p.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER, help="diffusion sampler")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-materials", type=int, default=None, help="only the first N materials (quick check)")
    p.add_argument("--no-write", action="store_true", help="print, do not write into the checkpoint's metrics.json")
    return p


def register(commands) -> None:
    p = _evaluation_parser(commands, "screening", "test-split metrics and sensitivity of the screening model")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    p.add_argument("--sensitivity-seeds", type=int, default=5, help="seeds of the sensitivity analysis (0: skip)")
    p.add_argument("--conditional-samples", type=int, default=8,
                   help="samples per material of the train/test conditional evaluation and baselines (0: skip)")
    p.add_argument("--denoising-materials", type=int, default=300,
                   help="materials per split of the clean-latent error by noise level (0: skip)")
    p.set_defaults(func=_run_screening)

    p = commands.add_parser("screening-denoising", help="the screening U-Net's clean-latent error by noise level, "
                                                        "own vs shuffled condition vs a constant (into "
                                                        "metrics.json evaluation.denoising)")
    p.add_argument("--root", default=".", help="artifact root holding checkpoints/ and assets/")
    p.add_argument("--materials", type=int, default=300, help="materials per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print, do not write into the checkpoint's metrics.json")
    p.set_defaults(func=_run_denoising)

    p = commands.add_parser("screening-ablation", help="short trainings, one per model change, scored by "
                                                       "the conditional metrics (into metrics.json 'ablation')")
    p.add_argument("--root", default=".", help="artifact root holding checkpoints/ and assets/")
    p.add_argument("--variants", nargs="+", default=None, help="variant names (default: all)")
    p.add_argument("--work-dir", default="ablation_runs", help="where the variants' checkpoints go")
    p.add_argument("--material-epochs", type=int, default=12, help="passes over the materials per variant")
    p.add_argument("--max-materials", type=int, default=48, help="materials per split in the evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print, do not write into the checkpoint's metrics.json")
    p.set_defaults(func=_run_ablation)

    p = _evaluation_parser(commands, "guidance-sweep", "the screening evaluation at several guidance scales")
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0])
    p.set_defaults(func=_run_guidance_sweep)

    p = commands.add_parser("sei-runs", help="SEI models' test metrics on the passivated runs alone "
                                             "(into each checkpoint's metrics.json 'test_passivated')")
    p.add_argument("--data", default=None, help="SEI dataset (default: the shipped one)")
    p.set_defaults(func=_run_sei_runs)

    from battgen.design.commands import register_eval

    register_eval(commands)


def _run_sei_runs(args) -> int:
    from battgen import paths
    from battgen.eval.sei_report import score_passivated_runs
    from battgen.sei.dataset import load_dataset
    from battgen.train.configs import SEI_CHECKPOINTS

    data = load_dataset(args.data or paths.asset_dir(paths.SEI))
    for kind, name in SEI_CHECKPOINTS.items():
        result = score_passivated_runs(paths.checkpoint_dir(name), data)
        if result is None:
            print(f"sei_{kind}: no property regressor")
            continue
        r2 = {k: round(v["r2"], 3) for k, v in result.get("properties", {}).items() if v.get("r2") is not None}
        print(f"sei_{kind}: {result['n']} passivated of {result['n'] + result['n_truncated']} test runs, R² {r2}")
    return 0


def sensitivity_over_ions(session, seeds: int, **sample_kw) -> dict:
    """Equal-step sensitivity at every ion's median request, averaged over ions (one ranking for the app).

    Each property moves by one within-ion standard deviation (:func:`battgen.eval.sensitivity.within_ion_steps`);
    the six property values sum to 1, the ion swap is on the same scale outside that sum.
    """
    import numpy as np

    from battgen.data.properties import WORKING_IONS
    from battgen.eval.sensitivity import PUBLISHED_RANK, condition_sensitivity, within_ion_steps

    per_ion = {}
    for ion in WORKING_IONS:
        request = session.request(ion)
        per_ion[ion] = condition_sensitivity(session.pipeline, request.properties, ion, scaled=False,
                                             steps=within_ion_steps(session.table, ion), seeds=range(seeds),
                                             **sample_kw)
    names = list(per_ion[WORKING_IONS[0]]["condition"])
    labels = list(per_ion[WORKING_IONS[0]]["label"])
    stacked = np.stack([np.stack(df["per_seed"].to_numpy()) for df in per_ion.values()])  # (ions, conds, seeds)
    flat = stacked.transpose(1, 0, 2).reshape(len(names), -1)
    mean = flat.mean(axis=1)
    relative = np.stack([df["relative_to_noise"].to_numpy(np.float64) for df in per_ion.values()])
    order = np.argsort(-mean[:-1])  # the ranking of the six properties; the ion swap stands apart
    return {
        "conditions": names, "labels": labels,
        "mean": mean.tolist(), "std": flat.std(axis=1, ddof=1).tolist(),
        "relative_to_noise": np.nanmean(relative, axis=0).tolist(),
        "ranking": [names[i] for i in order],
        "published_ranking": sorted((n for n in names if n in PUBLISHED_RANK), key=PUBLISHED_RANK.get),
        "per_ion_mean": {ion: df["mean"].tolist() for ion, df in per_ion.items()},
        "definition": "descriptor L2 change for +- one within-ion standard deviation of each property (equal-sized "
                      "steps) and for substituting the ion; the six properties normalised to sum 1, the ion swap on "
                      "the same scale outside the sum; relative_to_noise: change over the seed-to-seed change of the "
                      "same request; mean and std over the ten ions' median requests x seeds",
        "settings": {"seeds": seeds, **sample_kw},
    }


def _run_screening(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from battgen.eval.screening_metrics import evaluate_screening

    session, afm = _load_for_evaluation(args)
    with tqdm(desc="generating", unit="sample") as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        metrics = evaluate_screening(session.pipeline, session.table, session.scaler,
                                     latent_index=session.latent_index, afm_descriptors=afm, split=args.split,
                                     samples_per_material=args.samples, scheduler=args.sampler,
                                     num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                                     max_materials=args.max_materials, progress=progress)
    if args.conditional_samples > 0:
        from battgen.eval.screening_conditional import conditional_evaluation

        metrics["conditional"] = conditional_evaluation(
            session.pipeline, session.table, session.scaler, latent_index=session.latent_index,
            max_materials=args.max_materials, seed=args.seed, samples=args.conditional_samples,
            sampler=args.sampler, num_inference_steps=args.steps, guidance_scale=args.guidance)
    if args.denoising_materials > 0:
        metrics["denoising"] = _denoising(session, args.root, args.denoising_materials, args.seed)
    if args.sensitivity_seeds > 0:
        metrics["sensitivity"] = sensitivity_over_ions(
            session, args.sensitivity_seeds, scheduler=args.sampler if args.sampler != "ddpm" else "ddim",
            num_inference_steps=args.steps, guidance_scale=args.guidance)
    _store_evaluation(args, "evaluation", metrics)
    return 0


def _denoising(session, root, materials: int, seed: int) -> dict:
    from battgen.eval.screening_denoising import denoising_report
    from battgen.screening.session import TABLE_DIR, TRANSLATOR_DIR

    return denoising_report(session.pipeline, Path(root) / TRANSLATOR_DIR / "latents.npz", Path(root) / TABLE_DIR,
                            session.targets, max_materials=materials, seed=seed)


def _run_denoising(args: argparse.Namespace) -> int:
    from battgen.artifacts import read_metrics
    from battgen.screening.session import SCREENING_DIR, ScreeningSession

    if args.materials < 2:
        raise ValueError("--materials must be at least 2")
    report = _denoising(ScreeningSession.load(args.root), args.root, args.materials, args.seed)
    evaluation = dict((read_metrics(Path(args.root) / SCREENING_DIR) or {}).get("evaluation") or {})
    evaluation["denoising"] = report
    _store_evaluation(args, "evaluation", evaluation)
    return 0


def _load_for_evaluation(args: argparse.Namespace):
    from battgen.screening.session import ScreeningSession

    session = ScreeningSession.load(args.root)
    afm = None
    if args.afm_data:
        from battgen.afm.loader import load_afm_dataset
        from battgen.eval.screening_metrics import afm_descriptors_by_material

        afm = afm_descriptors_by_material(load_afm_dataset(args.afm_data), split=args.split)
    return session, afm


def _store_evaluation(args: argparse.Namespace, key: str, value: dict) -> None:
    from battgen.artifacts import read_metrics, write_metrics
    from battgen.screening.session import SCREENING_DIR

    print(json.dumps(value, indent=2, default=str))
    if args.no_write:
        return
    directory = Path(args.root) / SCREENING_DIR
    stored = read_metrics(directory) or {}
    stored[key] = value
    write_metrics(directory, stored)
    print(f"wrote {key!r} into {directory / 'metrics.json'}")


def _run_guidance_sweep(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from battgen.eval.screening_metrics import guidance_sweep

    session, afm = _load_for_evaluation(args)
    with tqdm(total=len(args.scales), desc="guidance scales", unit="scale") as bar:
        sweep = guidance_sweep(session.pipeline, session.table, session.scaler, args.scales,
                               latent_index=session.latent_index, afm_descriptors=afm, split=args.split,
                               samples_per_material=args.samples, scheduler=args.sampler,
                               num_inference_steps=args.steps, seed=args.seed, max_materials=args.max_materials,
                               progress=lambda done, total: bar.update(done - bar.n))
    _store_evaluation(args, "guidance_sweep", sweep)
    return 0


def _run_ablation(args: argparse.Namespace) -> int:
    from battgen.afm.translate import LatentIndex
    from battgen.data.table import load_scaler, load_table
    from battgen.eval.screening_ablation import VARIANTS, run_variant
    from battgen.screening.session import TABLE_DIR, TRANSLATOR_DIR

    root = Path(args.root)
    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    table, scaler = load_table(root / TABLE_DIR), load_scaler(root / TABLE_DIR)
    latents = root / TRANSLATOR_DIR / "latents.npz"
    index = LatentIndex.load(latents, list(table["id"]))
    rows = []
    for name in names:
        rows.append(run_variant(name, latents, root / TABLE_DIR, Path(args.work_dir), translator=root / TRANSLATOR_DIR,
                                atom_regressor=root / "checkpoints" / "atom_regressor", session_table=table,
                                scaler=scaler, latent_index=index, material_epochs=args.material_epochs,
                                max_materials=args.max_materials, seed=args.seed))
    _store_evaluation(args, "ablation", {"rows": rows, "definition": ABLATION_DEFINITION})
    return 0


ABLATION_DEFINITION = ("one short training per variant (same U-Net, steps, seed, one torch thread), scored on the "
                       "same train/test materials: generated-composition R2, the shuffled-condition control, the "
                       "condition/noise effect ratio (latent L2; composition distance) and the true material's "
                       "median latent rank; train_minutes is wall time on a shared machine")
