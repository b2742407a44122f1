"""Robustness of the shipped translator and atom regressor to what a microscope does to a stack.

For held-out simulated views (the test split: materials neither model trained on), each
distortion of :mod:`battgen.afm.distortions` is applied to every stack and the table compares
with the clean stacks: descriptor SSIM against the simulated ground truth, composition R² of the
atom regressor, and how often the out-of-distribution score (:mod:`battgen.afm.ood`) warns.
``--before`` keeps the numbers of the models a new table replaces (issue 16, item 3: before and
after the robust encoder and the distorted-view regressor), measured on the same views.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from battgen.afm.distortions import STANDARD_DISTORTIONS, Distortion
from battgen.afm.noise import NoiseCheck
from battgen.afm.ood import CAUTION_PERCENTILE, LatentDensity

ROBUSTNESS_FILENAME = "robustness.json"
# Issue 16's bar for the shipped model under realistic distortions.
MAX_SSIM_DROP = 0.05
MAX_R2_DROP = 0.1


def _evaluate(translator, regressor, density: LatentDensity, stacks: np.ndarray, truth: np.ndarray,
              composition: np.ndarray | None, ions: np.ndarray, batch_size: int) -> tuple[dict, np.ndarray]:
    from battgen.afm.orientations import readings_over_orientations
    from battgen.eval.afm_metrics import atom_regressor_metrics, ssim

    descriptors, mu = translator.translate(stacks, batch_size=batch_size)
    distance = density.distance(mu)
    row = {"ssim_mean": float(ssim(truth, descriptors).mean()),
           "noise_flag_rate": float(np.mean([NoiseCheck.of(stack).too_noisy for stack in stacks])),
           "ood_detection_rate": float((distance > density.threshold).mean()),
           "ood_caution_rate": float((distance > density.caution).mean()),
           "ood_median_percentile": float(np.median(density.percentile(distance)))}
    if regressor is not None and composition is not None:
        readings = readings_over_orientations(translator, regressor, stacks, mu, batch_size)
        row["composition_r2"] = atom_regressor_metrics(composition, readings.mean(0), ions)["overall"]["r2"]
        row["composition_r2_as_given"] = atom_regressor_metrics(composition, readings[0], ions)["overall"]["r2"]
    return row, mu


def compare_with_stored_latents(mu: np.ndarray, material_id: np.ndarray, rotation: np.ndarray,
                                latents_path: str | Path) -> dict:
    """How closely the clean held-out stacks reproduce the latents the trainer stored for the same views.

    A held-out set simulated again (``afm build-dataset --split test``) is only the shipped
    model's test split if its stacks encode to the stored posterior means (float16 there).
    """
    from battgen.afm.translate import LatentIndex

    stored = LatentIndex.load(latents_path)
    where = {(m, int(r)): i for i, (m, r) in enumerate(zip(stored.material_id, stored.rotation))}
    pairs = [(i, where[(str(m), int(r))]) for i, (m, r) in enumerate(zip(material_id, rotation))
             if (str(m), int(r)) in where]
    if not pairs:
        return {"views_matched": 0}
    ours, theirs = zip(*pairs)
    diff = np.abs(np.asarray(mu, np.float32).reshape(len(mu), -1)[list(ours)] - stored.mu[list(theirs)])
    return {"views_matched": len(pairs), "of": int(len(mu)), "splits": sorted(set(stored.split[list(theirs)])),
            "max_abs_latent_difference": float(diff.max()), "rms_latent_difference": float(np.sqrt((diff**2).mean())),
            "stored_latent_rms": float(np.sqrt((stored.mu[list(theirs)] ** 2).mean()))}


def matching_views(variant, data, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``variant``, rows of ``data``) holding the same view: material id and rotation.

    A campaign simulated with another instrument picks its views from the cluster's geometry
    alone, so its views are the clean campaign's; its vdW spheres and disks, which no probe
    changes, must then agree to rounding, and a mismatch is refused rather than scored.
    """
    if variant.material_id is None or data.material_id is None:
        raise ValueError("matching views needs material ids in both datasets (campaigns since session 6 have them)")
    where = {(str(m), int(r)): int(i) for i, m, r in zip(rows, data.material_id[rows], data.rotation[rows])}
    pairs = [(i, where[(str(m), int(r))]) for i, (m, r) in enumerate(zip(variant.material_id, variant.rotation))
             if (str(m), int(r)) in where]
    if not pairs:
        raise ValueError(f"{variant.path} shares no view with {data.path}")
    ours, theirs = (np.asarray(x, np.int64) for x in zip(*pairs))
    names = list(data.descriptor_names)
    unmoved = [names.index("vdw"), names.index("disks")]
    mismatch = np.abs(np.asarray(variant.descriptors[ours][..., unmoved], np.float32)
                      - np.asarray(data.descriptors[theirs][..., unmoved], np.float32)).max()
    if mismatch > 0.01:
        raise ValueError(f"{variant.path} images other atoms than {data.path} for the same view ids "
                         f"(vdW spheres differ by {mismatch:.3f}); it was not built from the same table")
    return ours, theirs


def simulated_instrument_row(name: str, variant, data, rows: np.ndarray, evaluate) -> dict:
    """One robustness row for a campaign simulated with another instrument (probe particle, tip
    height, oscillation amplitude): its stacks against the clean campaign's descriptors and
    composition for the same views, and its drops against the clean stacks of those views only.

    ``evaluate(stacks, truth, view_rows)`` scores stacks as the table's other rows are scored.
    """
    ours, theirs = matching_views(variant, data, rows)
    truth = np.asarray(data.descriptors[theirs], np.float32)
    clean = evaluate(np.asarray(data.stacks[theirs], np.float32), truth, theirs)
    row = {"condition": f"{name} (simulated)", "kind": "simulated", "value": None, "unit": "",
           "views": int(len(ours)), "materials": int(len(set(np.asarray(variant.material_id[ours]).tolist()))),
           "data": str(variant.path),
           **evaluate(np.asarray(variant.stacks[ours], np.float32), truth, theirs)}
    row["clean_ssim_same_views"] = clean["ssim_mean"]
    row["ssim_drop"] = clean["ssim_mean"] - row["ssim_mean"]
    if "composition_r2" in row:
        row["clean_composition_r2_same_views"] = clean["composition_r2"]
        row["composition_r2_drop"] = clean["composition_r2"] - row["composition_r2"]
    return row


def robustness_table(translator, regressor, density: LatentDensity, data, *,
                     distortions: Sequence[Distortion] = STANDARD_DISTORTIONS, split: str = "test",
                     max_views: int | None = None, seed: int = 0, batch_size: int = 32,
                     stored_latents: str | Path | None = None,
                     simulated: Sequence[tuple[str, object]] = (),
                     progress: Callable[[str], None] | None = None) -> dict:
    """Clean vs each distortion on ``data``'s ``split`` views (an :class:`~battgen.afm.loader.AFMDataset`).

    Every distortion draws from its own generator seeded by (``seed``, its position), so one row
    can be recomputed alone. ``regressor`` may be None (no composition column). With
    ``stored_latents`` (the translator's ``latents.npz``), the result says how closely the clean
    stacks reproduce the latents stored for the same views (:func:`compare_with_stored_latents`).
    ``simulated`` adds a row per (name, dataset) of the same views imaged with another instrument
    (:func:`simulated_instrument_row`).
    """
    rows = np.flatnonzero(data.split == split)
    if max_views is not None:
        rows = rows[:max_views]
    if not len(rows):
        raise ValueError(f"the dataset at {data.path} has no '{split}' views")
    stacks = np.asarray(data.stacks[rows], np.float32)
    truth = np.asarray(data.descriptors[rows], np.float32)
    composition = None if data.composition is None else np.asarray(data.composition[rows], np.float32)
    ions = np.asarray(data.working_ion[rows]).astype(str)
    def evaluate_views(s: np.ndarray, t: np.ndarray, view_rows: np.ndarray) -> dict:
        comp = None if data.composition is None else np.asarray(data.composition[view_rows], np.float32)
        return _evaluate(translator, regressor, density, s, t, comp,
                         np.asarray(data.working_ion[view_rows]).astype(str), batch_size)[0]

    started = time.perf_counter()
    clean_row, clean_mu = _evaluate(translator, regressor, density, stacks, truth, composition, ions, batch_size)
    clean = {"condition": "clean", "kind": "clean", "value": None, "unit": "", **clean_row}
    table = [clean]
    for i, distortion in enumerate(distortions):
        if progress is not None:
            progress(distortion.name)
        rng = np.random.default_rng([seed, i])
        pairs = [distortion.apply_with_truth(s, t, rng) for s, t in zip(stacks, truth)]
        table.append({"condition": distortion.name, "kind": distortion.kind, "value": distortion.value,
                      "unit": distortion.unit,
                      **evaluate_views(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), rows)})
    for row in table:
        row["ssim_drop"] = clean["ssim_mean"] - row["ssim_mean"]
        if "composition_r2" in row:
            row["composition_r2_drop"] = clean["composition_r2"] - row["composition_r2"]
    for name, variant in simulated:
        if progress is not None:
            progress(f"{name} (simulated)")
        table.append(simulated_instrument_row(name, variant, data, rows, evaluate_views))
    materials = None if data.material_id is None else int(len(set(np.asarray(data.material_id[rows]).tolist())))
    check = None
    if stored_latents is not None and data.material_id is not None:
        check = compare_with_stored_latents(clean_mu, data.material_id[rows], data.rotation[rows], stored_latents)
    return {
        "rows": table,
        "views": int(len(rows)),
        "materials": materials,
        "split": split,
        "seed": seed,
        "ood_threshold": density.threshold,
        "ood_threshold_percentile": density.threshold_percentile,
        "ood_caution": density.caution,
        "ood_caution_percentile": CAUTION_PERCENTILE,
        "bar": {"max_ssim_drop": MAX_SSIM_DROP, "max_composition_r2_drop": MAX_R2_DROP},
        "definition": ("per condition: SSIM = mean over views and the 6 descriptor channels against the simulated "
                       "ground truth (moved with the sample for offset and rotation, by half the drift for drift); "
                       "composition_r2 = atom regressor R² over all (views x 112) counts, each view's counts the mean "
                       "over its eight quarter turns and mirrors as the page reads them (battgen/afm/orientations.py), "
                       "composition_r2_as_given the same from the stack as given alone; "
                       "ood_detection_rate = fraction of views whose out-of-distribution distance exceeds the "
                       "calibrated threshold (the page warns); ood_caution_rate = fraction above the caution "
                       "level (the page calls such an input unusual, or warns above the threshold); "
                       "noise_flag_rate = fraction whose estimated pixel SNR (battgen/afm/noise.py) is below the "
                       "least the models were trained on (the page warns); drops are "
                       "clean minus distorted. Distorted stacks are renormalised by per-stack min-max as an "
                       "upload is. Rows '(simulated)' are the same views simulated by ppafm with another "
                       "instrument, scored against the training instrument's descriptors; their drops are "
                       "against the clean stacks of those views only."),
        "seconds": time.perf_counter() - started,
        **({} if check is None else {"reproduces_stored_latents": check}),
    }



def model_record(directory: str | Path) -> dict:
    """Which checkpoint was scored: its folder, the SHA-256 of its weights and config, when and how it was made."""
    from battgen.artifacts import hash_inputs, read_metadata
    from battgen.paths import for_display

    directory = Path(directory)
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and (p.name == "config.json" or p.suffix in (".safetensors", ".bin")))
    digest, _ = hash_inputs(files)
    made = read_metadata(directory) or {}
    return {"path": for_display(directory), "sha256": digest, "created_utc": made.get("created_utc"),
            "command": made.get("command")}


def _same_views(result: dict, previous: dict) -> bool:
    """Whether two robustness tables scored the same held-out views with the same distortion draws.

    The same dataset file, or two builds of the same split whose stacks both reproduce the stored
    latents view for view (a held-out campaign rebuilt with ``build-dataset --split test``).
    """
    keys = ("split", "seed", "views", "materials")
    if any(result.get(k) != previous.get(k) for k in keys):
        return False
    if previous.get("data", {}).get("sha256") == result.get("data", {}).get("sha256"):
        return True
    return all(table.get("reproduces_stored_latents", {}).get("views_matched") == table.get("views")
               for table in (result, previous))


def carry_over_before(result: dict, previous: dict | None) -> dict:
    """``result`` with a ``before`` entry: SSIM and composition R² per condition of the models that
    ``previous`` (the robustness.json being replaced) scored, when those were other models (a new
    translator encoder or a new regressor) on the same views; a rerun on the same models keeps the
    ``before`` it already had.
    """
    if not previous or not _same_views(result, previous):
        return result
    same = all(previous.get(k, {}).get("sha256") == result.get(k, {}).get("sha256")
               for k in ("translator", "regressor"))
    if same:
        return {**result, **({"before": previous["before"]} if "before" in previous else {})}
    fields = ("ssim_mean", "ssim_drop", "composition_r2", "composition_r2_drop")
    rows = [{"condition": r["condition"], **{k: r[k] for k in fields if k in r}} for r in previous.get("rows", [])]
    if not rows:
        return result
    unrecorded = {"command": previous.get("command"), "sha256": None, "note": "not recorded"}
    return {**result, "before": {"translator": previous.get("translator", unrecorded),
                                 "regressor": previous.get("regressor", unrecorded), "rows": rows}}
