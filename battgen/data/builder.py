"""``python -m battgen data build-electrodes``: the offline electrode dataset, computed with CHGNet.

Work is split into independent relaxations: the elemental metal of each ion (reference energy),
each charged host (shared by the ten ions that go into it), each discharged candidate and its
half-filled state. Every relaxation is cached as one JSON file with the settings it ran with,
so an interrupted build resumes where it stopped, a finished one can be re-assembled with other
filters without relaxing anything again, and a cache made with other settings (or before the
right-handed-cell fix) is recomputed rather than mixed in.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from battgen import atomic
from battgen.data.build_plan import BuildPlan
from battgen.data.frameworks import (
    Candidate,
    discharged_structure,
    elemental_reference_structure,
    framework_structure,
)
from battgen.data.relax import DEFAULT_OPTIMIZER
from battgen.data.relax_cache import DEFAULT_CACHE_DIR, cache_file
from battgen.parallel import parallel_map


@dataclass(frozen=True)
class RelaxTask:
    kind: str  # "reference" | "charged" | "discharged"
    key: str
    candidate: Candidate | None = None
    ion: str | None = None

    def structure(self):
        if self.kind == "reference":
            return elemental_reference_structure(self.ion)
        if self.kind == "charged":
            return framework_structure(self.candidate)
        return discharged_structure(self.candidate)


def relax_tasks(plan: BuildPlan) -> list[RelaxTask]:
    tasks = [RelaxTask("reference", ion, ion=ion) for ion in plan.ions]
    seen = set()
    for c in plan.candidates():
        if c.framework_key not in seen:
            seen.add(c.framework_key)
            tasks.append(RelaxTask("charged", c.framework_key, candidate=c))
        tasks.append(RelaxTask("discharged", c.key, candidate=c))
        # A partial filling is a discharged state with fewer ions; its key cannot collide with
        # a candidate's, since each host has one candidate per ion.
        tasks.extend(RelaxTask("discharged", p.key, candidate=p) for p in c.intermediates)
    return tasks


def is_current(record: dict, settings: dict) -> bool:
    """Whether a cached record was computed with ``settings`` (older records carry none)."""
    return record.get("settings") == settings


def needs_work(path: Path, settings: dict) -> bool:
    if not path.exists():
        return True
    record = json.loads(path.read_text())
    return not is_current(record, settings) or needs_continuation(record)


def _init_worker(threads: int) -> None:
    # Before torch is imported in this process: otherwise its OpenMP pool keeps a second busy
    # thread per worker and two workers on two cores run at half speed.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


# A relaxation that stops within this force of convergence (eV/Å) is continued once from where
# it stopped (the optimiser's memory restarts with it). One far from convergence (a large ion
# forced into a small site) is not worth more.
CONTINUE_BELOW = 0.5


def needs_continuation(record: dict) -> bool:
    return ("error" not in record and not record["converged"] and not record.get("continued")
            and record["max_force"] < CONTINUE_BELOW)


def continue_relaxation(record: dict, fmax: float, steps: int, device: str | None = None,
                        optimizer: str = DEFAULT_OPTIMIZER) -> dict:
    """Relax again from the cached end point; steps and seconds add up, the energy change is
    measured from the first start."""
    from battgen.data.relax import RelaxResult, relax

    first = RelaxResult.from_dict(record)
    second = relax(first.structure, fmax=fmax, steps=steps, device=device, optimizer=optimizer)
    merged = second.as_dict()
    merged.update(steps=first.steps + second.steps, seconds=first.seconds + second.seconds,
                  energy_change=first.energy_change + second.energy_change, continued=True)
    return merged


def run_task(cache_dir: str, task: RelaxTask, fmax: float, steps: int, device: str | None = None,
             optimizer: str = DEFAULT_OPTIMIZER) -> str:
    """Relax one structure and cache the result (or the error). Returns the task key.

    A cached, nearly converged relaxation with the same settings (see ``CONTINUE_BELOW``) is
    continued instead.
    """
    from battgen.data.relax import relax

    settings = {"optimizer": optimizer, "fmax": fmax, "steps": steps}
    path = cache_file(Path(cache_dir), task.kind, task.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        cached = json.loads(path.read_text()) if path.exists() else None
        if cached is not None and is_current(cached, settings) and needs_continuation(cached):
            record = continue_relaxation(cached, fmax, steps, device, optimizer)
        else:
            record = relax(task.structure(), fmax=fmax, steps=steps, device=device,
                           optimizer=optimizer).as_dict()
            if needs_continuation(record):
                record = continue_relaxation(record, fmax, steps, device, optimizer)
    except Exception as err:  # a crash in one relaxation must not stop a build of thousands
        record = {"error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc(limit=3)}
    record["settings"] = settings
    atomic.write_text(path, json.dumps(record))  # a killed worker never leaves half a cache file
    return task.key


def build_electrodes(out_dir: str | Path, plan: BuildPlan | None = None, *,
                     cache_dir: str | Path = DEFAULT_CACHE_DIR, workers: int | None = None,
                     dask_scheduler: str | None = None, device: str | None = None,
                     progress: bool = True, relax_only: bool = False,
                     keep_splits: dict[str, str] | None = None) -> Path | None:
    """Run every missing relaxation of ``plan``, then assemble the table into ``out_dir``.

    Relaxations go to ``workers`` local processes, or to the Dask cluster at ``dask_scheduler``
    (see :func:`battgen.parallel.parallel_map`). ``keep_splits`` (discharged formula -> split)
    keeps those formulas' splits (see :func:`battgen.data.splits.grouped_split`).
    """
    plan = plan or BuildPlan()
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    tasks = relax_tasks(plan)
    todo = [t for t in tasks if needs_work(cache_file(cache, t.kind, t.key), plan.relax_settings)]
    if device is None:
        from battgen.device import get_device

        device = get_device().type
    if device == "cuda":
        workers = 1  # one process keeps the GPU busy; several would fight over its memory
    start = time.perf_counter()
    # run_task caches each result (or its error) itself, so nothing is left to do per item here.
    for _ in parallel_map(partial(run_task, str(cache), fmax=plan.fmax, steps=plan.steps, device=device,
                                  optimizer=plan.optimizer), todo,
                          workers=workers, dask_scheduler=dask_scheduler, progress=progress,
                          desc="relaxations", unit="relax", already_done=len(tasks) - len(todo),
                          worker_setup=_init_worker):
        pass
    if relax_only:
        return None
    from battgen.data.assemble import assemble_table

    return assemble_table(out_dir, plan, cache_dir=cache, build_seconds=time.perf_counter() - start,
                          keep_splits=keep_splits)
