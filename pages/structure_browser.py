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
from battgen.data.neighbors import nearest_by_composition, nearest_by_properties
from battgen.data.properties import PROPERTIES, PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.table import load_scaler, load_table, row_electrode, row_provenance, row_structure
from battgen.jobs import DONE
from battgen.jobs.tasks import evaluate_job
from battgen.ui.jobs import follow as follow_job
from battgen.ui.jobs import start as start_job
from battgen.ui.structure_panel import show_structure
from battgen.viz import electrodes as viz

NEIGHBOURS = 5
STATE_LABELS = {"discharge": "Discharged", "charge": "Charged"}
TABLE_COLUMNS = ["id", "working_ion", "formula_discharge", "formula_charge", "structure_type",
                 "spacegroup_discharge", "nsites_discharge", *PROPERTY_NAMES]
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
    "property_distance": st.column_config.NumberColumn("property distance", format="%.3f"),
    "composition_distance": st.column_config.NumberColumn("composition distance", format="%.3f"),
}


def table_directory() -> Path:
    return paths.asset_dir(paths.ELECTRODES)


def table_version(directory: Path) -> int:
    """Modification time of the table file: part of every cache key, so a rebuilt table is re-read."""
    try:
        return (directory / "electrodes.parquet").stat().st_mtime_ns
    except OSError:
        return 0


# cache_resource, not cache_data: the table is only read, never modified, and cache_data would
# copy it (every structure as JSON) on each rerun.
@st.cache_resource(show_spinner="Loading the electrode table…", max_entries=4)
def load_electrodes(directory: str, version: int) -> pd.DataFrame:
    return load_table(directory)


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


st.set_page_config(page_title="Structures · BattGen", layout="wide", page_icon=str(paths.FAVICON))
st.title("Structures")

directory = table_directory()
version = table_version(directory)
try:
    table = load_electrodes(str(directory), version)
except ValueError as exc:
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
selection = viz.filter_electrodes(table, ions=ions or None, ranges=ranges, search=search)
count_column, csv_column = st.columns([3, 1])
count_column.markdown(f"**{len(selection):,}** of {len(table):,} electrodes match the filters.")
csv_column.download_button("Selection as CSV", to_csv_bytes(selection), file_name="electrodes_selection.csv",
                           mime="text/csv", icon=":material/download:", on_click="ignore",
                           disabled=selection.empty, key="download_csv")

browse_tab, plots_tab, evaluate_tab = st.tabs(["Browse", "Distributions", "Evaluate my electrode"])

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
