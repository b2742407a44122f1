"""The pages' owner check asks Streamlit's runtime whether a browser session is still connected,
and the runner cancels the job of one that is not (the runtime stands in for a server here)."""

from __future__ import annotations

import time

from streamlit.runtime import Runtime

from battgen.jobs import CANCELLED, RUNNING, JobRunner
from battgen.jobs.runner import OWNER_GONE
from battgen.ui.jobs import session_alive


class Sessions:
    """What a server's runtime answers: the ids of the sessions connected now."""

    def __init__(self, *connected: str):
        self.connected = set(connected)

    def is_active_session(self, session_id: str) -> bool:
        return session_id in self.connected


def test_without_a_server_nobody_leaves():
    assert not Runtime.exists()
    assert session_alive("any session")


def test_a_disconnected_session_loses_its_job(monkeypatch):
    sessions = Sessions("tab-1", "tab-2")
    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: sessions))
    assert session_alive("tab-1") and not session_alive("tab-3")
    runner = JobRunner(workers=1, owner_alive=session_alive, owner_grace_s=0.5, poll_s=0.05)
    try:
        job_id = runner.submit("kmc", time.sleep, 60, owner="tab-1")
        deadline = time.monotonic() + 30
        while runner.status(job_id).status != RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sessions.connected.discard("tab-1")  # the browser tab is closed
        view = runner.wait(job_id, timeout=30)
        assert view.status == CANCELLED and view.message == OWNER_GONE
    finally:
        runner.close()
