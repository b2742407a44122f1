"""The crystal-structure panel every page uses: 3D view, lattice facts, CIF/POSCAR downloads."""

from __future__ import annotations

import streamlit as st

from battgen.data.evaluate import structure_to_text
from battgen.viz import structure3d

VIEWER_HEIGHT = 440


@st.cache_data(show_spinner=False, max_entries=256)
def structure_outputs(cache_key: str, _structure, style: str) -> dict:
    """Viewer HTML, lattice facts and CIF/POSCAR text of a structure, computed once per ``cache_key``."""
    return {
        "html": structure3d.structure_view_html(_structure, height=VIEWER_HEIGHT, style=style),
        "facts": structure3d.lattice_facts(_structure),
        "cif": structure_to_text(_structure, "cif"),
        "poscar": structure_to_text(_structure, "poscar"),
    }


def show_structure(structure, *, cache_key: str, file_stem: str, key: str) -> None:
    """3D view, lattice facts and CIF/POSCAR downloads of one structure.

    ``cache_key`` must change whenever ``structure`` does (Streamlit cannot hash a Structure);
    ``key`` prefixes the widget keys, so several panels can share a page.
    """
    style = st.session_state.get(f"{key}_style", structure3d.STYLES[0])
    outputs = structure_outputs(f"{cache_key}:{style}", structure, style)
    view, facts = st.columns([3, 2])
    with view:
        problem = structure3d.viewer_script_problem()
        if problem:
            st.warning(problem)
        else:
            st.iframe(outputs["html"], height=VIEWER_HEIGHT)
        st.caption("Drag to rotate, scroll to zoom; the box is the unit cell, atoms on its faces are "
                   "shown on both sides.")
    with facts:
        st.table({"": list(outputs["facts"]), "value": list(outputs["facts"].values())}, hide_index=True)
        st.radio("Style", structure3d.STYLES, horizontal=True, key=f"{key}_style")
        cif, poscar = st.columns(2)
        cif.download_button("CIF", outputs["cif"], file_name=f"{file_stem}.cif", mime="chemical/x-cif",
                            icon=":material/download:", on_click="ignore", key=f"{key}_cif")
        poscar.download_button("POSCAR", outputs["poscar"], file_name=f"{file_stem}.vasp", mime="text/plain",
                               icon=":material/download:", on_click="ignore", key=f"{key}_poscar")
