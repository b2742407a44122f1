"""SEI dataset: Latin-hypercube barrier samples → KMC runs → one compact ``dataset.npz``.

Resumable: every finished run is a small file under ``runs/``; a rebuild skips those. The design
is a *blocked* Latin hypercube: each block of ``BLOCK`` runs is its own LHS over the 15 free
barriers, so a dataset can grow block by block without invalidating finished runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from battgen import atomic
from battgen.parallel import parallel_map
from battgen.plans import Plan, check_saved_plan
from battgen.sei.barriers import BARRIER_NAMES, BARRIER_RANGES, N_FREE
from battgen.sei.defaults import DATASET_MAX_EVENTS, DEFAULT_SIZE
from battgen.sei.observables import (
    OBSERVABLE_NAMES,
    PROPERTY_NAMES,
    compute_observables,
    half_thickness_porosity,
)
from battgen.sei.species import N_SPECIES

BLOCK = 1000
DATASET_FILE = "dataset.npz"
RUNS_DIR = "runs"
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
STATUS_CODES = {"complete": 0, "max_steps": 2, "max_time": 3}


@dataclass(frozen=True)
class DatasetPlan(Plan):
    n: int
    size: int = DEFAULT_SIZE
    seed: int = 0
    max_steps: int = DATASET_MAX_EVENTS
    # Temporal acceleration (kmc.simulate): None keeps every run exact. Measured bias and
    # completion: benchmarks/results/sei_acceleration.md. Runs it acted on are labelled.
    hop_ratio: float | None = None
    accelerate_after: int | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.hop_ratio is not None and not (np.isfinite(self.hop_ratio) and self.hop_ratio >= 1):
            raise ValueError("hop_ratio must be at least 1 (or None for exact runs)")
        if self.accelerate_after is not None and (self.hop_ratio is None or self.accelerate_after < 0):
            raise ValueError("accelerate_after needs a hop_ratio and must be non-negative")


def sample_barriers(n: int, seed: int = 0) -> np.ndarray:
    """(n, 15) barriers in eV. Block b (runs b·BLOCK ...) is a Latin hypercube of its own size,
    seeded by (seed, b): whole blocks never change when the dataset grows, and a partial last
    block is still a Latin hypercube."""
    from scipy.stats import qmc

    rows = []
    for block, start in enumerate(range(0, n, BLOCK)):
        sampler = qmc.LatinHypercube(d=N_FREE, rng=np.random.default_rng([seed, block]))
        unit = sampler.random(min(BLOCK, n - start))
        rows.append(qmc.scale(unit, BARRIER_RANGES[:, 0], BARRIER_RANGES[:, 1]))
    return np.concatenate(rows)


def run_seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, index, 7]).integers(0, 2**31 - 1))


def split_indices(n: int, seed: int = 0) -> np.ndarray:
    """0 train / 1 val / 2 test, 70/15/15. Every run has its own barriers, so a random split
    keeps no barrier vector in two splits."""
    order = np.random.default_rng([seed, 99]).permutation(n)
    split = np.zeros(n, np.int8)
    n_train = int(round(SPLIT_FRACTIONS[0] * n))
    n_val = int(round(SPLIT_FRACTIONS[1] * n))
    split[order[n_train : n_train + n_val]] = 1
    split[order[n_train + n_val :]] = 2
    return split


def _run_file(out_dir: Path, index: int) -> Path:
    return out_dir / RUNS_DIR / f"{index:06d}.npz"


def _simulate_indices(batch: tuple[list[int], np.ndarray], out_dir: str, plan: dict) -> list[int]:
    """Worker: simulate and store the runs of ``batch`` (indices, their barriers); returns the
    indices done. Runs in a separate process (or a Dask worker), so it takes plain data and
    imports the kernel lazily."""
    from battgen.sei.kmc import simulate

    indices, barriers = batch
    out = Path(out_dir)
    done = []
    for index, row in zip(indices, barriers):
        result = simulate(
            row, nx=plan["size"], ny=plan["size"], seed=run_seed(plan["seed"], index),
            max_steps=plan["max_steps"], hop_ratio=plan.get("hop_ratio"),
            accelerate_after=plan.get("accelerate_after") or 0,
        )
        # Atomic: a killed build never leaves a half-written run.
        atomic.save_npz(
            _run_file(out, index),
            lattice=result.lattice,
            barriers=result.barriers[:N_FREE].astype(np.float32),
            observables=np.array([result.observables[k] for k in OBSERVABLE_NAMES], np.float32),
            steps=np.int64(result.steps),
            sim_time=np.float64(result.sim_time_s),
            wall_time=np.float64(result.wall_time_s),
            status=np.int8(STATUS_CODES[result.status]),
            seed=np.int64(result.seed),
            accelerated_events=np.int64(result.accelerated_events),
        )
        done.append(index)
    return done


def _check_finished_runs_match(out: Path, barriers: np.ndarray) -> None:
    """A partial last block is re-drawn when n grows: refuse to mix runs of two designs."""
    for start in range(0, len(barriers), BLOCK):
        stop = min(start + BLOCK, len(barriers))
        first_done = next((i for i in range(start, stop) if _run_file(out, i).exists()), None)
        if first_done is None:
            continue
        with np.load(_run_file(out, first_done), allow_pickle=False) as run:
            if not np.allclose(run["barriers"], barriers[first_done], atol=1e-6):
                raise ValueError(
                    f"finished runs in {out} come from a different sample design (run "
                    f"{first_done}); grow a dataset by whole blocks of {BLOCK} runs or build into another directory"
                )


def build_dataset(
    out_dir: str | Path,
    plan: DatasetPlan,
    *,
    workers: int | None = None,
    dask_scheduler: str | None = None,
    chunk: int = 16,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate every missing run of ``plan`` into ``out_dir/runs`` and write
    ``out_dir/dataset.npz``. Runs go to ``workers`` local processes, or to the Dask cluster at
    ``dask_scheduler`` (see :func:`battgen.parallel.parallel_map`), ``chunk`` runs per task."""
    out = Path(out_dir)
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    # The run count may grow: finished runs keep their barriers (checked block by block below).
    check_saved_plan(out, plan, may_change=("n",))

    barriers = sample_barriers(plan.n, plan.seed)
    _check_finished_runs_match(out, barriers)
    todo = [i for i in range(plan.n) if not _run_file(out, i).exists()]
    batches = [(todo[k : k + chunk], barriers[todo[k : k + chunk]]) for k in range(0, len(todo), chunk)]
    start = time.perf_counter()
    # Each worker writes its own run files, so a finished batch needs nothing more here.
    for _ in parallel_map(partial(_simulate_indices, out_dir=str(out), plan=plan.as_dict()), batches,
                          workers=workers, dask_scheduler=dask_scheduler, progress=progress,
                          desc="KMC runs", unit="run", already_done=plan.n - len(todo),
                          weight=lambda batch: len(batch[0]), on_progress=on_progress):
        pass
    return consolidate(out, plan, build_seconds=time.perf_counter() - start)


def consolidate(out_dir: str | Path, plan: DatasetPlan, *, build_seconds: float = 0.0) -> Path:
    """Gather the run files of ``plan`` into one ``dataset.npz`` (uint8 lattices)."""
    out = Path(out_dir)
    missing = [i for i in range(plan.n) if not _run_file(out, i).exists()]
    if missing:
        raise ValueError(f"{len(missing)} runs are missing in {out / RUNS_DIR}; build again")
    fields = {k: [] for k in ("lattice", "barriers", "observables", "steps", "sim_time",
                              "wall_time", "status", "seed", "accelerated_events")}
    for i in range(plan.n):
        with np.load(_run_file(out, i), allow_pickle=False) as run:
            for key in fields:
                # runs stored before acceleration existed were exact
                fields[key].append(run[key] if key in run.files else np.int64(0))
        if fields["observables"][-1].shape[0] != len(OBSERVABLE_NAMES):
            # a run stored before an observable was added: every observable follows from the lattice
            observables = compute_observables(fields["lattice"][-1])
            fields["observables"][-1] = np.array([observables[k] for k in OBSERVABLE_NAMES], np.float32)
    path = out / DATASET_FILE
    atomic.save_npz(
        path,
        lattices=np.stack(fields["lattice"]).astype(np.uint8),
        barriers=np.stack(fields["barriers"]).astype(np.float32),
        observables=np.stack(fields["observables"]).astype(np.float32),
        observable_names=np.array(OBSERVABLE_NAMES),
        barrier_names=np.array(BARRIER_NAMES),
        barrier_ranges=BARRIER_RANGES.astype(np.float32),
        split=split_indices(plan.n, plan.seed),
        seeds=np.array(fields["seed"], np.int64),
        steps=np.array(fields["steps"], np.int64),
        sim_time=np.array(fields["sim_time"], np.float64),
        wall_time=np.array(fields["wall_time"], np.float64),
        status=np.array(fields["status"], np.int8),
        status_names=np.array(list(STATUS_CODES)),
        accelerated_events=np.array(fields["accelerated_events"], np.int64),
    )
    from battgen.artifacts import write_metadata, write_metrics

    write_metrics(out, dataset_summary(load_dataset(path)))
    wall = np.array(fields["wall_time"])
    write_metadata(
        out,
        command="python -m battgen sei build-dataset",
        config=plan.as_dict(),
        seed=plan.seed,
        inputs=None,
        wall_time_s=build_seconds,
        extra={
            "runs": plan.n,
            "cpu_seconds_in_kmc": float(wall.sum()),
            "median_run_s": float(np.median(wall)),
            "status_counts": {
                name: int((np.array(fields["status"]) == code).sum())
                for name, code in STATUS_CODES.items()
            },
            "accelerated_runs": int((np.array(fields["accelerated_events"]) > 0).sum()),
        },
    )
    return path


@dataclass
class SEIDataset:
    """Arrays of a ``dataset.npz`` written by the SEI dataset builder."""

    lattices: np.ndarray  # (N, H, W) uint8 species codes
    barriers: np.ndarray  # (N, 15) float32 eV
    barrier_ranges: np.ndarray  # (15, 2) eV
    barrier_names: list[str]
    observables: np.ndarray  # (N, K) float32
    observable_names: list[str]
    split: np.ndarray  # (N,) int8: 0 train, 1 val, 2 test
    path: Path
    status: np.ndarray | None = None  # (N,) codes of STATUS_CODES
    accelerated_events: np.ndarray | None = None  # (N,) events drawn with hops slowed (0 = exact)

    def properties(self, names=PROPERTY_NAMES) -> np.ndarray:
        missing = [n for n in names if n not in self.observable_names]
        if missing:
            raise ValueError(f"{self.path} lacks observables {missing}; it has {self.observable_names}")
        return self.observables[:, [self.observable_names.index(n) for n in names]].astype(np.float32)

    def observable(self, name: str) -> np.ndarray:
        return self.observables[:, self.observable_names.index(name)]

    def __len__(self) -> int:
        return len(self.lattices)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLIT_CODES[split])


def load_dataset(path: str | Path) -> SEIDataset:
    """Read and sanity-check a ``dataset.npz`` (the file or its directory); ValueError on anything off."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".npz":
        path = path / DATASET_FILE
    if not path.is_file():
        raise ValueError(f"no SEI dataset at {path} (build one with `python -m battgen sei build-dataset`)")
    with np.load(path, allow_pickle=False) as z:
        required = ["lattices", "barriers", "barrier_ranges", "observables", "observable_names", "split"]
        missing = [k for k in required if k not in z.files]
        if missing:
            raise ValueError(f"{path} lacks keys {missing}")
        lattices = z["lattices"]
        barriers = z["barriers"].astype(np.float32)
        ranges = z["barrier_ranges"].astype(np.float64)
        names = [str(n) for n in z["barrier_names"]] if "barrier_names" in z.files else None
        data = SEIDataset(
            lattices=lattices,
            barriers=barriers,
            barrier_ranges=ranges,
            barrier_names=names or [f"e{i + 1}" for i in range(barriers.shape[1])],
            observables=z["observables"].astype(np.float32),
            observable_names=[str(n) for n in z["observable_names"]],
            split=z["split"].astype(np.int8),
            path=path,
            status=z["status"] if "status" in z.files else None,
            accelerated_events=z["accelerated_events"] if "accelerated_events" in z.files else None,
        )
    n = lattices.shape[0]
    if lattices.ndim != 3 or lattices.shape[1] != lattices.shape[2]:
        raise ValueError(f"lattices must be (N, L, L), got {lattices.shape}")
    if n and int(lattices.max()) >= N_SPECIES:
        raise ValueError(f"lattice codes exceed the {N_SPECIES} species")
    if barriers.shape[0] != n or data.observables.shape[0] != n or data.split.shape[0] != n:
        raise ValueError("lattices, barriers, observables and split disagree on N")
    if "porosity_half" not in data.observable_names and "thickness" in data.observable_names:
        # datasets built before the reference's porosity was stored: it follows from the final lattice
        thickness = data.observable("thickness")
        extra = np.array([half_thickness_porosity(lat, float(t)) for lat, t in zip(lattices, thickness)],
                         np.float32)
        data.observables = np.concatenate([data.observables, extra[:, None]], axis=1)
        data.observable_names = data.observable_names + ["porosity_half"]
    if ranges.shape != (barriers.shape[1], 2):
        raise ValueError(f"barrier_ranges must be ({barriers.shape[1]}, 2), got {ranges.shape}")
    for s in ("train", "val", "test"):
        if data.indices(s).size == 0:
            raise ValueError(f"{path} has an empty {s} split")
    return data


def dataset_summary(data: SEIDataset) -> dict:
    """Counts and observable distributions, for ``metrics.json`` and the home page."""
    summary = {
        "runs": len(data),
        "split": {name: int((data.split == code).sum()) for name, code in SPLIT_CODES.items()},
        "observables": {
            name: {
                "p05": float(np.percentile(data.observable(name), 5)),
                "median": float(np.median(data.observable(name))),
                "p95": float(np.percentile(data.observable(name), 95)),
            }
            for name in ("thickness", "porosity", "porosity_half", "inorganic_fraction", "organic_fraction",
                         "density")
        },
    }
    if data.status is not None:
        summary["status"] = {name: int((data.status == code).sum()) for name, code in STATUS_CODES.items()}
    if data.accelerated_events is not None:
        summary["accelerated_runs"] = int((data.accelerated_events > 0).sum())
    return summary
