"""Screening: target properties + working ion → generated descriptors → ranked real candidate materials."""

from __future__ import annotations

import json
import math
import secrets
import warnings
from pathlib import Path

import pandas as pd
import streamlit as st

from battgen import paths
from battgen.artifacts import read_metrics
from battgen.data.properties import PROPERTIES, PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.table import row_structure
from battgen.screening.candidates import ScreeningResult
from battgen.screening.defaults import (DEFAULT_CANDIDATES, DEFAULT_GUIDANCE, DEFAULT_RANKING, DEFAULT_SAMPLER,
                                        DEFAULT_SEED, DEFAULT_STEPS, RANKINGS, SAMPLERS)
from battgen.screening.request import ScreeningRequest, ion_medians
from battgen.screening.session import SCREENING_DIR, ScreeningSession, missing_screening_model
from battgen.ui.structure_panel import show_structure
from battgen.ui.tables import TABLE_SOURCES, chosen_table
from battgen.viz import afm as afm_viz
from battgen.viz import electrodes as electrode_viz
from battgen.viz import screening as viz

MAX_CANDIDATES = 16
MAX_GUIDANCE = 20.0
SEED_LIMIT = 2**31 - 1
SAMPLE_COLUMNS = 2  # generated samples side by side
DESIGN_PAGE = "pages/electrode_design.py"
COMPARED_CANDIDATES = 5  # candidates drawn against the request
# A poorly trained model predicts a little of every element; its formula guess then fills a column.
FORMULA_CHARACTERS = 40
# Enough repetitions for an error bar, few enough to finish within a minute on CPU at 20 steps.
SENSITIVITY_SEEDS = (0, 1, 2)
SENSITIVITY_CANDIDATES = 2
SAMPLER_HELP = ("DPM-Solver++ and DDIM are deterministic given the seed and need 20–50 steps; DDPM adds fresh "
                "noise every step and needs hundreds (up to the 1000 training timesteps).")
RANKING_LABELS = {"property_match": "property match", "score": "mean of both",
                  "composition_similarity": "generated composition"}
RANKING_HELP = ("Property match ranks the real electrodes by how close their computed properties are to the request; "
                "on held-out materials it finds a better top candidate than any ranking that uses the generated "
                "composition (Model quality tab, leave-one-out), so it is the default.")
SCORE_COLUMNS = {
    "score": st.column_config.NumberColumn("score", format="%.3f",
                                           help="mean of property match and composition similarity"),
    "property_match": st.column_config.NumberColumn(
        "property match", format="%.3f", help="1 − RMS difference of the real properties to the request, in "
                                              "fractions of the data range"),
    "composition_similarity": st.column_config.NumberColumn(
        "composition similarity", format="%.3f", help="1 − fraction of atoms differing from the closest "
                                                      "generated composition"),
    "delta_voltage": st.column_config.NumberColumn("ΔV (V)", format="%+.2f",
                                                   help="candidate's average voltage minus the requested one"),
    "delta_capacity_grav": st.column_config.NumberColumn(
        "Δ capacity (mAh/g)", format="%+.0f", help="candidate's gravimetric capacity minus the requested one"),
    "latent_distance": st.column_config.NumberColumn("latent distance", format="%.3f"),
    "found_by_samples": st.column_config.NumberColumn("found by samples"),
    "closest_sample": st.column_config.NumberColumn("closest sample", help="numbered from 0"),
}
COLUMN_CONFIG = {
    "rank": st.column_config.NumberColumn("rank"),
    "formula_discharge": st.column_config.TextColumn("discharged"),
    "working_ion": st.column_config.TextColumn("ion"),
    "structure_type": st.column_config.TextColumn("structure type"),
    **{p.name: st.column_config.NumberColumn(p.axis_title, format=f"%.{electrode_viz.PROPERTY_DECIMALS[p.name]}f")
       for p in PROPERTIES},
    **SCORE_COLUMNS,
}


def checkpoint_version(root: Path) -> int:
    """Modification time of the pipeline index: part of the cache key, so a retrained model is reloaded."""
    try:
        return (root / SCREENING_DIR / "model_index.json").stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner="Loading the screening model and the electrode table…", max_entries=2)
def load_session(root: str, version: int) -> ScreeningSession:
    return ScreeningSession.load(root)


@st.cache_data(show_spinner=False, max_entries=2)
def generator_quality_warning(root: str, version: int) -> str | None:
    """Read once per checkpoint, not on every rerun that shows samples."""
    from battgen.eval.screening_report import below_baseline_warning

    return below_baseline_warning(read_metrics(Path(root) / SCREENING_DIR) or {})


def slider_bounds(scaler: PropertyScaler, name: str) -> tuple[float, float, float, str, int]:
    """(low, high, step, format, decimals) of a property slider.

    The step is the browser page's (about a hundredth of the range); the bounds are rounded
    inwards to it, so no slider position asks for a value the data never had.
    """
    index = scaler.names.index(name)
    rounded = electrode_viz.slider_range([scaler.low[index], scaler.high[index]])
    decimals = max(0, -math.floor(math.log10(rounded.step)))
    low = round(math.ceil(scaler.low[index] / rounded.step - 1e-9) * rounded.step, decimals)
    high = round(math.floor(scaler.high[index] / rounded.step + 1e-9) * rounded.step, decimals)
    return low, max(high, low), rounded.step, rounded.format, decimals


def set_sliders_to_medians(table: pd.DataFrame, scaler: PropertyScaler, ion: str) -> None:
    medians = ion_medians(table, ion)
    for name in PROPERTY_NAMES:
        low, high, _, _, decimals = slider_bounds(scaler, name)
        st.session_state[f"screen_{name}"] = min(max(round(medians[name], decimals), low), high)


def draw_new_seed() -> None:
    st.session_state["screen_seed"] = secrets.randbelow(SEED_LIMIT)


def current_request(session: ScreeningSession) -> ScreeningRequest:
    """The request the controls hold (slider values as last submitted with the form)."""
    return session.request(st.session_state["screen_ion"],
                           {name: st.session_state[f"screen_{name}"] for name in PROPERTY_NAMES})


def shorten(text: str, limit: int = FORMULA_CHARACTERS) -> str:
    if not text:
        return "—"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe_request(request: ScreeningRequest) -> str:
    values = ", ".join(f"{p.label.lower()} {electrode_viz.format_property(p.name, request.properties[p.name])} "
                       f"{p.unit}" for p in PROPERTIES)
    return f"{request.working_ion}: {values}"


def progress_reporter(bar, what: str):
    def report(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{what} {done} of {total}")
    return report


def show_request_controls(session: ScreeningSession) -> bool:
    """Ion, six property sliders and sampler settings; True when a generation was asked for."""
    counts = session.table["working_ion"].value_counts()
    st.session_state.setdefault("screen_ion", WORKING_IONS[0])
    if any(f"screen_{name}" not in st.session_state for name in PROPERTY_NAMES):
        set_sliders_to_medians(session.table, session.scaler, st.session_state["screen_ion"])
    for key, default in (("screen_candidates", DEFAULT_CANDIDATES), ("screen_sampler", DEFAULT_SAMPLER),
                         ("screen_steps", DEFAULT_STEPS), ("screen_guidance", DEFAULT_GUIDANCE), ("screen_seed", DEFAULT_SEED),
                         ("screen_rank_by", DEFAULT_RANKING)):
        st.session_state.setdefault(key, default)

    # Outside the form: picking an ion must move the sliders to its medians straight away.
    ion_column, note_column = st.columns([1, 3], vertical_alignment="bottom")
    ion = ion_column.selectbox(
        "Working ion", WORKING_IONS, key="screen_ion", format_func=lambda i: f"{i} ({counts.get(i, 0)} electrodes)",
        on_change=lambda: set_sliders_to_medians(session.table, session.scaler, st.session_state["screen_ion"]))
    note_column.caption(f"The sliders start at the median {ion} electrode of the table and span the range of all "
                        "electrodes (the range the model was trained on). Candidates are real materials of the "
                        "chosen ion.")

    # A form, so dragging a slider does not start a generation; the model itself is cached.
    with st.form("screen_request"):
        columns = st.columns(3)
        for i, prop in enumerate(PROPERTIES):
            low, high, step, fmt, _ = slider_bounds(session.scaler, prop.name)
            columns[i % 3].slider(prop.axis_title, low, high, step=step, format=fmt, key=f"screen_{prop.name}",
                                  help=f"Data range {electrode_viz.format_property(prop.name, low)}–"
                                       f"{electrode_viz.format_property(prop.name, high)} {prop.unit}.")
        settings = st.columns(6)
        settings[0].slider("Candidates to generate", 1, MAX_CANDIDATES, key="screen_candidates")
        settings[1].selectbox("Sampler", SAMPLERS, key="screen_sampler", help=SAMPLER_HELP)
        max_steps = int(session.pipeline.scheduler.config.num_train_timesteps)
        settings[2].number_input("Denoising steps", 1, max_steps, step=1, key="screen_steps",
                                 help=f"At most {max_steps}, the training timesteps. {SAMPLER_HELP}")
        settings[3].number_input("Guidance scale", 0.0, MAX_GUIDANCE, step=0.5, key="screen_guidance",
                                 help="Classifier-free guidance: 1 = conditional model alone, larger values "
                                      "follow the request more closely at the cost of variety.")
        settings[4].number_input("Seed", 0, SEED_LIMIT, step=1, key="screen_seed",
                                 help="Fixes the initial noise: the same seed and settings give the same samples.")
        settings[5].selectbox("Rank candidates by", RANKINGS, key="screen_rank_by", format_func=RANKING_LABELS.get,
                              help=RANKING_HELP)
        generate_column, reseed_column, _ = st.columns([1, 1, 4])
        generate = generate_column.form_submit_button("Generate", type="primary", icon=":material/play_arrow:",
                                                      key="screen_generate")
        reseed = reseed_column.form_submit_button("New seed", icon=":material/casino:", on_click=draw_new_seed,
                                                  key="screen_new_seed", help="Draw a new seed and generate.")
    return generate or reseed


def generate(session: ScreeningSession) -> None:
    request = current_request(session)
    bar = st.progress(0.0, text="starting")
    try:
        result = session.screen(
            request, num_candidates=int(st.session_state["screen_candidates"]),
            num_inference_steps=int(st.session_state["screen_steps"]),
            guidance_scale=float(st.session_state["screen_guidance"]), seed=int(st.session_state["screen_seed"]),
            scheduler=st.session_state["screen_sampler"], rank_by=st.session_state["screen_rank_by"],
            progress_callback=progress_reporter(bar, "denoising step"))
    except ValueError as exc:
        st.error(str(exc))
    else:
        st.session_state["screen_result"] = result
    bar.empty()


def show_match_summary(result: ScreeningResult) -> None:
    candidates = result.candidates
    top = candidates.iloc[0]
    best = candidates.loc[candidates["property_match"].idxmax()]
    columns = st.columns(4)
    columns[0].metric("Top candidate", f"{top['formula_discharge']}", help=f"{top['id']}, ranked by "
                      f"{result.settings['rank_by'].replace('_', ' ')}")
    columns[1].metric("Its voltage", f"{top['average_voltage']:.2f} V", delta=f"{top['delta_voltage']:+.2f} V vs request",
                      delta_color="off")
    columns[2].metric("Best property match", f"{best['property_match']:.2f}",
                      help="Among all candidates; 1 = exactly the requested properties.")
    columns[3].metric("Generation time", f"{result.wall_time_s:.2f} s",
                      help=f"Denoising and decoding (model already loaded); ranking took "
                           f"{result.ranking_time_s:.2f} s.")
    off = 1.0 - float(best["property_match"])
    off_text = f"RMS {100 * off:.0f} % of the data range off" if off < 1 else "RMS 100 % or more of the data range off"
    st.markdown(f"Best property match: **{best['property_match']:.2f}** ({off_text}) — "
                f"{best['formula_discharge']} (`{best['id']}`), rank {best['rank']}. "
                f"All {len(candidates)} {result.request.working_ion} electrodes of the table are candidates; "
                f"{int((candidates['found_by_samples'] > 0).sum())} of them are among the nearest materials of the "
                f"{len(result.samples)} generated samples.")


def show_candidates(session: ScreeningSession, result: ScreeningResult) -> None:
    st.markdown("**Ranked candidates against the request** (first row: what was asked for)")
    shown = viz.request_and_candidates(result.request.properties, result.request.working_ion,
                                       result.candidate_table())
    st.dataframe(viz.highlight_request_row(shown), hide_index=True, column_config=COLUMN_CONFIG,
                 key="screen_candidates_table")
    st.plotly_chart(viz.property_comparison_figure(result.request.properties, result.candidates, session.scaler,
                                                   top=COMPARED_CANDIDATES), key="screen_comparison")
    st.caption("Each property as a fraction of the table's range (0 = lowest, 1 = highest electrode), the request "
               f"as black diamonds, the top {COMPARED_CANDIDATES} candidates as dots; hover for physical values.")


def show_samples(session: ScreeningSession, result: ScreeningResult) -> None:
    st.markdown("**Generated samples** (descriptors the model drew for the request, and the composition the "
                "atom regressor reads from them)")
    st.caption(f"Type map: {afm_viz.TYPE_MAP_LEGEND}."
               + (" The model generates a material's mean latent over its simulated views (the view's rotation "
                  "is not something the properties can say), so each descriptor is an average of rotated views: "
                  "smoother than one AFM image." if session.targets == "mean" else ""))
    root = paths.artifact_root()
    weak = generator_quality_warning(str(root), checkpoint_version(root))
    if weak:
        st.warning(weak)
    formulas = dict(zip(session.table["id"], session.table["formula_discharge"]))
    samples = result.samples.to_dict(orient="records")
    for start in range(0, len(samples), SAMPLE_COLUMNS):
        columns = st.columns(SAMPLE_COLUMNS)
        for column, sample in zip(columns, samples[start:start + SAMPLE_COLUMNS]):
            b = int(sample["sample"])
            with column.container(border=True):
                st.markdown(f"**Sample {b}** · formula guess **{shorten(sample['formula_guess'])}**",
                            help=sample["formula_guess"] or None)
                st.plotly_chart(viz.generated_descriptor_figure(result.descriptors[b]), key=f"screen_sample_{b}")
                nearest = (f"closest by composition: {formulas.get(sample['nearest_by_composition'], '?')} "
                           f"(`{sample['nearest_by_composition']}`, distance {sample['composition_distance']:.2f})")
                if "nearest_by_latent" in sample:
                    nearest += (f"; by latent: {formulas.get(sample['nearest_by_latent'], '?')} "
                                f"(`{sample['nearest_by_latent']}`, distance {sample['latent_distance']:.2f})")
                st.caption(f"Top elements (atoms): {sample['top_elements']}. {nearest}.")


def show_downloads(result: ScreeningResult) -> None:
    stem = f"screening_{result.request.working_ion}_seed{result.settings['seed']}"
    columns = st.columns(3)
    columns[0].download_button("Candidates (CSV)", result.candidates_csv(), file_name=f"{stem}_candidates.csv",
                               mime="text/csv", on_click="ignore", icon=":material/download:", key="screen_csv")
    columns[1].download_button("Generated descriptors (NPZ)", result.descriptors_npz(),
                               file_name=f"{stem}_descriptors.npz", mime="application/octet-stream",
                               on_click="ignore", icon=":material/download:", key="screen_npz")
    columns[2].download_button("Request, settings and top candidates (JSON)", result.to_json(),
                               file_name=f"{stem}.json", mime="application/json", on_click="ignore",
                               icon=":material/download:", key="screen_json")


def show_selected_structure(result: ScreeningResult) -> None:
    st.markdown("**Candidate structure** (discharged)")
    candidates = result.candidates.set_index("id", drop=False)
    chosen = st.selectbox(
        "Candidate", list(candidates.index), key="screen_candidate",
        format_func=lambda i: f"#{candidates.at[i, 'rank']} {candidates.at[i, 'formula_discharge']} · {i} · "
                              f"property match {candidates.at[i, 'property_match']:.2f}")
    row = candidates.loc[chosen]
    show_structure(row_structure(row, "discharge"), cache_key=f"screen:{chosen}",
                   file_stem=f"{row['formula_discharge']}_{chosen}", key="screen_structure")


def send_to_design(request: ScreeningRequest) -> None:
    """Hand this request to the Design page's controls (their keys), then go there."""
    st.session_state["design_ion"] = request.working_ion
    for name, value in request.properties.items():
        st.session_state[f"design_{name}"] = float(round(value, 3))
    st.session_state["screen_go_design"] = True


def show_result(session: ScreeningSession, result: ScreeningResult) -> None:
    settings = result.settings
    st.subheader("Result")
    st.caption(f"Request {describe_request(result.request)}. {settings['num_candidates']} samples, "
               f"{settings['scheduler']} with {settings['num_inference_steps']} steps, guidance "
               f"{settings['guidance_scale']:g}, seed {settings['seed']}.")
    outside = result.request.describe_outside(session.scaler)
    if outside:
        st.warning(outside)
    show_match_summary(result)
    design_column, note_column = st.columns([1, 3], vertical_alignment="center")
    design_column.button("Design new structures for this request", icon=":material/science:",
                         key="screen_to_design", on_click=send_to_design, args=(result.request,))
    note_column.caption("The table ranks materials that exist; the Design page proposes new ones for the same "
                        "request and computes their voltage and capacities with CHGNet.")
    if st.session_state.pop("screen_go_design", False):
        st.switch_page(DESIGN_PAGE)
    show_candidates(session, result)
    show_downloads(result)
    show_samples(session, result)
    show_selected_structure(result)


def show_sensitivity(session: ScreeningSession) -> None:
    request = current_request(session)
    sampler, steps = st.session_state["screen_sampler"], int(st.session_state["screen_steps"])
    guidance = float(st.session_state["screen_guidance"])
    st.markdown("How strongly each condition steers generation: every property is moved by ± one standard deviation "
                "of that property among the ion's electrodes (equal-sized steps: what separates typical materials), "
                "with the same initial noise, and the change of the generated descriptors is measured. The six "
                "property values sum to 1; swapping the ion for each other ion is a different kind of change and is "
                "shown on the same scale outside that sum. *× noise* compares each change with re-rolling the seed.")
    st.caption(f"For the request in the controls ({describe_request(request)}), {sampler} with {steps} steps, "
               f"guidance {guidance:g}; {len(SENSITIVITY_SEEDS)} seeds × {SENSITIVITY_CANDIDATES} samples each."
               + (" DDPM denoises every perturbed request on its own (the deterministic samplers batch them), so "
                  "this takes far longer than with DDIM or DPM++." if sampler == "ddpm" else ""))
    if st.button("Compute sensitivity", icon=":material/tune:", key="screen_sensitivity_button"):
        from battgen.eval.sensitivity import condition_sensitivity, within_ion_steps

        bar = st.progress(0.0, text="starting")
        try:
            # Recorded, not printed: an all-zero response (the model ignores its conditions) is
            # something the reader of the chart must see.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                frame = condition_sensitivity(
                    session.pipeline, request.properties, request.working_ion, scaled=False,
                    steps=within_ion_steps(session.table, request.working_ion),
                    seeds=SENSITIVITY_SEEDS, num_candidates=SENSITIVITY_CANDIDATES, num_inference_steps=steps,
                    guidance_scale=guidance, scheduler=sampler, progress_callback=progress_reporter(bar, "generation"))
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.session_state["screen_sensitivity"] = {
                "frame": frame, "request": describe_request(request),
                "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]}
        bar.empty()
    computed = st.session_state.get("screen_sensitivity")
    if computed is None:
        return
    frame = computed["frame"]
    for message in computed["warnings"]:
        st.warning(message)
    st.plotly_chart(viz.sensitivity_figure(frame["label"], frame["mean"], frame["std"]), key="screen_sensitivity")
    st.caption(f"Computed for {computed['request']}. Error bars: standard deviation over the seeds.")
    st.dataframe(frame[["label", "mean", "std", "relative_to_noise", "published_rank", "latent_mean", "latent_std"]],
                 hide_index=True, key="screen_sensitivity_table", column_config={
                     "label": "condition",
                     "relative_to_noise": st.column_config.NumberColumn(
                         "× noise", format="%.2f", help="output change over the change from a new seed (same request)"),
                     "published_rank": st.column_config.NumberColumn(
                         "published rank", help="Rajagopal et al. 2025: 1 = strongest (their ±5 %-of-range steps)"),
                     "mean": st.column_config.NumberColumn("descriptors", format="%.3f"),
                     "std": st.column_config.NumberColumn("± (descriptors)", format="%.3f"),
                     "latent_mean": st.column_config.NumberColumn("latents", format="%.3f"),
                     "latent_std": st.column_config.NumberColumn("± (latents)", format="%.3f")})


def show_conditional_quality(metrics: dict) -> None:
    """Does the generator follow its knobs? Its composition beside the trivial baselines, both splits."""
    from battgen.eval.screening_report import ablation_table, condition_effect_table, denoising_table, quality_table

    try:
        quality = quality_table(metrics)
    except ValueError as exc:
        st.caption(str(exc))
        return
    st.markdown("**Generated composition vs the simplest predictors** (R² of atom counts on the same materials; "
                "the train split shows whether the model can reproduce what it was trained on)")
    st.dataframe(quality, hide_index=True, key="screen_quality_baselines", column_order=(
        "label", "kind", "train_r2", "test_r2", "train_mae", "test_mae"), column_config={
        "label": "predictor", "kind": "kind",
        **{c: st.column_config.NumberColumn(c.replace("_", " ").replace("r2", "R²"), format="%.3f")
           for c in ("train_r2", "test_r2", "train_mae", "test_mae")}})
    effect = condition_effect_table(metrics)
    if not effect.empty:
        st.markdown("**Condition effect vs noise effect** (same noise with another same-ion material's properties, "
                    "vs the same properties with other noise; a model that listens has a ratio well above 0)")
        st.dataframe(effect, hide_index=True, key="screen_quality_effect")
    denoising = denoising_table(metrics)
    if not denoising.empty:
        st.markdown("**Where a sample's identity is decided** (the U-Net's estimate of the clean latent at each "
                    "noise level: with the material's own condition, another material's, and the constant mean "
                    "latent that knows nothing; at high noise the own condition must beat both)")
        st.plotly_chart(viz.denoising_figure(denoising), key="screen_quality_denoising")
    try:
        ablation = ablation_table(metrics)
    except ValueError:
        return
    st.markdown("**What each change did** (one row per change; the caption says how each was run; the last row is "
                "the shipped model)")
    st.dataframe(ablation, hide_index=True, key="screen_quality_ablation")
    note = (metrics.get("ablation") or {}).get("note")
    if note:
        st.caption(note)


def show_model_quality(root: Path) -> None:
    try:
        metrics = read_metrics(root / SCREENING_DIR)
    except ValueError as exc:
        st.warning(str(exc))
        return
    if not metrics:
        st.info("No metrics.json in `checkpoints/screening` yet; training writes one, and "
                "`python -m battgen eval screening` adds the test-split evaluation.")
        return
    headline = viz.headline_metrics(metrics)
    names = list(headline)
    for start in range(0, len(names), 4):
        for column, name in zip(st.columns(4), names[start:start + 4]):
            value = headline[name]
            column.metric(name, f"{value:,}" if isinstance(value, int) else f"{value:.4g}", border=True)
    if "evaluation" not in metrics:
        st.caption("No test-split evaluation yet: run `python -m battgen eval screening` to add retrieval, "
                   "composition and sensitivity metrics.")
    show_conditional_quality(metrics)
    sensitivity = (metrics.get("evaluation") or {}).get("sensitivity")
    if sensitivity and sensitivity.get("labels") and sensitivity.get("mean"):
        st.markdown("**Sensitivity to each condition** (mean over the ten ions' median requests)")
        st.plotly_chart(viz.sensitivity_figure(sensitivity["labels"], sensitivity["mean"], sensitivity.get("std")),
                        key="screen_quality_sensitivity")
        if sensitivity.get("definition"):
            st.caption(sensitivity["definition"])
    sweep = viz.guidance_sweep_table(metrics.get("guidance_sweep"))
    if not sweep.empty:
        sweep_split = (metrics["guidance_sweep"].get("settings") or {}).get("split", "test")
        st.markdown(f"**Guidance scale** (the {sweep_split}-split evaluation at each scale; 0 ignores the request, "
                    f"the default is {DEFAULT_GUIDANCE:g})")
        st.dataframe(sweep, hide_index=True, key="screen_quality_guidance",
                     column_config={c: st.column_config.NumberColumn(format=viz.GUIDANCE_SWEEP_FORMATS.get(c, "%.3f"))
                                    for c in sweep.columns})
        st.caption(metrics["guidance_sweep"].get("definition", ""))
    history = metrics.get("history") or {}
    if history.get("train_loss") and len(history.get("train_loss", [])) == len(history.get("val_loss", [])):
        st.markdown("**Training curve** (noise-prediction loss per epoch)")
        st.line_chart(pd.DataFrame({"train": history["train_loss"], "validation": history["val_loss"]}),
                      x_label="epoch", y_label="loss")
    with st.expander("metrics.json"):
        shown = {k: v for k, v in metrics.items() if k != "history"}
        st.code(json.dumps(shown, indent=2, default=str)[:20000], language="json")


st.set_page_config(page_title="Screening · BattGen", layout="wide", page_icon=str(paths.FAVICON))
st.title("Screening")
st.caption("Ask for an electrode by its properties: average voltage, capacities, energies, volume change and working "
           "ion. A latent diffusion model generates AFM-style descriptors of materials that fit and the atom regressor "
           "reads their compositions; the real electrodes of the table are ranked by how well their computed "
           "properties match the request (or, if you choose, by similarity to the generated compositions).")

root = paths.artifact_root()
problem = missing_screening_model(root)
if problem:
    st.info(problem)
    st.stop()
try:
    session = load_session(str(root), checkpoint_version(root))
except ValueError as exc:
    st.error(str(exc))
    st.stop()
source, _, candidate_table = chosen_table("screen_table_source", label="Candidates from",
                                         on_change=lambda: st.session_state.pop("screen_result", None))
if source != TABLE_SOURCES[0]:
    session = session.with_table(candidate_table)
    st.caption(f"Candidates: the {len(candidate_table):,} electrodes of the Materials Project table, ranked with "
               "their MP properties; the model and its slider ranges are BattGen's.")
elif session.latent_index is None:
    st.caption("No translator latents (`checkpoints/translator/latents.npz`): candidates are retrieved by "
               "composition only.")

screen_tab, sensitivity_tab, quality_tab = st.tabs(["Screen", "Sensitivity", "Model quality"])
with screen_tab:
    if show_request_controls(session):
        generate(session)
    result = st.session_state.get("screen_result")
    if result is None:
        st.info("Set the request and press **Generate**.")
    else:
        show_result(session, result)
with sensitivity_tab:
    show_sensitivity(session)
with quality_tab:
    show_model_quality(root)
