"""Design: a property request → new electrode structures, filtered and verified with CHGNet (a Dask job)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from battgen import paths
from battgen.data.properties import PROPERTIES, PROPERTY_BY_NAME, PROPERTY_NAMES, WORKING_IONS, PropertyScaler
from battgen.data.table import load_scaler, load_table
from battgen.design.evaluate import YIELD_COMMAND, YIELD_FILENAME, load_metrics, metrics_table, yield_table
from battgen.design.export import candidate_id, csv_bytes, design_records, records_frame, structures_zip
from battgen.design.funnel import STAGE_LABELS
from battgen.design.jobs import DesignJobs
from battgen.design.request import (ARMS, DEFAULT_ARMS, DEFAULT_PROPOSALS, DEFAULT_RELAX_STEPS, MAX_CANDIDATES,
                                     build_request)
from battgen.design.store import ACTIVE, DesignStore, default_path
from battgen.screening.request import ion_medians
from battgen.ui.jobs import job_runner, show_job_state
from battgen.ui.structure_panel import show_structure
from battgen.ui.tables import TABLE_HELP, TABLE_SOURCES, chosen_table, table_directory
from battgen.viz import design as viz
from battgen.viz import electrodes as electrode_viz

DEFAULT_TARGETS = ("average_voltage", "capacity_grav")
POLL_S = 2
RESULT_COLUMNS = {
    "id": st.column_config.TextColumn("id"),
    "arm": st.column_config.TextColumn("arm"),
    "formula_discharge": st.column_config.TextColumn("discharged"),
    "formula_charge": st.column_config.TextColumn("charged"),
    "structure_type": st.column_config.TextColumn("from framework"),
    "substitution": st.column_config.TextColumn("substitution"),
    **{f"requested_{p.name}": st.column_config.NumberColumn(f"asked {p.label.lower()}", format="%.2f")
       for p in PROPERTIES},
    **{p.name: st.column_config.NumberColumn(p.axis_title, format=f"%.{electrode_viz.PROPERTY_DECIMALS[p.name]}f")
       for p in PROPERTIES},
    "e_hull": st.column_config.NumberColumn("E_hull (eV/atom)", format="%.3f",
                                            help="discharged phase above the offline hull (table + MP references)"),
    "competing_phases": st.column_config.NumberColumn(
        "competing phases", help="compounds in the candidate's chemical system on the hull: with 0, "
                                 "E_hull = 0 means nothing competes, not that it is stable"),
    "novel": st.column_config.CheckboxColumn("novel", help="no structure match in our table, nor in the Materials "
                                                          "Project table when the request named it (it may still "
                                                          "be a known compound elsewhere)"),
    "seconds": st.column_config.NumberColumn("seconds", format="%.0f"),
}


@st.cache_resource(show_spinner="Loading the electrode table…", max_entries=2)
def load_electrodes(directory: str) -> tuple[pd.DataFrame, PropertyScaler]:
    return load_table(directory), load_scaler(directory)


@st.cache_resource(show_spinner=False, max_entries=2)
def design_jobs(db_path: str) -> DesignJobs:
    # One per app process: designs queue in the server's job runner beside every other long job.
    return DesignJobs.from_environment(DesignStore(db_path), job_runner())


def set_targets_to_medians(table: pd.DataFrame) -> None:
    medians = ion_medians(table, st.session_state["design_ion"])
    for name in PROPERTY_NAMES:
        st.session_state[f"design_{name}"] = float(round(medians[name], 3))


def request_controls(table: pd.DataFrame, scaler: PropertyScaler, novelty_tables=()):
    """The request form; the checked request when it was submitted, else None."""
    st.session_state.setdefault("design_ion", WORKING_IONS[0])
    if any(f"design_{n}" not in st.session_state for n in PROPERTY_NAMES):
        set_targets_to_medians(table)
    counts = table["working_ion"].value_counts()
    ion_column, note_column = st.columns([1, 3], vertical_alignment="bottom")
    ion_column.selectbox("Working ion", WORKING_IONS, key="design_ion",
                         format_func=lambda i: f"{i} ({counts.get(i, 0)} electrodes)",
                         on_change=lambda: set_targets_to_medians(table))
    note_column.caption("Values start at the median electrode of the ion and are limited to the table's range. "
                        "Only the targeted properties steer the design; voltage and gravimetric capacity (and their "
                        "product, gravimetric energy) can be estimated before relaxing.")
    with st.form("design_request"):
        st.multiselect("Properties to target", PROPERTY_NAMES, default=list(DEFAULT_TARGETS), key="design_targets",
                       format_func=lambda n: PROPERTY_BY_NAME[n].label)
        columns = st.columns(3)
        for i, prop in enumerate(PROPERTIES):
            j = scaler.names.index(prop.name)
            columns[i % 3].number_input(prop.axis_title, min_value=float(scaler.low[j]),
                                        max_value=float(scaler.high[j]), key=f"design_{prop.name}",
                                        format=f"%.{max(2, electrode_viz.PROPERTY_DECIMALS[prop.name])}f")
        settings = st.columns(4)
        settings[0].number_input("Verified candidates per arm", 1, MAX_CANDIDATES, value=2, key="design_k",
                                 help="each is a CHGNet relaxation of the discharged and charged structure")
        settings[1].number_input("Proposals per arm", 10, 2000, value=DEFAULT_PROPOSALS, step=50, key="design_proposals")
        settings[2].multiselect("Arms", ARMS, default=list(DEFAULT_ARMS), key="design_arms",
                                help="guided-prerelaxed: composition prior + surrogate pre-rank, then the best 6 "
                                     "re-ranked by a short CHGNet relaxation; guided: without that step; "
                                     "ion-exchange: the baseline, ranked by substitution probability alone")
        settings[3].number_input("Relaxation steps", 10, 500, value=DEFAULT_RELAX_STEPS, key="design_steps")
        submitted = st.form_submit_button("Design", type="primary", icon=":material/science:")
    if not submitted:
        return None
    targets = set(st.session_state["design_targets"])
    given = {n: (float(st.session_state[f"design_{n}"]) if n in targets else None) for n in PROPERTY_NAMES}
    return build_request(table, scaler, st.session_state["design_ion"], given,
                         max_candidates=int(st.session_state["design_k"]),
                         proposals=int(st.session_state["design_proposals"]),
                         arms=tuple(st.session_state["design_arms"]), relax_steps=int(st.session_state["design_steps"]),
                         novelty_tables=novelty_tables)


def describe(design: dict) -> str:
    r = design["request"]
    targets = ", ".join(f"{PROPERTY_BY_NAME[k].label.lower()} {electrode_viz.format_property(k, v)} "
                        f"{PROPERTY_BY_NAME[k].unit}" for k, v in r["targets"].items()) or "the ion's medians"
    also = " · novel vs Materials Project too" if (r.get("extra") or {}).get("novelty_tables") else ""
    return f"{design['id']} · {r['working_ion']}: {targets}{also} · {design['status']}"


@st.fragment(run_every=POLL_S)
def live_progress(jobs: DesignJobs, design_id: str) -> None:
    design = jobs.store.design(design_id)
    if design["status"] not in ACTIVE:
        if st.session_state.get("design_live") == design_id:
            st.session_state["design_live"] = None
            st.rerun()  # the whole page, so the finished design's results appear
        return
    funnels = jobs.store.funnels(design_id)
    job = jobs.job(design_id)
    with st.status(f"Design {design_id}: {design['stage'] or design['status']}", expanded=True):
        if job is not None:
            show_job_state(job)
        for arm, funnel in funnels.items():
            st.write(f"**{arm}**: " + " → ".join(f"{STAGE_LABELS.get(k, k)} {v}" for k, v in funnel["counts"].items()))
        if st.button("Cancel", icon=":material/stop:", key=f"cancel_{design_id}"):
            jobs.cancel(design_id)
            st.toast("Cancelling: the design's worker process is stopped within a second.")


def show_design(store: DesignStore, design_id: str) -> None:
    design = store.design(design_id)
    records = design_records(store, design_id)
    verified = [r for r in records if r["status"] == "verified"]
    funnels = store.funnels(design_id)
    st.subheader(f"Design {design_id}")
    st.caption(describe(design) + (f" — {design['message']}" if design["message"] else ""))
    if design["status"] == "failed":
        st.error(f"The design job failed: {design['message']}")
    if funnels:
        chart, targets = st.columns(2)
        chart.plotly_chart(viz.funnel_figure(funnels, STAGE_LABELS), key=f"funnel_{design_id}")
        targets.plotly_chart(viz.target_figure(verified, design["request"]["targets"]), key=f"targets_{design_id}")
    if verified:
        frame = records_frame(verified)
        shown = [c for c in RESULT_COLUMNS if c in frame.columns]
        st.markdown("**Verified candidates** — requested vs computed (CHGNet-relaxed pair, pymatgen "
                    "`InsertionElectrode`). *Novel* means absent from our table, not necessarily unknown.")
        st.dataframe(frame[shown], hide_index=True, column_config=RESULT_COLUMNS)
    else:
        st.info("No verified candidate in this design (yet).")
    failed = [r for r in records if r["status"] not in ("verified",)]
    if failed:
        with st.expander(f"{len(failed)} relaxed candidate(s) not verified, with the reason"):
            st.dataframe(pd.DataFrame([{k: r[k] for k in ("id", "arm", "formula_discharge", "status", "reason")}
                                       for r in failed]), hide_index=True)
    downloads = st.columns(2)
    downloads[0].download_button("Candidates (CSV)", csv_bytes(records), file_name=f"design_{design_id}.csv",
                                 mime="text/csv", icon=":material/download:", on_click="ignore", key=f"csv_{design_id}")
    if verified:
        downloads[1].download_button("Structures (CIF + POSCAR, zip)", structures_zip(store, design_id),
                                     file_name=f"design_{design_id}_structures.zip", mime="application/zip",
                                     icon=":material/download:", on_click="ignore", key=f"zip_{design_id}")
        show_candidate(store, design_id, verified)


def show_candidate(store: DesignStore, design_id: str, verified: list[dict]) -> None:
    from pymatgen.core import Structure

    ids = [r["id"] for r in verified]
    chosen = st.selectbox("Candidate", ids, key=f"candidate_{design_id}",
                          format_func=lambda i: f"{next(r['formula_discharge'] for r in verified if r['id'] == i)} · {i}")
    state = st.radio("State", ["discharge", "charge"], horizontal=True, key=f"state_{design_id}",
                     format_func=lambda s: {"discharge": "Discharged", "charge": "Charged"}[s])
    candidate = next(c for c in store.candidates(design_id, status="verified") if candidate_id(design_id, c) == chosen)
    structure = Structure.from_dict(candidate["result"][f"structure_{state}"])
    show_structure(structure, cache_key=f"{chosen}:{state}", file_stem=f"{chosen.replace(':', '_')}_{state}",
                   key=f"view_{design_id}")


def show_evaluation() -> None:
    metrics = load_metrics()
    if metrics is None:
        return
    complete = "" if metrics.get("complete") else " (partial)"
    with st.expander(f"How well does it aim? Evaluation over {metrics['n_requests']} of "
                     f"{metrics['n_requests_planned']} fixed requests{complete}"):
        st.dataframe(metrics_table(metrics), hide_index=True)
        st.caption("Requests: voltage and gravimetric capacity of held-out test electrodes and midpoints between "
                   "them; `python -m battgen eval design` writes assets/design/metrics.json. The ion-exchange arm "
                   "is the baseline: substitution probability alone, no knowledge of the request.")
        yields = load_metrics(filename=YIELD_FILENAME)
        if yields is not None:
            st.markdown(f"**Proposal yield** ({yields['n_requests']} requests, {yields['settings']['proposals']} "
                        "proposals each, every novel survivor relaxed): how many proposals end as novel verified "
                        "electrodes. Above, only the best few of 300 are relaxed, so that share is capped by the "
                        "budget.")
            st.dataframe(yield_table(yields), hide_index=True)
            st.caption(f"`{YIELD_COMMAND}`")


def main() -> None:
    st.title("Design")
    st.markdown("Ask for an electrode and get **new** structures: our frameworks and pymatgen's AFLOW prototypes "
                "are ion-exchanged and substituted, filtered (distances, charge neutrality, uniqueness, novelty), "
                "pre-ranked for the request, and the best few are relaxed with CHGNet in both states so their "
                "voltage and capacities are *computed*, next to what was asked.")
    try:
        table, scaler = load_electrodes(str(table_directory()))
    except ValueError as exc:
        st.error(str(exc))
        return
    db_path = str(default_path())
    try:
        jobs = design_jobs(db_path)
    except ValueError as exc:
        st.error(str(exc))
        return
    store = jobs.store
    # Designs always start from BattGen's frameworks; a fetched MP table only widens "novel".
    source, mp_dir, _ = chosen_table(
        "design_table_source", label="Novel against",
        help="BattGen computed: a candidate is novel when no structure of BattGen's table matches it. Materials "
             "Project: it must match none of the fetched Materials Project electrodes either. " + TABLE_HELP)
    novelty_tables = (str(mp_dir),) if source != TABLE_SOURCES[0] else ()
    if novelty_tables:
        st.caption("Novelty is checked against BattGen's table **and** the Materials Project table; proposals "
                   "still come from BattGen's frameworks and pymatgen's prototypes.")
    try:
        request = request_controls(table, scaler, novelty_tables)
    except ValueError as exc:
        st.error(str(exc))
        request = None
    if request is not None:
        design_id = jobs.submit(request)
        st.session_state["design_live"] = design_id
        st.session_state["design_shown"] = design_id
    live = st.session_state.get("design_live")
    if live:
        live_progress(jobs, live)

    show_evaluation()
    designs = store.list_designs()
    if not designs:
        st.info("No designs yet: set a request above and press Design.")
        return
    st.divider()
    ids = [d["id"] for d in designs]
    by_id = {d["id"]: d for d in designs}
    shown = st.session_state.get("design_shown")
    index = ids.index(shown) if shown in ids else 0
    chosen = st.selectbox(f"Past designs ({len(designs)}, stored in {paths.for_display(db_path)})", ids, index=index,
                          format_func=lambda i: describe(by_id[i]) + f" · {by_id[i]['verified']} verified")
    show_design(store, chosen)
    if len(designs) > 1:
        with st.expander("Compare designs"):
            picked = st.multiselect("Designs", ids, default=ids[:2], format_func=lambda i: describe(by_id[i]))
            rows = [r for i in picked for r in design_records(store, i) if r["status"] == "verified"]
            if rows:
                frame = records_frame(rows)
                st.dataframe(frame[[c for c in RESULT_COLUMNS if c in frame.columns]], hide_index=True,
                             column_config=RESULT_COLUMNS)


main()
