"""AFM translation: a 3D force-map stack → height map, vdW spheres, atomic disks, type map, composition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from battgen import paths
from battgen.afm.examples import load_examples
from battgen.afm.formats import read_stack
from battgen.afm.formats.channels import NotAForceMapStack
from battgen.afm.ood import OOD_FILENAME, LatentDensity
from battgen.afm.translate import LatentIndex, translate_stack
from battgen.artifacts import read_metrics
from battgen.data.composition import working_ions_in
from battgen.data.neighbors import nearest_by_composition
from battgen.data.properties import PROPERTY_NAMES, WORKING_IONS
from battgen.data.table import row_structure
from battgen.eval.afm_report import (anion_confusion, atom_regressor_ablation, atom_regressor_table,
                                     different_training_data, load_regressor_predictions, robust_encoder_tables,
                                     robustness_frame, translator_comparison)
from battgen.jobs import DONE
from battgen.jobs.tasks import afm_job
from battgen.ui.jobs import follow as follow_job
from battgen.ui.jobs import start as start_job
from battgen.ui.structure_panel import show_structure
from battgen.ui.tables import TABLE_HELP, chosen_table, load_electrodes, table_version
from battgen.viz import afm as viz

NEIGHBOURS = 5
DEFAULT_GRID = 64
SIMULATED_VIEWS = 4
SOURCES = ("Example", "Upload", "Simulate from a structure")


@st.cache_resource(show_spinner="Loading the translation model…")
def load_translator(path: str):
    from battgen.device import get_device
    from battgen.models.translator import AFMTranslator

    return AFMTranslator.from_pretrained(path).to(get_device()).eval()


@st.cache_resource(show_spinner="Loading the atom regressor…")
def load_regressor(path: str):
    from battgen.device import get_device
    from battgen.models.atom_regressor import AtomRegressor

    return AtomRegressor.from_pretrained(path).to(get_device()).eval()


@st.cache_resource(show_spinner=False)
def load_density(path: str) -> LatentDensity:
    return LatentDensity.load(path)


def ood_calibration(translator_dir: Path | None) -> tuple[LatentDensity | None, str | None]:
    """The translator's out-of-distribution calibration, or why there is none."""
    if translator_dir is None:
        return None, None
    try:
        return load_density(str(translator_dir / OOD_FILENAME)), None
    except (ValueError, KeyError, OSError) as exc:
        return None, f"No out-of-distribution score: {exc}"


@st.cache_resource(show_spinner=False)
def load_latent_index(path: str, table_ids: tuple[str, ...]) -> LatentIndex:
    return LatentIndex.load(path, list(table_ids))


@st.cache_resource(show_spinner=False)
def load_example_stacks(path: str, formulas: tuple[tuple[str, str], ...]):
    return load_examples(path, formulas=dict(formulas))


def checkpoint(name: str) -> Path | None:
    path = paths.checkpoint_dir(name)
    return path if (path / "config.json").is_file() else None


def model_status() -> tuple[object | None, object | None, str | None]:
    """(translator, regressor, problem) — a missing model is a message, not an exception."""
    translator_dir, regressor_dir = checkpoint(paths.TRANSLATOR), checkpoint(paths.ATOM_REGRESSOR)
    if translator_dir is None:
        return None, None, ("No trained translator in `checkpoints/translator`: stacks can be loaded, "
                            "viewed and simulated, but not translated. Train one with "
                            "`python -m battgen train translator --data data/afm`.")
    translator = load_translator(str(translator_dir))
    regressor = load_regressor(str(regressor_dir)) if regressor_dir is not None else None
    problem = None if regressor is not None else (
        "No atom regressor in `checkpoints/atom_regressor`: descriptors are shown, the composition is not.")
    return translator, regressor, problem


def set_input(stack: np.ndarray, label: str, *, truth=None, composition=None, ion=None, notes=(),
              channels=()) -> None:
    st.session_state["afm_input"] = {"stack": stack, "label": label, "truth": truth, "composition": composition,
                                     "ion": ion, "notes": list(notes), "channels": list(channels)}


st.set_page_config(page_title="AFM translation · BattGen", layout="wide", page_icon=str(paths.FAVICON))
st.title("AFM translation")
st.caption("A stack of frequency-shift maps at 10 tip heights goes in; the translation VAE draws what a "
           "chemist reads from it (height map, van der Waals spheres, atomic disks, and a type map of "
           "working ion / gas-phase elements / other elements), and the atom regressor predicts the "
           "composition from the same latent.")

table_dir = paths.asset_dir(paths.ELECTRODES)
try:
    table = load_electrodes(str(table_dir), table_version(table_dir))  # BattGen's: examples and latents
except ValueError as exc:
    table = None
    st.warning(str(exc))
# What a person simulates from and looks neighbours up in: BattGen's table or a fetched MP one.
lookup_table = table
if table is not None:
    _, _, lookup_table = chosen_table("afm_table_source", label="Electrode table",
                                      help="Where the materials to simulate and the nearest materials by "
                                           "composition come from. " + TABLE_HELP)
translator, regressor, problem = model_status()
if problem:
    st.info(problem)
grid = int(translator.config.sample_size) if translator is not None else DEFAULT_GRID
formulas = {} if table is None else dict(zip(table["id"], table["formula_discharge"]))
if lookup_table is not None:
    formulas.update(zip(lookup_table["id"], lookup_table["formula_discharge"]))


def table_row(material_id: str) -> pd.Series:
    """The row of ``material_id`` in the chosen table, else in BattGen's (latent neighbours)."""
    for frame in (lookup_table, table):
        hit = frame.loc[frame["id"] == material_id]
        if len(hit):
            return hit.iloc[0]
    raise KeyError(material_id)


translate_tab, quality_tab = st.tabs(["Translate a stack", "Model quality"])

with translate_tab:
    try:
        examples = load_example_stacks(str(paths.asset_dir(paths.AFM) / "examples.npz"),
                                       tuple(formulas.items()))
        examples_problem = None
    except ValueError as exc:
        examples, examples_problem = [], str(exc)
    # Without shipped examples the first thing a person can do is simulate one.
    source = st.radio("Stack from", SOURCES, horizontal=True, key="afm_source",
                      index=0 if examples else SOURCES.index("Simulate from a structure"))

    if source == "Example":
        if examples_problem:
            st.warning(examples_problem)
        if examples:
            labels = [e.label for e in examples]
            choice = st.selectbox("Example (test-split materials the models never saw)", range(len(examples)),
                                  format_func=labels.__getitem__, key="afm_example")
            example = examples[choice]
            set_input(example.stack, example.label, truth=example.descriptors, composition=example.composition,
                      ion=example.working_ion, notes=[f"simulated with ppafm from `{example.material_id}`"])

    elif source == "Upload":
        files = st.file_uploader("Stack file(s): .npz/.npy, multi-page TIFF, Nanonis .3ds (or several .sxm, "
                                 "one per height), Gwyddion .gwy", accept_multiple_files=True, key="afm_upload")
        with st.expander("Reading options"):
            key_column, axis_column, order_column = st.columns(3)
            array_key = key_column.text_input("Array / channel (when the file has several)", key="afm_array_key")
            axis = axis_column.selectbox("Height axis", ["auto", 0, 2], key="afm_axis",
                                         format_func=lambda a: {"auto": "auto (smallest)", 0: "first (Z×H×W)",
                                                                2: "last (H×W×Z)"}[a])
            closest_first = order_column.checkbox("First map is the closest to the sample", key="afm_closest_first")
        if files:
            try:
                result = read_stack(files if len(files) > 1 else files[0], array_key=array_key or None,
                                    axis=None if axis == "auto" else axis, target_shape=(grid, grid),
                                    closest_first=closest_first or None)
            except NotAForceMapStack as exc:
                st.error(f"This is {exc.kind}, not a constant-height force-map stack, so it is not translated. "
                         "The translator reads frequency-shift (Hz) or force maps at several tip heights; the "
                         "table lists what the file's channels hold, by their titles and units.")
                st.caption(str(exc))
                st.dataframe(pd.DataFrame([c.row() for c in exc.channels]), hide_index=True, key="afm_channels")
                st.session_state.pop("afm_input", None)
            except ValueError as exc:
                st.error(str(exc))
                st.session_state.pop("afm_input", None)
            else:
                name = ", ".join(f.name for f in files)
                set_input(result.stack, name, notes=[f"read as {result.format}, source shape "
                                                     f"{'×'.join(map(str, result.source_shape))}", *result.operations],
                          channels=[c.row() for c in result.channels])
        else:
            st.session_state.pop("afm_input", None)

    else:
        pick_column, upload_column = st.columns(2)
        structure, structure_label, ion = None, None, None
        if lookup_table is not None:
            ids = lookup_table["id"].tolist()
            material = pick_column.selectbox("Dataset material", ids, key="afm_material",
                                             format_func=lambda i: f"{formulas[i]} · {i}")
            row = table_row(material)
            structure, structure_label, ion = row_structure(row, "discharge"), f"{formulas[material]} · {material}", row["working_ion"]
        cif = upload_column.file_uploader("…or your own structure (CIF or POSCAR)", key="afm_structure_upload")
        if cif is not None:
            from battgen.data.evaluate import read_structure

            try:
                structure, structure_label = read_structure(cif.getvalue(), cif.name), cif.name
                present = working_ions_in(structure)
                ion = present[0] if len(present) == 1 else None
            except ValueError as exc:
                st.error(str(exc))
                structure = None
        if structure is not None:
            ion_options = working_ions_in(structure)
            if not ion_options:
                st.error(f"{structure.composition.reduced_formula} contains none of the working ions "
                         f"({', '.join(WORKING_IONS)}); the type map needs one.")
            else:
                ion = st.selectbox("Working ion (blue in the type map)", ion_options,
                                   index=ion_options.index(ion) if ion in ion_options else 0, key="afm_sim_ion")
                if st.button("Simulate", type="primary", icon=":material/play_arrow:", key="afm_simulate"):
                    st.session_state.pop("afm_simulated", None)
                    st.session_state["afm_simulation_request"] = {"label": structure_label, "ion": ion,
                                                                  "structure": structure}
                    start_job("afm_job", "afm", afm_job, structure, ion=ion, grid=grid, keep=SIMULATED_VIEWS)
        ended = follow_job("afm_job")
        if ended is not None:
            request = st.session_state.pop("afm_simulation_request")
            if ended.status == DONE:
                from battgen.data.composition import composition_vector

                st.session_state["afm_simulated"] = {"label": request["label"], "ion": request["ion"],
                                                     "views": ended.result,
                                                     "composition": composition_vector(request["structure"])}
            else:
                st.error(ended.explanation)
        simulated = st.session_state.get("afm_simulated")
        if simulated is None:
            # Otherwise the stack of the example or upload seen before would stay on screen under this source.
            st.session_state.pop("afm_input", None)
        else:
            views = simulated["views"]
            view = st.radio("View (most informative first)", range(len(views.valid)), horizontal=True,
                            key="afm_view", format_func=lambda k: f"{k + 1}{'' if views.valid[k] else ' (invalid)'}")
            if not views.valid[view]:
                st.warning(f"This view is invalid: {views.reasons[view]}")
            set_input(views.stacks[view].astype(np.float32), f"{simulated['label']}, view {view + 1}",
                      truth=views.descriptors[view].astype(np.float32), composition=simulated["composition"],
                      ion=simulated["ion"],
                      notes=[f"{len(views.cluster)}-atom cluster ({views.cluster.formula}), radius "
                             f"{views.cluster.radius:.1f} Å, simulated in {views.seconds[view]:.2f} s"])

    current = st.session_state.get("afm_input")
    if current is None:
        st.info("Choose an example, upload a stack or simulate one.")
        st.stop()

    stack = current["stack"]
    st.subheader(current["label"])
    for note in current["notes"]:
        st.caption(note)
    if current.get("channels"):
        with st.expander("Channels read (as the file names them)"):
            st.dataframe(pd.DataFrame(current["channels"]), hide_index=True, key="afm_channels_read")
    stack_column, strip_column = st.columns([2, 3])
    with stack_column:
        height_index = st.slider("Tip height (1 = farthest)", 1, stack.shape[2], stack.shape[2], key="afm_height") - 1
        st.plotly_chart(viz.stack_figure(stack, height_index), key="afm_stack")
    with strip_column:
        st.plotly_chart(viz.stack_strip_figure(stack), key="afm_strip")

    if translator is None:
        st.stop()
    density, density_problem = ood_calibration(checkpoint(paths.TRANSLATOR))
    try:
        translation = translate_stack(translator, stack, regressor, density)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()

    score = translation.ood
    if score is None:
        st.caption(density_problem or "No out-of-distribution score for this translator.")
    else:
        score_column, verdict_column = st.columns([1, 3])
        score_column.metric("Out-of-distribution score", f"{score.percentile:.1f} %",
                            help="Share of held-out simulated stacks (the validation split, not trained on) "
                                 "whose latent lies closer to the training latents than this input's. "
                                 f"Distance {score.distance:.2f}; warning above {score.threshold:.2f}.")
        if score.out_of_distribution:
            verdict_column.warning(
                f"**Outside what the model saw:** this stack is {score.summary()}. The translator and the atom "
                "regressor were trained on clean simulated stacks only; read the descriptors and the composition "
                "below as unreliable.", icon=":material/warning:")
        elif score.unusual:
            verdict_column.info(
                f"**Unusual for the model:** this stack is {score.summary()}. Small lateral offsets and tip-height "
                "errors land here and cost the composition much of its accuracy (Model quality tab).",
                icon=":material/info:")
        else:
            verdict_column.caption(f"Within what the model saw: {score.summary()}.")
    noise = translation.noise
    if noise is not None and noise.too_noisy:
        st.warning(f"**Noisier than anything the model was trained on:** this stack has {noise.summary()}. "
                   "The robust encoder maps such noise onto ordinary-looking latents, so the score above can miss "
                   "it, and its composition and descriptors are less reliable the noisier it gets. Average more frames or "
                   "filter the stack before translating it.", icon=":material/warning:")

    st.markdown("**Descriptors**")
    st.plotly_chart(viz.descriptor_figure(translation.descriptors, current["truth"]), key="afm_descriptors")
    st.caption(f"Type map: {viz.TYPE_MAP_LEGEND}.")
    downloads = st.columns(3)
    stem = Path(str(current["label"]).split(",")[0]).stem.replace(" ", "_").replace("·", "")
    downloads[0].download_button("Descriptors (PNG)", viz.descriptors_png(translation.descriptors),
                                 file_name=f"{stem}_descriptors.png", mime="image/png", on_click="ignore",
                                 icon=":material/download:", key="afm_png")
    downloads[1].download_button("Descriptors + latent (NPZ)", translation.descriptors_npz(),
                                 file_name=f"{stem}_descriptors.npz", mime="application/octet-stream",
                                 on_click="ignore", icon=":material/download:", key="afm_npz")

    if translation.composition is not None:
        downloads[2].download_button("Composition (CSV)", translation.predictions_csv(),
                                     file_name=f"{stem}_composition.csv", mime="text/csv", on_click="ignore",
                                     icon=":material/download:", key="afm_csv")
        composition_column, formula_column = st.columns([3, 2])
        truth = None
        if current["composition"] is not None:
            from battgen.data.composition import top_elements

            truth = dict(top_elements(current["composition"], k=112))
        with composition_column:
            st.markdown("**Predicted composition** (atoms per formula cell)",
                        help="The mean over the stack's eight quarter turns and mirrors, so it is the same however "
                             "the scan is turned; error bars: the spread over those eight readings.")
            st.plotly_chart(viz.composition_figure(translation.top_elements(k=112), truth=truth,
                                                   spread=translation.spread_by_element()), key="afm_composition")
        with formula_column:
            st.metric("Formula guess", translation.formula or "—",
                      help="Counts rounded to whole atoms; elements below half an atom are dropped.")
            if truth:
                from pymatgen.core import Composition

                st.metric("True formula", Composition({k: v for k, v in truth.items()}).reduced_formula)

    if table is not None:
        st.markdown("**Nearest materials of the dataset**")
        latent_column, composition_column = st.columns(2)
        shown = ["id", "working_ion", "formula_discharge", *PROPERTY_NAMES[:2]]
        neighbours = []
        latents_dir = checkpoint(paths.TRANSLATOR)
        try:
            index = load_latent_index(str(latents_dir), tuple(table["id"]))
        except (ValueError, KeyError) as exc:
            latent_column.caption(f"Latent search unavailable: {exc}")
        else:
            by_latent = index.nearest(translation.mu, NEIGHBOURS).merge(table, on="id", how="left")
            latent_column.caption("By latent (closest view, RMS distance of the 4×h×w latent means)")
            latent_column.dataframe(by_latent[shown + ["latent_distance"]], hide_index=True)
            neighbours += by_latent["id"].tolist()
        if translation.composition is not None:
            by_composition = nearest_by_composition(lookup_table, translation.composition, k=NEIGHBOURS)
            composition_column.caption("By predicted composition (fraction of atoms that differ)")
            composition_column.dataframe(by_composition[shown + ["composition_distance"]], hide_index=True)
            neighbours += by_composition["id"].tolist()
        if neighbours:
            chosen = st.selectbox("Show in 3D", list(dict.fromkeys(neighbours)), key="afm_neighbour",
                                  format_func=lambda i: f"{formulas.get(i, i)} · {i}")
            row = table_row(chosen)
            show_structure(row_structure(row, "discharge"), cache_key=f"afm:{chosen}",
                           file_stem=f"{row['formula_discharge']}_{chosen}", key="afm_structure")

with quality_tab:
    compared = {"translator": paths.checkpoint_dir(paths.TRANSLATOR),
                "translator_noadv": paths.checkpoint_dir(paths.TRANSLATOR_NOADV)}
    comparison = translator_comparison(compared)
    if comparison is not None:
        st.markdown("**Translator, test split** (adversarial vs the same network without discriminator)")
        st.dataframe(comparison, key="afm_translator_metrics")
        caveat = different_training_data(compared)
        if caveat:
            st.caption(caveat)
    else:
        st.info("No translator metrics yet.")
    robustness = robustness_frame(paths.checkpoint_dir(paths.TRANSLATOR))
    if robustness is not None:
        frame, about = robustness
        st.markdown("**Robustness to a microscope's distortions** (shipped models, held-out simulated stacks)")
        st.dataframe(frame, hide_index=True, key="afm_robustness")
        st.caption(about)
    robust_encoder = robust_encoder_tables(read_metrics(paths.checkpoint_dir(paths.TRANSLATOR)) or {})
    if robust_encoder is not None:
        kinds, clean, about = robust_encoder
        st.markdown("**Robust encoder** (fine-tuned to read a microscope's distortions as the clean stack)")
        left, right = st.columns(2)
        left.dataframe(kinds, hide_index=True, key="afm_robust_encoder_kinds")
        if clean is not None:
            right.dataframe(clean, hide_index=True, key="afm_robust_encoder_clean")
        st.caption(about)
    quality_density, _ = ood_calibration(checkpoint(paths.TRANSLATOR))
    if quality_density is not None:
        made = quality_density.provenance
        st.caption(f"Out-of-distribution score: {made.get('method', 'latent distance')}; fitted on the "
                   f"{made.get('fitted_on', 'training latents')}, calibrated on the {made.get('calibrated_on', '?')}; "
                   f"the page warns above the {quality_density.threshold_percentile:g}th percentile "
                   f"(distance {quality_density.threshold:.2f}).")
    regressor_dir = paths.checkpoint_dir(paths.ATOM_REGRESSOR)
    regressor_metrics = read_metrics(regressor_dir)
    if regressor_metrics:
        st.markdown("**Atom regressor, test split per working ion**")
        st.dataframe(atom_regressor_table(regressor_metrics), hide_index=True, key="afm_regressor_metrics")
        ablation = atom_regressor_ablation(regressor_metrics)
        if ablation is not None:
            st.markdown("**What limits the atom regressor** (ablation, short trainings on the same split)")
            st.dataframe(ablation[0], hide_index=True, key="afm_regressor_ablation")
            st.caption(ablation[1])
        predictions = load_regressor_predictions(regressor_dir)
        if predictions is not None:
            st.markdown("**Which anion it reads**, test split (the main anion: most atoms among N, O, F, S, Cl, Se, "
                        "Br, Te, I)")
            st.dataframe(anion_confusion(predictions.true, predictions.pred), hide_index=True, key="afm_anions")
            st.caption("One reading per view, from the stored latents. Read each row as: of the views whose main "
                       "anion is this one, the share whose largest predicted anion count is each column's. The "
                       "overall R² does not show which chemistry is misread; this table does.")
            left, right = st.columns(2)
            left.plotly_chart(viz.count_violin_figure(predictions.true, predictions.pred, predictions.working_ion),
                              key="afm_violin")
            right.plotly_chart(viz.error_histogram_figure(predictions.true, predictions.pred), key="afm_errors")
        with st.expander("metrics.json"):
            st.code(json.dumps(regressor_metrics, indent=2)[:20000], language="json")
