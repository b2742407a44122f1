"""Malformed structure uploads through both pages that take one, driven with Streamlit's AppTest.

Two upload surfaces read a structure: Structures → "Evaluate my electrode" and AFM translation →
"Simulate from a structure". Every case below must end in exactly one ``st.error`` and no
exception, and the same session must then accept a good file: a hostile upload must not leave a
page wedged. The cases (tests/structure_files.py) are generated once and replayed through one AppTest session
per surface, so the suite pays each page's start-up once.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from tests.structure_files import CASES, EVALUATION_ONLY, GOOD_POSCAR

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240


@contextlib.contextmanager
def afm_page_without_checkpoints(tmp_path_factory) -> Iterator[AppTest]:
    """The AFM page, run once, over an artifact root holding only the electrode table."""
    root = tmp_path_factory.mktemp("afm_root_without_checkpoints")
    shutil.copytree(REPO / "assets" / "electrodes", root / "assets" / "electrodes")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATTGEN_ARTIFACT_ROOT", str(root))
        app = AppTest.from_file(str(REPO / "pages" / "afm_translation.py"), default_timeout=TIMEOUT_S).run()
        assert not app.exception, [e.value for e in app.exception]
        yield app


@pytest.fixture(scope="module")
def structures_page():
    app = AppTest.from_file(str(REPO / "pages" / "structure_browser.py"), default_timeout=TIMEOUT_S).run()
    assert not app.exception, [e.value for e in app.exception]
    app.selectbox(key="upload_ion").set_value("Li")
    return app.run()


@pytest.fixture(scope="module")
def afm_simulate_page(tmp_path_factory):
    # Without checkpoints or examples the AFM page opens on "Simulate from a structure".
    with afm_page_without_checkpoints(tmp_path_factory) as app:
        assert app.radio(key="afm_source").value == "Simulate from a structure"
        yield app


SURFACES = {"structures": ("structures_page", "upload_file", "Evaluate"),
            "afm-simulate": ("afm_simulate_page", "afm_structure_upload", "Simulate")}


def upload(app: AppTest, key: str, name: str, data: bytes) -> AppTest:
    app.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    return app.run()


def test_the_case_list_is_large_enough():
    assert len(CASES) >= 60, len(CASES)
    assert len({case for case, _, _ in CASES}) == len(CASES)


# The AFM page's uploader calls the same reader as the Structures page: its replay is the second
# half of the suite's time, so `make test-fast` leaves it out.
@pytest.mark.parametrize("surface", ["structures", pytest.param("afm-simulate", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case,name,data", CASES, ids=[case for case, _, _ in CASES])
def test_a_hostile_structure_gets_one_clear_error_and_the_session_reads_the_next(request, surface, case, name, data):
    fixture, key, button = SURFACES[surface]
    app = request.getfixturevalue(fixture)
    upload(app, key, name, data)
    assert not app.exception, [e.value for e in app.exception]
    if surface == "afm-simulate" and case in EVALUATION_ONLY:
        assert not app.error and [b for b in app.button if b.label == button], [e.value for e in app.error]
        return
    errors = [e.value for e in app.error]
    assert len(errors) == 1, errors
    assert "Traceback" not in errors[0] and len(errors[0]) < 600, errors[0]
    assert not [b for b in app.button if b.label == button]
    upload(app, key, *GOOD_POSCAR)
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert [b for b in app.button if b.label == button]
