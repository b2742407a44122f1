"""Browser tier: the app served by Streamlit, driven by headless Debian chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.browser.driver import running_streamlit

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # Every test in this folder needs chromium and a served app, so it carries the marker
    # that `make test-fast` deselects, whether or not its author remembered to add it.
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def streamlit_app() -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT) of the app served from the repo checkout.

    One server for the whole session: starting it and warming its caches (torch import,
    model loads) costs more than most browser tests themselves.
    """
    with running_streamlit("app.py") as base_url:
        yield base_url
