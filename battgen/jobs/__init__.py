"""The app's long work (KMC, CHGNet evaluation, AFM simulation, design) in one bounded job runner."""

from battgen.jobs.kinds import KINDS, JobKind, timeout_for
from battgen.jobs.runner import (
    ACTIVE,
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    TIMED_OUT,
    JobRunner,
    JobView,
)
from battgen.jobs.worker import report

__all__ = ["ACTIVE", "CANCELLED", "DONE", "FAILED", "KINDS", "QUEUED", "RUNNING", "TIMED_OUT", "JobKind",
           "JobRunner", "JobView", "report", "timeout_for"]
