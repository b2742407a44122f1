"""What runs inside a job runner's worker process: the job itself, and its progress reports.

Every job goes through :func:`execute`, so a failure comes back as one message (a ``ValueError``'s
own text, otherwise the exception's type and text, with the traceback in the server's log) and
never as a traceback on a page. Long work calls :func:`report` as it goes; outside a job (a small
run inline in the server, a test) it does nothing, so the same function serves both.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

PROGRESS_TOPIC = "battgen-job-progress"
# One job at a time per worker process (one thread per worker), so one slot is enough.
_current_job: str | None = None


def report(**payload: Any) -> None:
    """Send ``payload`` (plain numbers, strings, bytes, lists) to the runner as the job's progress."""
    if _current_job is None:
        return
    from distributed import get_worker

    get_worker().log_event(PROGRESS_TOPIC, {"job": _current_job, **payload})


def execute(job_id: str, fn: Callable, args: tuple, kwargs: dict) -> tuple[str, Any]:
    """``("ok", fn(*args, **kwargs))`` or ``("error", message)``."""
    global _current_job
    from battgen.runtime import configure_threads

    configure_threads()  # the server's policy is in the inherited environment; torch may be loaded
    _current_job = job_id
    try:
        return "ok", fn(*args, **kwargs)
    except ValueError as err:  # the library's "this input cannot be used" errors say it all
        return "error", str(err)
    except Exception as err:
        traceback.print_exc()
        return "error", f"{type(err).__name__}: {err}"
    finally:
        _current_job = None
