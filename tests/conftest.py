"""Shared fixtures. Browser helpers (screenshot, dump_dom, open_page) are in tests/browser.py."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

from tests.browser import running_streamlit


@pytest.fixture(scope="session")
def streamlit_app() -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT) of ``streamlit run app.py`` serving the repo checkout.

    One server for the whole session: starting it and warming its caches (torch import,
    model loads) costs more than most browser tests themselves.
    """
    with running_streamlit("app.py") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are bound by per-op overhead; a second torch thread only adds contention on
    shared CI cores. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
