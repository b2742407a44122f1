"""Screening samplers: wall time per batch of 4 candidates and quality, DDPM-1000 as the baseline.

Prints one table, one row per sampler setting, all measured in one run on the shipped
checkpoint (``checkpoints/screening``), models loaded before timing starts:

* ``s / 4 cand.``: median wall time of one ``pipeline(...)`` call for 4 candidates (generation
  and decoding, the number the Screening page waits for), and its speed-up over DDPM-1000;
* ``request s``: the same plus ranking the table's materials (``session.screen``), i.e. what a
  slider move costs end to end;
* quality on the first ``--materials`` test materials (4 samples each, the same metrics as
  ``python -m battgen eval screening``): composition MAE and R² of the generated samples, top-5
  retrieval of the true material by the default ranking, and descriptor SSIM (best of 4) when
  ``--afm-data`` is given.

Goal (issue 5): >= 40x faster than DDPM-1000 at equal quality, <= 1 s for 4 candidates.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_screening.py [--afm-data DIR] [--materials 40]
"""

from __future__ import annotations

import argparse

import torch

from battgen.eval.screening_metrics import afm_descriptors_by_material, evaluate_screening
from battgen.screening.defaults import DEFAULT_GUIDANCE
from battgen.screening.session import ScreeningSession
from benchmarks.timing import median_time

SETTINGS = (("ddpm", 1000), ("ddim", 50), ("dpm++", 20), ("dpm++", 10), ("ddim", 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".")
    parser.add_argument("--afm-data", default=None)
    parser.add_argument("--materials", type=int, default=40, help="test materials for the quality columns")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per fast sampler (DDPM: 1)")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    session = ScreeningSession.load(args.root)
    pipe = session.pipeline
    afm = None
    if args.afm_data:
        from battgen.afm.loader import load_afm_dataset

        afm = afm_descriptors_by_material(load_afm_dataset(args.afm_data), split="test")
    request = session.request("Li")
    rows = []
    for scheduler, steps in SETTINGS:
        repeats = 1 if steps >= 1000 else args.repeats

        def generate():
            pipe(request.properties, request.working_ion, num_candidates=4, num_inference_steps=steps,
                 guidance_scale=args.guidance, generator=torch.Generator().manual_seed(0), scheduler=scheduler,
                 property_scaler=session.scaler)

        def full_request():
            session.screen(request, num_candidates=4, num_inference_steps=steps, guidance_scale=args.guidance,
                           scheduler=scheduler, seed=0)

        slow = steps >= 1000  # DDPM-1000: one timed call, no warm-up, no end-to-end repeat
        wall = median_time(generate, repeats, warmup=not slow)
        end_to_end = float("nan") if slow else median_time(full_request, repeats)
        metrics = evaluate_screening(pipe, session.table, session.scaler, latent_index=session.latent_index,
                                     afm_descriptors=afm, samples_per_material=4, scheduler=scheduler,
                                     num_inference_steps=steps, guidance_scale=args.guidance,
                                     max_materials=args.materials, control=False)
        rows.append({
            "sampler": f"{scheduler}-{steps}", "wall": wall, "request": end_to_end,
            "mae": metrics["composition"]["overall"]["mae"], "r2": metrics["composition"]["overall"]["r2"],
            "top5": metrics["retrieval"]["generation_rank_by_score"]["top5"],
            "ssim": metrics.get("descriptors", {}).get("ssim_best_of_k"),
        })
        print(f"  done {rows[-1]['sampler']}", flush=True)

    base = rows[0]["wall"]
    print(f"\nScreening samplers, 4 candidates, guidance {args.guidance}, {torch.get_num_threads()} torch threads; "
          f"quality on {args.materials} test materials x 4 samples")
    header = f"{'sampler':<12} {'s / 4 cand.':>11} {'speed-up':>9} {'request s':>10} {'comp. MAE':>10} " \
             f"{'comp. R2':>9} {'top-5':>6} {'SSIM best-4':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ssim_text = "n/a" if r["ssim"] is None else f"{r['ssim']:.3f}"
        print(f"{r['sampler']:<12} {r['wall']:>11.3f} {base / r['wall']:>8.1f}x {r['request']:>10.3f} "
              f"{r['mae']:>10.4f} {r['r2']:>9.3f} {r['top5']:>6.2f} {ssim_text:>12}")


if __name__ == "__main__":
    main()
