"""BattGen web app: router and home page. Run with ``make app`` (or ``streamlit run app.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from battgen.runtime import configure_threads, thread_policy

# First, before anything imports torch: its OpenMP threads would otherwise spin against every
# other job on the server's cores (see battgen/runtime.py).
configure_threads()

import streamlit as st  # noqa: E402

from battgen import artifacts, paths  # noqa: E402

# Page files are looked up beside this file (a copy of the app elsewhere brings its pages).
APP_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Capability:
    page_path: str  # relative to the repo root
    title: str
    icon: str
    summary: str

    @property
    def url_path(self) -> str:
        # Deliberately not the file name: Streamlit also maps pages/<name>.py to /<name> on its
        # own, and a deep link (bookmark, reload) to that path runs the page file without this
        # router. A path no file answers to always comes through st.navigation.
        return Path(self.page_path).stem.replace("_", "-")

    @property
    def available(self) -> bool:
        return (APP_DIR / self.page_path).is_file()


# Adding a page: write the file under pages/ and it appears here once it exists.
CAPABILITIES = [
    Capability(
        "pages/candidate_screening.py",
        "Screening",
        ":material/filter_alt:",
        "set target voltage, capacity, energy, volume change and working ion; a latent diffusion model generates descriptors and ranks real candidate materials",
    ),
    Capability(
        "pages/afm_translation.py",
        "AFM translation",
        ":material/blur_on:",
        "translate a 3D AFM force-map stack into height map, van der Waals spheres, atomic disks and an element-type map, and predict the composition",
    ),
    Capability(
        "pages/sei_explorer.py",
        "SEI explorer",
        ":material/layers:",
        "simulate SEI growth live with kinetic Monte Carlo for chosen reaction barriers, and walk the latent space of a property-regularised VAE",
    ),
    Capability(
        "pages/structure_browser.py",
        "Structures",
        ":material/deployed_code:",
        "browse the electrode-materials database: filters, 3D structures, voltage profiles, CIF/POSCAR exports",
    ),
    Capability(
        "pages/electrode_design.py",
        "Design",
        ":material/science:",
        "ask for an electrode and get new structures: substituted frameworks, filtered, pre-ranked and verified by CHGNet relaxation, with E_hull and downloads",
    ),
]

ARTIFACT_SCAN_TTL_S = 30  # short: a training run finishing should show up without a restart


@st.cache_data(ttl=ARTIFACT_SCAN_TTL_S, show_spinner=False)
def scan_artifacts(root: str) -> tuple[list[artifacts.ArtifactInfo], str | None]:
    try:
        return artifacts.list_artifacts(Path(root)), None
    except ValueError as exc:
        return [], str(exc)


@st.cache_data(ttl=300, show_spinner=False)
def compute_summary() -> tuple[dict | None, str | None]:
    # Imported here, not at module level: torch takes seconds to import and the router
    # should not wait for it before drawing the sidebar.
    from battgen.device import device_summary

    try:
        return device_summary(), None
    except ValueError as exc:  # e.g. BATTGEN_DEVICE=cuda on a CPU-only machine
        return None, str(exc)


def render_capabilities() -> None:
    columns = st.columns(len(CAPABILITIES))
    for column, capability in zip(columns, CAPABILITIES):
        with column.container(border=True):
            if capability.available:
                st.page_link(capability.page_path, label=capability.title, icon=capability.icon)
            else:
                st.markdown(f"{capability.icon} **{capability.title}** :gray-badge[coming]")
            st.caption(capability.summary[0].upper() + capability.summary[1:] + ".")


def render_compute_panel() -> None:
    st.subheader("Compute")
    summary, error = compute_summary()
    if error:
        st.error(f"Device setting is invalid: {error}")
        return
    assert summary is not None
    columns = st.columns(4)
    columns[0].metric("Compute device", summary["device_name"], border=True)
    columns[1].metric("CUDA GPUs", summary["cuda_device_count"], border=True)
    columns[2].metric("CPU cores", summary["cpu_count"], border=True)
    columns[3].metric("Torch threads", summary["torch_threads"], border=True)
    st.caption(
        f"PyTorch {summary['torch_version']}. Models run on `{summary['device']}`; "
        "set the environment variable BATTGEN_DEVICE to `cpu` or `cuda` to choose. "
        f"Thread policy: {summary['torch_threads']} torch thread(s) per process, OpenMP waiting "
        f"`{thread_policy()['omp_wait_policy'] or 'default'}`, so jobs on the other cores do not stall the pages "
        "(BATTGEN_THREADS to change)."
    )


def render_artifact_details(artifact: artifacts.ArtifactInfo) -> None:
    created = artifacts.format_created((artifact.metadata or {}).get("created_utc")) or "date unknown"
    label = f"**{artifact.name}** · {artifacts.format_size(artifact.size_bytes)} · {created}"
    with st.expander(label, icon=":material/warning:" if artifact.problems else None):
        for problem in artifact.problems:
            st.warning(problem)
        metrics_tab, provenance_tab, raw_tab = st.tabs(["Metrics", "Provenance", "metadata.json"])
        with metrics_tab:
            flat_metrics = artifacts.flatten_metrics(artifact.metrics)
            if flat_metrics:
                st.dataframe(
                    [{"metric": k, "value": artifacts.format_metric_value(v)} for k, v in flat_metrics.items()],
                    hide_index=True,
                )
            else:
                st.caption("No metrics.json for this artifact.")
        with provenance_tab:
            if artifact.metadata:
                # A static table wraps long values (versions, commands) instead of clipping them.
                st.table(
                    {
                        "field": list(artifact.provenance),
                        "value": [artifacts.format_metric_value(v) for v in artifact.provenance.values()],
                    },
                    hide_index=True,
                )
            else:
                st.caption("No provenance recorded.")
        with raw_tab:
            st.json(artifact.metadata or {}, expanded=False)
        st.caption(f"Path: `{paths.for_display(artifact.path)}`")


def render_artifact_section(title: str, items: list[artifacts.ArtifactInfo], empty_hint: str) -> None:
    st.subheader(title)
    if not items:
        st.info(empty_hint)
        return
    for artifact in items:
        render_artifact_details(artifact)


def home() -> None:
    st.title("BattGen")
    st.markdown(
        "Generative deep learning for battery materials. BattGen brings four tools together: "
        + ", ".join(f"**{c.title}**{'' if c.available else ' (coming)'}" for c in CAPABILITIES)
        + ". Every dataset and model listed below records how it was made (command, inputs, "
        "seed, code and package versions) and how well it scores, so a result can be traced "
        "back to exactly what produced it."
    )
    render_capabilities()
    render_compute_panel()

    found, error = scan_artifacts(str(paths.artifact_root()))
    if error:
        st.error(error)
    left, right = st.columns(2, gap="large")
    with left:
        render_artifact_section(
            "Checkpoints",
            [a for a in found if a.kind == "checkpoint"],
            "No trained models in checkpoints/ yet. Train one with `python -m battgen train --help`.",
        )
    with right:
        render_artifact_section(
            "Datasets",
            [a for a in found if a.kind == "dataset"],
            "No datasets with a metadata.json under assets/ or data/ yet. "
            "Build one with `python -m battgen sei --help`.",
        )


def main() -> None:
    st.set_page_config(page_title="BattGen", layout="wide", page_icon=str(paths.FAVICON))
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    pages += [
        st.Page(c.page_path, title=c.title, icon=c.icon, url_path=c.url_path)
        for c in CAPABILITIES if c.available
    ]
    st.navigation(pages).run()


main()
