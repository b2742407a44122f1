"""Which electrode table the pages read: BattGen's computed one, or one fetched from the Materials Project.

One choice per browser session, made on any page and kept on the others (Streamlit forgets a
widget's value once a page without it has run, so the choice lives under its own key and each
page's radio starts from it). The Materials Project table exists only after a fetch
(Structures page panel or ``python -m battgen data fetch-mp``); a page asked for it before then
says so in one line and goes on with BattGen's table, so nothing a person set is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import streamlit as st

from battgen import paths
from battgen.data.mp_fetch import local_table_dir
from battgen.data.table import load_table

TABLE_SOURCES = ("BattGen computed", "Materials Project")
CHOICE_KEY = "electrode_table_choice"  # the session's choice, outliving every page's radio
TABLE_FILE = "electrodes.parquet"
TABLE_HELP = ("BattGen's own CHGNet-computed electrodes, or the Materials Project electrodes fetched with your API "
              "key (Structures page, or `python -m battgen data fetch-mp`).")


def table_directory(source: str = TABLE_SOURCES[0]) -> Path:
    return paths.asset_dir(paths.ELECTRODES) if source == TABLE_SOURCES[0] else local_table_dir()


def table_version(directory: Path, filename: str = TABLE_FILE) -> int:
    """Modification time of the table file: part of every cache key, so a rebuilt table is re-read."""
    try:
        return (directory / filename).stat().st_mtime_ns
    except OSError:
        return 0


def has_table(source: str) -> bool:
    return (table_directory(source) / TABLE_FILE).is_file()


# cache_resource, not cache_data: the table is only read, never modified, and cache_data would
# copy it (every structure as JSON) on each rerun.
@st.cache_resource(show_spinner="Loading the electrode table…", max_entries=4)
def load_electrodes(directory: str, version: int) -> pd.DataFrame:
    return load_table(directory)


def use_source(source: str) -> None:
    """Make ``source`` the session's table (e.g. right after a fetch), for every page's next run."""
    st.session_state[CHOICE_KEY] = source


def choose_source(widget_key: str, *, label: str = "Electrode table", help: str = TABLE_HELP,
                  on_change: Callable[[], None] | None = None) -> str:
    """A radio between the two tables, starting from (and updating) the session's choice."""
    if st.session_state.get(widget_key) != st.session_state.get(CHOICE_KEY, TABLE_SOURCES[0]):
        st.session_state[widget_key] = st.session_state.get(CHOICE_KEY, TABLE_SOURCES[0])

    def remember() -> None:
        use_source(st.session_state[widget_key])
        if on_change is not None:
            on_change()

    return st.radio(label, TABLE_SOURCES, horizontal=True, key=widget_key, on_change=remember, help=help)


def chosen_table(widget_key: str, *, label: str = "Electrode table", help: str = TABLE_HELP,
                 on_change: Callable[[], None] | None = None) -> tuple[str, Path, pd.DataFrame]:
    """(source, directory, table) of the session's choice, with its radio; BattGen's table, with one
    line saying why, when the Materials Project one has not been fetched or cannot be read."""
    source = choose_source(widget_key, label=label, help=help, on_change=on_change)
    if source != TABLE_SOURCES[0]:
        directory = table_directory(source)
        if not has_table(source):
            st.info("No Materials Project table here yet: paste your API key on the Structures page and fetch it "
                    "(or run `python -m battgen data fetch-mp`). Showing BattGen's computed table.")
        else:
            try:
                return source, directory, load_electrodes(str(directory), table_version(directory))
            except ValueError as exc:
                st.error(f"The Materials Project table in `{paths.for_display(directory)}` cannot be read: {exc} "
                         "Showing BattGen's computed table.")
    directory = table_directory(TABLE_SOURCES[0])
    return TABLE_SOURCES[0], directory, load_electrodes(str(directory), table_version(directory))
