"""The router and home page, run in-process by Streamlit's AppTest (no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from battgen.artifacts import list_artifacts, write_metadata, write_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")
# The first run imports torch for the compute panel; 2 slow cores need headroom.
APP_TIMEOUT_S = 120


@pytest.fixture
def artifact_root(tmp_path, monkeypatch):
    """A results folder with one checkpoint and one dataset, and the app pointed at it."""
    checkpoint = tmp_path / "checkpoints" / "sei_surrogate"
    write_metadata(checkpoint, command="python -m battgen train sei-surrogate", config={"epochs": 4}, seed=11,
                   wall_time_s=61.0)
    write_metrics(checkpoint, {"test": {"mae_nm": 0.731}})
    dataset = tmp_path / "assets" / "sei"
    write_metadata(dataset, command="python -m battgen sei build-dataset", config={"n": 8}, seed=3,
                   wall_time_s=2.5)
    write_metrics(dataset, {"n_samples": 8})
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(tmp_path))
    return tmp_path


def run_home() -> AppTest:
    # Caches outlive an AppTest within one process; each test sets its own environment.
    st.cache_data.clear()
    app = AppTest.from_file(APP, default_timeout=APP_TIMEOUT_S)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_home_runs_and_shows_its_sections():
    app = run_home()
    assert [t.value for t in app.title] == ["BattGen"]
    headers = [h.value for h in app.subheader]
    assert headers == ["Compute", "Checkpoints", "Datasets"]
    metrics = {m.label: m.value for m in app.metric}
    assert set(metrics) == {"Compute device", "CUDA GPUs", "CPU cores", "Torch threads"}


# The home page's promise to the user: a capability is offered as a link once its page
# file exists, and marked "coming" until then.
CAPABILITY_PAGES = {
    "Screening": "pages/candidate_screening.py",
    "AFM translation": "pages/afm_translation.py",
    "SEI explorer": "pages/sei_explorer.py",
    "Structures": "pages/structure_browser.py",
}


def test_missing_pages_are_marked_coming_and_present_ones_are_not():
    app = run_home()
    markdown = "\n".join(m.value for m in app.markdown)
    for title, page_file in CAPABILITY_PAGES.items():
        marked_coming = f"**{title}** :gray-badge[coming]" in markdown
        assert marked_coming != (REPO_ROOT / page_file).is_file(), (title, page_file)


def test_home_lists_artifacts_with_metrics_and_provenance(artifact_root):
    # The data layer finds what write_metadata wrote...
    found = {a.name: a for a in list_artifacts(artifact_root)}
    assert set(found) == {"sei_surrogate", "assets/sei"}
    assert found["sei_surrogate"].metrics == {"test": {"mae_nm": 0.731}}
    assert found["sei_surrogate"].metadata["seed"] == 11

    # ...and the home page shows it: one expander per artifact, metrics and provenance inside.
    app = run_home()
    labels = [e.label for e in app.expander]
    assert len(labels) == 2
    assert labels[0].startswith("**sei_surrogate**") and labels[1].startswith("**assets/sei**")

    metric_tables = [df.value for df in app.dataframe]
    checkpoint_metrics = dict(zip(metric_tables[0]["metric"], metric_tables[0]["value"]))
    assert checkpoint_metrics == {"test.mae_nm": "0.731"}

    provenance = dict(zip(app.table[0].value["field"], app.table[0].value["value"]))
    assert provenance["command"] == "python -m battgen train sei-surrogate"
    assert provenance["seed"] == "11"
    assert provenance["wall time"] == "1.0 min"
    assert not app.info  # the "no checkpoints yet" hints are gone


def test_bad_artifact_root_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("BATTGEN_ARTIFACT_ROOT", str(tmp_path / "does-not-exist"))
    app = run_home()
    assert any("not a directory" in e.value for e in app.error)


def test_invalid_device_setting_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv("BATTGEN_DEVICE", "gpu0")
    app = run_home()
    assert any("BATTGEN_DEVICE" in e.value for e in app.error)


def test_a_page_file_that_exists_is_linked_and_routed(tmp_path):
    """Adding pages/<name>.py is all it takes for Home to link to it and the router to serve it."""
    import shutil

    shutil.copy(APP, tmp_path / "app.py")
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "structure_browser.py").write_text(
        "import streamlit as st\nst.header('Structures page body')\n"
    )
    st.cache_data.clear()
    app = AppTest.from_file(str(tmp_path / "app.py"), default_timeout=APP_TIMEOUT_S).run()
    assert not app.exception, [e.value for e in app.exception]

    markdown = "\n".join(m.value for m in app.markdown)
    assert "**Structures** :gray-badge[coming]" not in markdown
    assert "**SEI explorer** :gray-badge[coming]" in markdown
    links = app.get("page_link")
    assert [link.proto.label for link in links] == ["Structures"]

    app.switch_page("pages/structure_browser.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert [h.value for h in app.header] == ["Structures page body"]


def test_every_page_url_differs_from_its_file_name():
    """Streamlit also serves pages/<stem>.py at /<stem> without the router (no Home in the
    sidebar); a URL that no file answers to keeps deep links and reloads on the router."""
    source = Path(APP).read_text()
    for page_file in CAPABILITY_PAGES.values():
        assert f'"{page_file}"' in source, f"{page_file} is not a capability of app.py"
        stem = Path(page_file).stem
        assert "_" in stem, f"{page_file}: page files need an underscore so /<url> differs from /<stem>"
