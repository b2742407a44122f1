"""Structures: browse the electrode table, see each material in 3D, evaluate an uploaded electrode."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from battgen import paths
from battgen.artifacts import flatten_metrics, format_metric_value
from battgen.data.evaluate import MAX_ATOMS, check_structure, read_structure
from battgen.data.export import to_csv_bytes
from battgen.data.mp_fetch import local_table_dir
from battgen.data.neighbors import nearest_by_composition, nearest_by_properties
from battgen.data.properties import PROPERTIES, PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.table import load_scaler, load_table, row_electrode, row_provenance, row_structure
from battgen.data.validate import VALIDATION_FILENAME, load_validation
from battgen.jobs import DONE
from battgen.jobs.tasks import evaluate_job
from battgen.ui.jobs import follow as follow_job
from battgen.ui.jobs import start as start_job
from battgen.ui.structure_panel import show_structure
from battgen.ui.tables import TABLE_SOURCES, choose_source, load_electrodes, table_directory, table_version, use_source
from battgen.viz import electrodes as viz

NEIGHBOURS = 5
STATE_LABELS = {"discharge": "Discharged", "charge": "Charged"}
TABLE_COLUMNS = ["id", "working_ion", "formula_discharge", "formula_charge", "structure_type",
                 "spacegroup_discharge", "nsites_discharge", *PROPERTY_NAMES,
                 "stability_discharge", "stability_charge", "competing_phases_discharge"]
HULL_STATE_LABELS = {"discharge": "discharged", "charge": "charged", "both": "both states"}
VALIDATION_COLUMNS = ["electrode", "ion", "voltage_computed", "voltage_reference", "voltage_error",
                      "capacity_computed", "capacity_reference", "within_0.5V", "status"]
COLUMN_CONFIG = {
    "id": st.column_config.TextColumn("id"),
    "working_ion": st.column_config.TextColumn("ion"),
    "formula_discharge": st.column_config.TextColumn("discharged"),
    "formula_charge": st.column_config.TextColumn("charged"),
    "structure_type": st.column_config.TextColumn("structure type"),
    "spacegroup_discharge": st.column_config.TextColumn("space group"),
    "nsites_discharge": st.column_config.NumberColumn("atoms"),
    **{p.name: st.column_config.NumberColumn(p.axis_title, format=f"%.{viz.PROPERTY_DECIMALS[p.name]}f")
       for p in PROPERTIES},
    "stability_discharge": st.column_config.NumberColumn(
        "E_hull disch. (eV/atom)", format="%.3f",
        help="energy above the offline hull (this table + pymatgen's reference compounds, MP2020 scale)"),
    "stability_charge": st.column_config.NumberColumn("E_hull charged (eV/atom)", format="%.3f"),
    "competing_phases_discharge": st.column_config.NumberColumn(
        "competing phases", help="other compounds in the discharged phase's chemical system: with 0, "
                                 "E_hull = 0 means nothing competes, not that it is stable"),
    "voltage_computed": st.column_config.NumberColumn("V computed", format="%.2f"),
    "voltage_reference": st.column_config.NumberColumn("V experiment", format="%.2f"),
    "voltage_error": st.column_config.NumberColumn("V error", format="%+.2f"),
    "capacity_computed": st.column_config.NumberColumn("mAh/g computed", format="%.0f"),
    "capacity_reference": st.column_config.NumberColumn("mAh/g theory", format="%.0f"),
    "within_0.5V": st.column_config.CheckboxColumn("within 0.5 V"),
    "property_distance": st.column_config.NumberColumn("property distance", format="%.3f"),
    "composition_distance": st.column_config.NumberColumn("composition distance", format="%.3f"),
}


MP_KEY_HINT = "check the key you pasted"


@st.cache_resource(show_spinner=False, max_entries=4)
def load_ranges(directory: str, version: int) -> PropertyScaler:
    try:
        return load_scaler(directory)
    except ValueError:  # a table saved without ranges.json: its own ranges are the same thing
        return PropertyScaler.fit(load_electrodes(directory, version)[list(PROPERTY_NAMES)].to_numpy())


@st.cache_resource(show_spinner=False, max_entries=256)
def table_structure(directory: str, version: int, material_id: str, state: str):
    df = load_electrodes(directory, version)
    return row_structure(df.loc[df["id"] == material_id].iloc[0], state)


@st.cache_data(show_spinner=False, max_entries=128)
def table_voltage_profile(directory: str, version: int, material_id: str):
    df = load_electrodes(directory, version)
    row = df.loc[df["id"] == material_id].iloc[0]
    return viz.voltage_profile_figure(row_electrode(row), label=row["formula_discharge"])


@st.cache_data(show_spinner=False, max_entries=4)
def table_validation(directory: str, version: int):
    return load_validation(directory)


@st.cache_data(show_spinner=False, max_entries=16)
def parse_upload(data: bytes, filename: str):
    return read_structure(data, filename)


def data_source_sentence(df: pd.DataFrame) -> str:
    counts = df["source"].value_counts()
    computed, fetched = int(counts.get("computed", 0)), int(counts.get("mp", 0))
    builder = ("computed offline by BattGen's builder (host frameworks filled with each working ion, "
               "relaxed with CHGNet, voltages and capacities from pymatgen's `InsertionElectrode`)")
    mp = "fetched from the Materials Project battery explorer"
    if computed and fetched:
        return f"{len(df):,} insertion electrodes: {computed:,} {builder} and {fetched:,} {mp}."
    return f"{len(df):,} insertion electrodes, {builder if computed else mp}."


def material_label(row) -> str:
    return f"{row['formula_discharge']} ⇄ {row['formula_charge']} ({row['working_ion']}) · {row['id']}"


def select_from_table(ids: list[str]) -> None:
    # Row numbers refer to the table as it was drawn, so the ids come from that same run.
    rows = st.session_state["electrode_table"].selection.rows
    if rows:
        st.session_state["material"] = ids[rows[0]]


def show_properties(properties: dict) -> None:
    columns = st.columns(len(PROPERTIES))
    for column, prop in zip(columns, PROPERTIES):
        # The unit goes in the label: six metrics share a row, and a value with its unit
        # ("1,152 mAh/cm³") is cut off in a sixth of a page.
        column.metric(prop.axis_title, viz.format_property(prop.name, properties[prop.name]))


def state_picker(formulas: dict[str, str], key: str) -> str:
    return st.radio("State", list(STATE_LABELS), horizontal=True, key=key,
                    format_func=lambda s: f"{STATE_LABELS[s]} ({formulas[s]})")


def show_neighbours(title: str, neighbours: pd.DataFrame, distance: str, help_text: str) -> None:
    st.markdown(f"**{title}**")
    st.dataframe(neighbours[TABLE_COLUMNS[:4] + list(PROPERTY_NAMES) + [distance]], hide_index=True,
                 column_config=COLUMN_CONFIG)
    st.caption(help_text)


def show_validation(directory: Path, shown_dir: str) -> None:
    try:
        validation = table_validation(str(directory), table_version(directory, VALIDATION_FILENAME))
    except ValueError as exc:
        st.error(str(exc))
        return
    if validation is None:
        st.info("No validation result beside this table: `python -m battgen data validate --table "
                f"{shown_dir}` computes the textbook electrodes and writes it.")
        return
    textbook, about = validation
    median = about.get("median_abs_voltage_error_V")
    st.markdown(
        f"**Textbook electrodes**, computed by the builder's pipeline (CHGNet + pymatgen) against "
        f"experiment: {about.get('within_0.5V', 0)} of {about.get('references', len(textbook))} within "
        f"0.5 V; median |voltage error| "
        f"{'n/a' if median is None else f'{median:.2f} V'} over the {about.get('computed', 0)} that computed.")
    st.dataframe(textbook[[c for c in VALIDATION_COLUMNS if c in textbook.columns]], hide_index=True,
                 column_config=COLUMN_CONFIG, key="validation_table")
    made = about.get("provenance", {})
    st.caption(f"Written {format_metric_value(made.get('created_utc', '?'))} by `{made.get('command', '?')}`; "
               "notes and sources of the experimental values are in the JSON file beside the table.")


st.set_page_config(page_title="Structures · BattGen", layout="wide", page_icon=str(paths.FAVICON))
st.title("Structures")

# --------------------------------------------------------------------------- Materials Project
with st.expander("Materials Project electrodes: fetch them with your API key", icon=":material/cloud_download:"):
    st.markdown("Fetches the insertion electrodes of MP's battery explorer (with structures) into a local "
                f"table beside BattGen's, `{paths.for_display(local_table_dir())}`; the same as "
                "`python -m battgen data fetch-mp`. Needs a network and your own key "
                "([get one](https://next-gen.materialsproject.org/api)).")
    key_column, ions_column = st.columns([2, 3])
    mp_key = key_column.text_input(
        "MP API key", type="password", key="mp_api_key",
        help="Held in this browser session only: never written to disk, to a log or to the table.")
    mp_ions = ions_column.multiselect("Working ions", WORKING_IONS, default=list(WORKING_IONS), key="mp_ions")
    if st.button("Fetch from Materials Project", key="mp_fetch", icon=":material/download:",
                 disabled=not mp_key.strip() or not mp_ions):
        from battgen.data.mp_fetch import fetch_mp

        with st.spinner("Asking Materials Project…"):
            try:
                fetched = fetch_mp(local_table_dir(), ions=mp_ions, progress=False, api_key=mp_key,
                                   attempts=2, key_hint=MP_KEY_HINT)
            except ValueError as exc:
                st.error(str(exc))
            else:
                use_source(TABLE_SOURCES[1])
                st.success(f"Fetched {len(load_table(fetched.parent)):,} electrodes; the table below shows them.")

source = choose_source("table_source", label="Table",
                       help="BattGen's own CHGNet-computed electrodes, or those fetched from the Materials Project. "
                            "The choice holds on every page.")
directory = table_directory(source)
version = table_version(directory)
try:
    table = load_electrodes(str(directory), version)
except ValueError as exc:
    if source == TABLE_SOURCES[1] and not (directory / "electrodes.parquet").exists():
        st.info("No Materials Project table here yet: paste your API key above and fetch it.")
    else:
        st.error(str(exc))
    st.stop()

shown_dir = paths.for_display(directory)
st.caption(f"{data_source_sentence(table)} Table: `{shown_dir}`.")

# --------------------------------------------------------------------------- filters
with st.container(border=True):
    ion_column, search_column = st.columns([2, 1])
    present_ions = [ion for ion in WORKING_IONS if ion in set(table["working_ion"])]
    ions = ion_column.multiselect("Working ions (none chosen: all)", present_ions, key="filter_ions")
    search = search_column.text_input("Formula contains", key="filter_search",
                                     help="Part of a formula, e.g. LiCoO2, Fe or S2; case is ignored.")
    ranges = {}
    slider_columns = st.columns(3)
    for i, prop in enumerate(PROPERTIES):
        bounds = viz.slider_range(table[prop.name])
        ranges[prop.name] = slider_columns[i % 3].slider(
            prop.axis_title, bounds.low, bounds.high, (bounds.low, bounds.high), step=bounds.step,
            format=bounds.format, key=f"range_{prop.name}",
        )
    hull_values = pd.concat([table["stability_discharge"], table["stability_charge"]]).astype(float).dropna()
    max_e_hull, hull_state = None, "discharge"
    if hull_values.empty:
        st.caption("This table has no energies above hull yet: `python -m battgen data stability "
                   f"--table {paths.for_display(directory)}` computes them.")
    else:
        hull_column, state_column = st.columns([2, 1])
        hull_bounds = viz.slider_range(hull_values)
        chosen = hull_column.slider(
            "Max E_hull (eV/atom)", 0.0, hull_bounds.high, hull_bounds.high, step=hull_bounds.step,
            format=hull_bounds.format, key="max_e_hull",
            help="Energy above the offline hull (this table + pymatgen's reference compounds). At its "
                 "maximum nothing is filtered; below it, rows without E_hull are left out.")
        hull_state = state_column.radio("E_hull of", list(HULL_STATE_LABELS), horizontal=True,
                                        format_func=HULL_STATE_LABELS.get, key="hull_state")
        max_e_hull = None if chosen >= hull_bounds.high else chosen
selection = viz.filter_electrodes(table, ions=ions or None, ranges=ranges, search=search,
                                  max_e_hull=max_e_hull, hull_state=hull_state)
count_column, csv_column = st.columns([3, 1])
count_column.markdown(f"**{len(selection):,}** of {len(table):,} electrodes match the filters.")
csv_column.download_button("Selection as CSV", to_csv_bytes(selection), file_name="electrodes_selection.csv",
                           mime="text/csv", icon=":material/download:", on_click="ignore",
                           disabled=selection.empty, key="download_csv")

browse_tab, plots_tab, stability_tab, validation_tab, evaluate_tab = st.tabs(
    ["Browse", "Distributions", "Stability", "Validation", "Evaluate my electrode"])

# --------------------------------------------------------------------------- browse
with browse_tab:
    ids = selection["id"].tolist()
    st.dataframe(selection[TABLE_COLUMNS], hide_index=True, column_config=COLUMN_CONFIG, height=280,
                 key="electrode_table", on_select=functools.partial(select_from_table, ids),
                 selection_mode="single-row")
    if selection.empty:
        st.info("No electrode matches the filters; widen the ranges or clear the search.")
    else:
        if st.session_state.get("material") not in ids:
            st.session_state["material"] = ids[0]
        labels = dict(zip(ids, selection.apply(material_label, axis=1)))
        material_id = st.selectbox("Material (or pick a row in the table)", ids, key="material",
                                   format_func=labels.get)
        row = selection.loc[selection["id"] == material_id].iloc[0]
        st.subheader(labels[material_id])
        show_properties(row)
        st.caption(viz.stability_sentence(row))
        state = state_picker({"discharge": row["formula_discharge"], "charge": row["formula_charge"]},
                             key="structure_state")
        show_structure(table_structure(str(directory), version, material_id, state),
                       cache_key=f"{directory}:{version}:{material_id}:{state}",
                       file_stem=f"{row['formula_discharge' if state == 'discharge' else 'formula_charge']}_"
                                 f"{material_id}_{state}",
                       key="structure")
        st.markdown("**Voltage profile**")
        st.plotly_chart(table_voltage_profile(str(directory), version, material_id), key="voltage_profile")
        with st.expander("Provenance: how this electrode was made"):
            provenance = flatten_metrics(row_provenance(row))
            provenance = {"source": row["source"], "split": row["split"], **provenance}
            st.table({"field": list(provenance), "value": [format_metric_value(v) for v in provenance.values()]},
                     hide_index=True)

# --------------------------------------------------------------------------- distributions
with plots_tab:
    st.caption(f"The {len(selection):,} electrodes matching the filters. Hover a point to see which "
               "material it is.")
    left, right = st.columns(2, gap="large")
    with left:
        name_column, kind_column = st.columns([2, 1])
        distributed = name_column.selectbox("Property", PROPERTY_NAMES, format_func=viz.axis_title,
                                            key="distribution_property")
        kind = kind_column.radio("Plot", ["violin", "box"], horizontal=True, key="distribution_kind")
        st.plotly_chart(viz.distribution_figure(selection, distributed, kind=kind), key="distribution_chart")
    with right:
        x_column, y_column = st.columns(2)
        x_name = x_column.selectbox("x axis", PROPERTY_NAMES, format_func=viz.axis_title,
                                    index=PROPERTY_NAMES.index("average_voltage"), key="pair_x")
        y_name = y_column.selectbox("y axis", PROPERTY_NAMES, format_func=viz.axis_title,
                                    index=PROPERTY_NAMES.index("capacity_grav"), key="pair_y")
        st.plotly_chart(viz.pairwise_figure(selection, x_name, y_name), key="pair_chart")

# --------------------------------------------------------------------------- stability
with stability_tab:
    st.caption(f"Energy above hull of the {len(selection):,} electrodes matching the filters: the hull of "
               "each chemical system holds this table's own CHGNet entries and the 423 reference compounds "
               "pymatgen ships (MP2020-corrected); 0 means on the hull. Rows in a system with no competing "
               "compound sit at 0 by default; the table's 'competing phases' column says which.")
    state_choice = st.radio("Phase", ["discharge", "charge"], horizontal=True, key="stability_state",
                            format_func=lambda s: STATE_LABELS[s])
    hull_column_name = f"stability_{state_choice}"
    left, right = st.columns(2, gap="large")
    with left:
        st.plotly_chart(viz.pairwise_figure(selection.dropna(subset=[hull_column_name]), "average_voltage",
                                            hull_column_name), key="stability_chart")
    with right:
        st.plotly_chart(viz.histogram_figure(selection, hull_column_name), key="stability_histogram")

# --------------------------------------------------------------------------- validation
with validation_tab:
    if source == TABLE_SOURCES[1]:
        st.info("The validation compares BattGen's computed electrodes with experiment; choose the "
                "BattGen computed table to see it.")
    else:
        show_validation(directory, shown_dir)

# --------------------------------------------------------------------------- evaluate
with evaluate_tab:
    st.markdown(
        "Upload the **discharged** (ion-containing) structure of an electrode. It is relaxed with "
        "CHGNet, the working ions are removed and the host relaxed again, and pymatgen computes the "
        "six properties exactly as for the table above. A few atoms take seconds to a minute on a "
        f"CPU; at most {MAX_ATOMS} atoms."
    )
    upload_column, ion_column = st.columns([3, 1])
    uploaded = upload_column.file_uploader("Structure file (CIF or POSCAR)", key="upload_file")
    upload_ion = ion_column.selectbox("Working ion", WORKING_IONS, key="upload_ion")
    structure = None
    if uploaded is not None:
        data = uploaded.getvalue()
        try:
            structure = parse_upload(data, uploaded.name)
            check_structure(structure, upload_ion)
        except ValueError as exc:
            st.error(str(exc))
            structure = None
    if structure is not None:
        st.caption(f"{uploaded.name}: {structure.composition.reduced_formula}, {len(structure)} atoms.")
        if st.button("Evaluate", type="primary", icon=":material/bolt:", key="evaluate"):
            st.session_state.pop("evaluation", None)
            st.session_state["evaluation_request"] = {"name": uploaded.name, "ion": upload_ion,
                                                      "key": hashlib.sha1(data).hexdigest()[:12] + upload_ion}
            start_job("evaluation_job", "evaluate", evaluate_job, structure, upload_ion, name=uploaded.name)
    ended = follow_job("evaluation_job")
    if ended is not None:
        request = st.session_state.pop("evaluation_request")
        if ended.status == DONE:
            st.session_state["evaluation"] = {**request, "evaluation": ended.result}
        else:
            st.error(ended.explanation)

    result = st.session_state.get("evaluation")
    if result is not None:
        evaluation = result["evaluation"]
        st.subheader(f"{evaluation.row['formula_discharge']} ⇄ {evaluation.row['formula_charge']} "
                     f"({result['ion']}) from {result['name']}")
        show_properties(evaluation.properties)
        upload_state = state_picker({"discharge": evaluation.row["formula_discharge"],
                                     "charge": evaluation.row["formula_charge"]}, key="upload_state")
        relaxed = evaluation.discharged if upload_state == "discharge" else evaluation.charged
        show_structure(relaxed.structure, cache_key=f"upload:{result['key']}:{upload_state}",
                       file_stem=f"{Path(result['name']).stem}_relaxed_{upload_state}", key="upload_structure")
        st.markdown("**Voltage profile**")
        st.plotly_chart(viz.voltage_profile_figure(evaluation.electrode, label=evaluation.row["formula_discharge"]),
                        key="upload_voltage_profile")
        scaler = load_ranges(str(directory), version)
        show_neighbours(
            f"Closest {result['ion']} electrodes by properties",
            nearest_by_properties(table, evaluation.properties, scaler, ion=result["ion"], k=NEIGHBOURS),
            "property_distance",
            "Euclidean distance over the six properties, each scaled to the dataset's range "
            "(0.1 = a tenth of the range away).",
        )
        show_neighbours(
            "Closest electrodes by composition",
            nearest_by_composition(table, evaluation.row["composition"], k=NEIGHBOURS),
            "composition_distance",
            "Fraction of atoms that would have to change element (0 = same composition).",
        )
