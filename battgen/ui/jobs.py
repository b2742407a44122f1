"""The job runner as pages see it: one per server process, jobs owned by the browser session,
and a panel that shows a job while it waits or runs (queue position, elapsed time, progress,
Cancel) and hands the ended job back to the page once.
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from battgen.jobs import JobRunner, JobView
from battgen.jobs.runner import format_seconds

POLL_S = 1.0


def session_alive(session_id: str) -> bool:
    """Whether the browser session is still connected to this server."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():  # AppTest and bare scripts: no server to ask, nobody can leave
        return True
    return Runtime.instance().is_active_session(session_id)


# One per server process, created by the first page that needs it; it outlives reruns and sessions.
@st.cache_resource(show_spinner=False)
def job_runner() -> JobRunner:
    return JobRunner(owner_alive=session_alive)


def session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return None if ctx is None else ctx.session_id


def start(state_key: str, kind: str, fn: Callable, *args: Any, **kwargs: Any) -> str:
    """Queue a job for this session under ``state_key`` (a job already there is cancelled)."""
    runner = job_runner()
    previous = st.session_state.get(state_key)
    if previous is not None:
        runner.cancel(previous, "replaced by a new request")
    job_id = runner.submit(kind, fn, *args, owner=session_id(), **kwargs)
    st.session_state[state_key] = job_id
    return job_id


def follow(state_key: str, show_progress: Callable[[dict], None] | None = None) -> JobView | None:
    """The job under ``state_key``: shown while it waits or runs (None); its view once it has ended.

    The ended view is returned on one run only (the runner then forgets it): keep what it brings.
    """
    job_id = st.session_state.get(state_key)
    if job_id is None:
        return None
    runner = job_runner()
    view = runner.status(job_id)
    if view is None:
        del st.session_state[state_key]
        st.warning("The job is no longer known to the server (it restarted, or the job ended long ago). "
                   "Start it again.")
        return None
    if view.active:
        _panel(job_id, show_progress)
        return None
    del st.session_state[state_key]
    runner.forget(job_id)
    return view


def show_job_state(view: JobView) -> None:
    """One line: the job's place in the queue, or how long it has run of its time limit."""
    if view.position is not None:
        st.write(f"Waiting for a free worker: **position {view.position} of {view.queued}** in the queue "
                 f"({format_seconds(view.waited_s)} so far; {job_runner().workers} job(s) run at a time).")
    else:
        st.write(f"Running for {format_seconds(view.running_s)} (time limit {format_seconds(view.timeout_s)}).")


@st.fragment(run_every=POLL_S)
def _panel(job_id: str, show_progress: Callable[[dict], None] | None) -> None:
    runner = job_runner()
    view = runner.status(job_id)
    if view is None or not view.active:
        st.rerun()  # the whole page, where follow() hands the ended job over
    with st.status(f"{view.label[:1].upper()}{view.label[1:]}: {view.status}", expanded=True, state="running"):
        show_job_state(view)
        if view.position is None:
            progress = view.progress
            if progress.get("fraction") is not None:
                st.progress(min(max(float(progress["fraction"]), 0.0), 1.0), text=progress.get("message", ""))
            elif progress.get("message"):
                st.write(progress["message"])
            if show_progress is not None:
                show_progress(progress)
        if st.button("Cancel", icon=":material/stop:", key=f"job_cancel_{job_id}"):
            runner.cancel(job_id)
            st.rerun()
