"""Fixtures shared by the page tests (Streamlit AppTest)."""

from __future__ import annotations

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage


@pytest.fixture()
def downloads(monkeypatch) -> dict[str, bytes]:
    """Bytes behind every download button of the last run, by its URL.

    AppTest keeps download payloads in an in-memory media store it creates per run and then
    drops; recording the stores lets a test read what a user would download.
    """
    stores: list[MemoryMediaFileStorage] = []
    original_init = MemoryMediaFileStorage.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        stores.append(self)

    monkeypatch.setattr(MemoryMediaFileStorage, "__init__", recording_init)

    class Payloads(dict):
        def of(self, button) -> bytes:
            url = button.proto.url
            for store in reversed(stores):
                try:
                    return bytes(store.get_file(url.rsplit("/", 1)[-1]).content)
                except Exception:  # not in this run's store
                    continue
            raise AssertionError(f"no payload for {url}")

    return Payloads()
