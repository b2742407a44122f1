"""The kinds of long work the app hands to the job runner, each with its own time limit.

A limit is per job and counts from the moment the job starts running (time spent queued does not
count). ``BATTGEN_JOB_TIMEOUT_<KIND>`` (seconds, e.g. ``BATTGEN_JOB_TIMEOUT_EVALUATE=600``)
overrides a default; it is read at every submission, so a running server picks up a change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TIMEOUT_ENV_PREFIX = "BATTGEN_JOB_TIMEOUT_"


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str  # how a page names it: "The {label} ..."
    timeout_s: float
    timeout_hint: str = ""  # what a person can do about a job that ran out of time

    @property
    def timeout_env_var(self) -> str:
        return TIMEOUT_ENV_PREFIX + self.name.upper()


# Defaults, generous against what the pages' runs take on 2 cores: a default 50×50 KMC about
# 1.5 s (benchmarks/bench_jobs.py); a 64-atom CHGNet evaluation one to two minutes
# (battgen/data/evaluate.py), so 15 min means the structure is the problem; 4 AFM views seconds;
# a design relaxes a charged/discharged pair for each of up to k + 2 candidates per arm.
KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("kmc", "KMC simulation", 600.0, "Lower the event bound or the lattice size."),
    JobKind("evaluate", "CHGNet evaluation", 900.0,
            "CHGNet takes too long on this structure: try its primitive cell or a structure closer to "
            "equilibrium."),
    JobKind("afm", "AFM simulation", 300.0, "Try a smaller cell."),
    JobKind("design", "design job", 3600.0, "Ask for fewer candidates or fewer relaxation steps."),
)}


def job_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(KINDS)}") from None


def timeout_for(name: str) -> float:
    """Seconds a job of this kind may run: ``$BATTGEN_JOB_TIMEOUT_<KIND>`` or the kind's default."""
    kind = job_kind(name)
    text = os.environ.get(kind.timeout_env_var, "").strip()
    if not text:
        return kind.timeout_s
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{kind.timeout_env_var} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{kind.timeout_env_var} must be positive, got {text!r}")
    return value
