"""Rerun an AppTest page until the job it started has ended, as the page's polling panel would."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest


def run_until_job_ends(app: AppTest, state_key: str, timeout: float = 120.0) -> AppTest:
    """Rerun ``app`` until ``state_key`` (where the page keeps its job id) is gone; the last run."""
    deadline = time.monotonic() + timeout
    while state_key in app.session_state:
        assert time.monotonic() < deadline, f"the job under {state_key!r} did not end in {timeout} s"
        assert not app.exception, [e.value for e in app.exception]
        time.sleep(0.5)
        app.run()
    return app
